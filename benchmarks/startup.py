"""Start-up time of the ``dcframe`` command, against ``python -c pass`` measured in the same run.

Each command runs as a fresh process, the commands taking turns (A B C ... A B C ...) so
that a machine getting slower or faster mid-run affects them all alike; the table shows
the median, minimum and maximum wall-clock seconds and the median's ratio to the floor.

    python benchmarks/startup.py               # 9 rounds
    python benchmarks/startup.py --rounds 15 --recipe recipes/quickstart.toml

``dcframe`` is started the way its console script starts it
(``python -c "from dcframe.cli import entry; entry()"``), with this interpreter, so the
figures do not depend on which ``dcframe`` is first on ``PATH``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENTRY = [sys.executable, "-c", "from dcframe.cli import entry; entry()"]


def commands(recipe: Path) -> dict[str, list[str]]:
    """Label -> argv of every command timed; the first is the floor."""
    return {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "python -c 'import dcframe'": [sys.executable, "-c", "import dcframe"],
        "dcframe --version": [*ENTRY, "--version"],
        "dcframe --help": [*ENTRY, "--help"],
        f"dcframe recipe check {recipe.name}": [*ENTRY, "recipe", "check", str(recipe)],
    }


def time_once(argv: list[str]) -> float:
    """Wall-clock seconds of one run of ``argv``; a failing command stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr.decode()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="runs of each command (median)")
    parser.add_argument(
        "--recipe", type=Path, default=REPO / "recipes" / "quickstart.toml", help="recipe checked"
    )
    args = parser.parse_args()
    timed = commands(args.recipe.resolve())
    for argv in timed.values():  # warm-up: file-system caches, bytecode compiled once
        time_once(argv)
    seconds: dict[str, list[float]] = {label: [] for label in timed}
    for _ in range(args.rounds):
        for label, argv in timed.items():
            seconds[label].append(time_once(argv))
    floor = statistics.median(next(iter(seconds.values())))
    width = max(map(len, timed))
    print(f"{'command':<{width}}  median s   min s   max s  median / floor")
    for label, values in seconds.items():
        median = statistics.median(values)
        print(
            f"{label:<{width}}  {median:8.3f} {min(values):7.3f} {max(values):7.3f}"
            f"  {median / floor:14.1f}"
        )
    print(f"({args.rounds} rounds, commands interleaved; wall-clock seconds per process)")


if __name__ == "__main__":
    main()
