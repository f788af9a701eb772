"""dcframe's version, as installed (``dcframe.__version__``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dcframe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
