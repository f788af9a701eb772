"""The command line, parsed and checked once into frozen :class:`Settings`."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import __doc__ as package_doc
from .console import BenchmarkError

BASELINE = "baseline"
RANDOM = "random"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)+$")
# A comma starts a new override only when a `key=` follows, so list values keep theirs.
_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.-]*=)")


@dataclass(frozen=True)
class Variant:
    """A named set of recipe overrides trained and evaluated like the baseline."""

    name: str
    overrides: tuple[str, ...]


def parse_override(text: str, where: str) -> str:
    """Check one ``section.key=value`` and return it stripped."""
    key, sep, _ = text.strip().partition("=")
    if not sep or not _KEY.match(key.strip()):
        raise BenchmarkError(
            f"{where}: {text.strip()!r} is not section.key=value (e.g. optimizer.lr=0.01)"
        )
    return text.strip()


def parse_variant(text: str) -> Variant:
    """``NAME=key=value[,key=value...]`` -> Variant."""
    name, sep, rest = text.partition("=")
    example = "e.g. --variant centroid_init=optimizer.top_init=centroids"
    if not sep or not rest.strip():
        raise BenchmarkError(
            f"--variant {text!r}: expected NAME=key=value[,key=value...], {example}"
        )
    name = name.strip()
    if not _NAME.match(name) or name in (BASELINE, RANDOM):
        raise BenchmarkError(
            f"--variant {text!r}: the name {name!r} must be letters, digits, '_', '-' or '.' "
            f"(a folder name), and not {BASELINE!r} or {RANDOM!r}; {example}"
        )
    where = f"--variant {name}"
    return Variant(name, tuple(parse_override(p, where) for p in _SPLIT.split(rest)))


def parse_variants(texts: list[str]) -> tuple[Variant, ...]:
    """Every ``--variant``, each name once (it names the variant's run folder)."""
    variants = tuple(parse_variant(t) for t in texts)
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchmarkError(f"--variant: the name {duplicates[0]!r} is given twice")
    return variants


def build_parser() -> argparse.ArgumentParser:
    """The command line; its description is the first line of the package docstring."""
    summary = (package_doc or "").partition("\n")[0]  # None under python -OO
    parser = argparse.ArgumentParser(
        description=summary, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("recipe", type=Path, help="recipe file (.toml)")
    parser.add_argument("--out", type=Path, required=True, help="folder of every result")
    parser.add_argument(
        "--budget-min", type=float, required=True, help="training wall-clock budget per variant"
    )
    parser.add_argument("--max-epochs", type=int, default=None, help="cap on epochs per variant")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override applied to the baseline and every variant (repeatable)",
    )
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=[],
        metavar="NAME=KEY=VALUE[,KEY=VALUE...]",
        help="an ablation: these overrides on top of the baseline (repeatable)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate a run directory that already holds finished epochs instead of training",
    )
    data = parser.add_argument_group("labelled data (passed to dcframe eval)")
    data.add_argument("--data", metavar="DATASET", help="dataset of the training images")
    data.add_argument("--data-set", action="append", default=[], metavar="KEY=VALUE")
    data.add_argument("--val-data", metavar="DATASET", help="dataset of the validation images")
    data.add_argument("--val-set", action="append", default=[], metavar="KEY=VALUE")
    data.add_argument(
        "--train-dir",
        type=Path,
        help="image folder of the training split (also data.root of training when the "
        "recipe's dataset is imagefolder)",
    )
    data.add_argument("--val-dir", type=Path, help="image folder of the validation split")
    data.add_argument(
        "--unlabelled-dir",
        type=Path,
        help="image folder DeepCluster trains on, when it is not --train-dir (e.g. all of "
        "CIFAR-10's training images while the probes use a labelled subset); labels unused",
    )
    data.add_argument("--limit-train", type=int, help="stratified subset of training images")
    data.add_argument("--limit-val", type=int, help="stratified subset of validation images")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument(
        "--seed",
        type=int,
        default=0,
        help="evaluation seed: random init, subsets, kNN (training keeps the recipe's run.seed)",
    )
    evaluation.add_argument(
        "--probe-seeds",
        type=int,
        nargs="+",
        default=None,
        help="one linear probe per seed (default: --seed)",
    )
    evaluation.add_argument("--probe-epochs", type=int, help="linear probe epochs (dcframe: 90)")
    evaluation.add_argument("--skip-probe", action="store_true", help="kNN only")
    evaluation.add_argument("--knn-k", type=int, default=20, help="neighbours that vote")
    evaluation.add_argument("--workers", type=int, default=0, help="DataLoader workers of eval")
    evaluation.add_argument("--device", default="auto", help="device of eval (auto, cpu, cuda)")
    return parser


