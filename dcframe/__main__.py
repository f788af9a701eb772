"""``python -m dcframe``: the same command line as the ``dcframe`` console script."""

from dcframe.cli import entry

entry()
