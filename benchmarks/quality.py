"""Representation quality of a recipe: the command line of the ``quality_bench`` package.

``python benchmarks/quality.py --help`` lists the options; the package docstring
(``benchmarks/quality_bench/__init__.py``) says what is measured and written, and
docs/results.md gives the commands behind its CIFAR-10 numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # loaded by path (as the tests do), not run as a script
    sys.path.insert(0, str(HERE))

from quality_bench.benchmark import run  # noqa: E402  (needs the path above)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on ``argv`` (default: this process's arguments); the exit code."""
    return run(sys.argv[1:] if argv is None else argv, script=Path(__file__))


if __name__ == "__main__":
    sys.exit(main())