@dataclass(frozen=True)
class Settings:
    """One benchmark's settings, checked and never changed once built.

    Built by :func:`parse_settings`. The fields past ``command`` are derived from the rest
    when it is built (``dataclasses.replace`` derives them again).

    Raises:
        BenchmarkError: no labelled data is named, or a labelled folder is missing.
    """

    recipe: Path
    out: Path  # resolved: subprocesses and the report name absolute folders
    budget_min: float
    max_epochs: int | None
    overrides: tuple[str, ...]  # --set, checked
    variants: tuple[Variant, ...]
    reuse: bool
    data: str | None
    data_set: tuple[str, ...]
    val_data: str | None
    val_set: tuple[str, ...]
    train_dir: Path | None
    val_dir: Path | None
    unlabelled_dir: Path | None
    limit_train: int | None
    limit_val: int | None
    seed: int
    probe_seeds: tuple[int, ...]  # --seed when none are given
    probe_epochs: int | None
    skip_probe: bool
    knn_k: int
    workers: int
    device: str
    command: tuple[str, ...]  # the command line, as the report records it
    budget_s: float = field(init=False)
    runs_dir: Path = field(init=False)  # OUT/runs, a run folder per variant
    #: The folder training reads: the labelled split unless --unlabelled-dir names another.
    training_dir: Path | None = field(init=False)
    eval_data: tuple[str, ...] = field(init=False)  # the data options of every dcframe eval

    def __post_init__(self) -> None:
        # Frozen: derived fields can only be set through object.__setattr__.
        derived = {
            "budget_s": self.budget_min * 60,
            "runs_dir": (self.out / "runs").resolve(),
            "training_dir": self.unlabelled_dir or self.train_dir,
            "eval_data": self._eval_data(),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def _eval_data(self) -> tuple[str, ...]:
        """The data options of ``dcframe eval``, as the user gave them."""
        if self.data is None and self.train_dir is None:
            raise BenchmarkError(
                "choose the labelled data: --train-dir DIR --val-dir DIR (image folders), or "
                "--data NAME [--data-set KEY=VALUE ...] [--val-set KEY=VALUE ...]"
            )
        out: list[str] = []
        for flag, value in (("--data", self.data), ("--val-data", self.val_data)):
            if value is not None:
                out += [flag, value]
        for flag, values in (("--data-set", self.data_set), ("--val-set", self.val_set)):
            for value in values:
                out += [flag, value]
        for flag, path in (("--train-dir", self.train_dir), ("--val-dir", self.val_dir)):
            if path is not None:
                if not path.is_dir():
                    raise BenchmarkError(f"{flag}: {str(path)!r} is not a folder")
                out += [flag, str(path.resolve())]
        for flag, number in (("--limit-train", self.limit_train), ("--limit-val", self.limit_val)):
            if number is not None:
                out += [flag, str(number)]
        return tuple(out)


def parse_settings(argv: list[str], script: Path) -> Settings:
    """Parse and check ``argv`` of ``script``; argparse exits on a malformed command line.

    Raises:
        BenchmarkError: the recipe, budget, overrides, variants or data are unusable; checked
            in that order, before anything trains.
    """
    args = build_parser().parse_args(argv)
    if not args.recipe.is_file():
        raise BenchmarkError(f"recipe {str(args.recipe)!r} is not a file")
    if args.budget_min <= 0:
        raise BenchmarkError("--budget-min must be above 0")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise BenchmarkError("--max-epochs must be 1 or more")
    return Settings(
        recipe=args.recipe,
        out=args.out.resolve(),
        budget_min=args.budget_min,
        max_epochs=args.max_epochs,
        overrides=tuple(parse_override(o, "--set") for o in args.overrides),
        variants=parse_variants(args.variants),
        reuse=args.reuse,
        data=args.data,
        data_set=tuple(args.data_set),
        val_data=args.val_data,
        val_set=tuple(args.val_set),
        train_dir=args.train_dir,
        val_dir=args.val_dir,
        unlabelled_dir=args.unlabelled_dir,
        limit_train=args.limit_train,
        limit_val=args.limit_val,
        seed=args.seed,
        probe_seeds=tuple(args.probe_seeds or [args.seed]),
        probe_epochs=args.probe_epochs,
        skip_probe=args.skip_probe,
        knn_k=args.knn_k,
        workers=args.workers,
        device=args.device,
        command=(sys.executable, str(script), *argv),
    )
