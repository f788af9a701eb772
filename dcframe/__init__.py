"""dcframe: DeepCluster, faithful to the paper, fast and pleasant to extend."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dcframe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
