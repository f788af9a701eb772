"""The store layer: what a run leaves on disk, and reading it back safely.

The run directory (``rundir``) and its lock (``lock``), checkpoint files read without
executing pickled code (``checkpoint_file``), and a trained (or random, or official)
trunk loaded for the API, export and evaluation (``trained``).
"""
