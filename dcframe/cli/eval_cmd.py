"""``dcframe eval``: linear probes, weighted kNN and k-means cluster metrics on frozen features.

Every command takes what to evaluate (a run directory, a checkpoint file or
``--random-init BACKBONE``), labelled data (``--data sklearn-digits`` or ``--train-dir`` +
``--val-dir``) and writes a rich table to stdout plus a JSON file
``<output>/<command>-<tag>.json``. The options are the fields of the models in
:mod:`dcframe.evaluation.options` (defaults and help texts come from there).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from dcframe.errors import UserError
from dcframe.evaluation.options import (
    ClusterOptions,
    DataOptions,
    KnnOptions,
    LinearProbeOptions,
    ModelOptions,
    RunOptions,
)
from dcframe.params import Params

if TYPE_CHECKING:
    from dcframe.evaluation.data import EvalData
    from dcframe.evaluation.features import FrozenFeatures
    from dcframe.evaluation.models import EvalModel
    from dcframe.evaluation.runtime import Runtime

# The evaluation modules (torch, torchvision, scikit-learn) are imported by the commands
# themselves, so that `dcframe --help` and failing option checks stay fast.

app = typer.Typer(
    no_args_is_help=True,
    help="Evaluate frozen features of a run, a checkpoint (dcframe's or an official "
    "DeepCluster release) or a random init: linear probes, weighted kNN, k-means metrics.",
)

P = TypeVar("P", bound=Params)


def _option(model: type[Params], name: str, *flags: str, **extra: Any) -> Any:
    """A typer option whose help text is the description of ``model``'s field ``name``."""
    return typer.Option(*flags, help=model.model_fields[name].description, **extra)


def _default(model: type[Params], name: str) -> Any:
    return model.model_fields[name].default


# Flags whose option name is not the field name with '-' for '_'.
_FLAGS = {"path": "RUN_DIR_OR_CHECKPOINT", "dataset": "--data", "overrides": "--set"}


def _validated(model: type[P], **values: Any) -> P:
    """``model`` built from command-line values; invalid ones become one UserError."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems = []
        for e in error.errors():
            message = str(e["msg"]).removeprefix("Value error, ")
            if e["loc"]:
                field = str(e["loc"][0])
                flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
                message = f"{flag}: {message}"
            problems.append(message)
        raise UserError("invalid options:\n  " + "\n  ".join(problems)) from None


# ------------------------------------------------------------------ common options

Source = Annotated[
    Path | None,
    typer.Argument(
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="Run directory, dcframe checkpoint file, or official DeepCluster checkpoint.pth.tar.",
        show_default=False,
    ),
]
RandomInit = Annotated[
    str | None, _option(ModelOptions, "random_init", "--random-init", metavar="BACKBONE")
]
Epoch = Annotated[int | None, _option(ModelOptions, "epoch", "--epoch")]
RecipeFile = Annotated[Path | None, _option(ModelOptions, "recipe", "--recipe")]
BackboneSet = Annotated[
    list[str] | None, _option(ModelOptions, "overrides", "--set", metavar="backbone.KEY=VALUE")
]
DataName = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Built-in labelled data with a fixed train/test split: sklearn-digits "
        "(or give --train-dir and --val-dir).",
    ),
]
TrainDir = Annotated[Path | None, _option(DataOptions, "train_dir", "--train-dir")]
ValDir = Annotated[Path | None, _option(DataOptions, "val_dir", "--val-dir")]
LimitTrain = Annotated[int | None, _option(DataOptions, "limit_train", "--limit-train")]
LimitVal = Annotated[int | None, _option(DataOptions, "limit_val", "--limit-val")]
Device = Annotated[str, _option(RunOptions, "device", "--device")]
BatchSize = Annotated[int, _option(RunOptions, "batch_size", "--batch-size")]
Workers = Annotated[int, _option(RunOptions, "workers", "--workers")]
Seed = Annotated[int, _option(RunOptions, "seed", "--seed")]
Output = Annotated[Path | None, _option(RunOptions, "output", "--output", "-o")]
CacheDir = Annotated[Path | None, _option(RunOptions, "cache_dir", "--cache-dir")]
Quiet = Annotated[bool, _option(RunOptions, "quiet", "--quiet", "-q")]


@dataclass(frozen=True)
class _Session:
    """Everything a command evaluates with, ready before the first pass over the data."""

    model: EvalModel
    features: FrozenFeatures
    data: EvalData
    data_options: DataOptions
    run_options: RunOptions
    runtime: Runtime


def _start(ctx: typer.Context, layers: tuple[str, ...] | None) -> _Session:
    """Validate the common options, load the model, check the layers, then the data.

    The options every command shares (see the signatures below) are read from the command's
    own parsed parameters, ``ctx.params``, so each command passes only its ``layers``.
    """
    import torch

    from dcframe.evaluation.data import load_data
    from dcframe.evaluation.features import FrozenFeatures
    from dcframe.evaluation.models import load_model
    from dcframe.evaluation.runtime import Runtime

    given = ctx.params

    def path_or_none(name: str) -> str | None:
        return None if given[name] is None else str(given[name])

    model_options = _validated(
        ModelOptions,
        path=path_or_none("source"),
        random_init=given["random_init"],
        epoch=given["epoch"],
        recipe=path_or_none("recipe"),
        overrides=tuple(given["overrides"] or ()),
    )
    if given["data"] is None and given["train_dir"] is None and given["val_dir"] is None:
        raise UserError(
            "choose the labelled data: --data sklearn-digits, or --train-dir DIR --val-dir DIR"
        )
    data_options = _validated(
        DataOptions,
        dataset=given["data"] or "imagefolder",
        train_dir=path_or_none("train_dir"),
        val_dir=path_or_none("val_dir"),
        limit_train=given["limit_train"],
        limit_val=given["limit_val"],
    )
    run_options = _validated(
        RunOptions,
        **{name: given[name] for name in ("device", "batch_size", "workers", "seed", "quiet")},
        output=path_or_none("output"),
        cache_dir=path_or_none("cache_dir"),
    )
    runtime = Runtime.from_options(run_options)
    torch.manual_seed(run_options.seed)  # the random init, the heads, the augmentations
    model = load_model(model_options)
    if runtime.cache_dir is None:  # next to the results: a real disk, unlike a RAM-backed /tmp
        runtime = replace(runtime, cache_dir=_output_folder(run_options, model))
    backbone = model.backbone.to(runtime.device)
    features = FrozenFeatures(backbone, layers or backbone.tap_names)
    evaluation_data = load_data(data_options, run_options.seed)
    runtime.reporter.info(
        f"{model.info['source']} {model.info['backbone']}: layers "
        + ", ".join(f"{n} ({features.dims[n]})" for n in features.layers)
        + f"; {len(evaluation_data.train)} train / {len(evaluation_data.val)} val images"
    )
    return _Session(model, features, evaluation_data, data_options, run_options, runtime)


def _output_folder(run_options: RunOptions, model: EvalModel) -> Path:
    """Where the results JSON goes: ``--output``, else the model's default folder."""
    return Path(run_options.output or model.output_dir).expanduser()


def _layers(text: str | None) -> tuple[str, ...] | None:
    """``conv1,conv2`` -> ('conv1', 'conv2'); None stays None (the command's default)."""
    return None if text is None else tuple(p.strip() for p in text.split(",") if p.strip())


def _finish(
    session: _Session,
    command: str,
    options: Params,
    results: dict[str, Any],
    started: float,
    table: Table,
) -> None:
    """Print the table and write the results JSON (path printed last)."""
    from dcframe.rundir import versions

    folder = _output_folder(session.run_options, session.model)
    path = folder / f"{command}-{session.model.tag}.json"
    payload = {
        "command": command,
        "model": session.model.info,
        "data": session.data.info(session.data_options),
        "options": {
            **session.run_options.model_dump(mode="json", exclude={"output", "quiet", "cache_dir"}),
            "device": str(session.runtime.device),
            **options.model_dump(mode="json"),
            "layers": list(session.features.layers),  # resolved: the default is "every tap"
        },
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
        "versions": versions([]),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise UserError(
            f"--output: cannot write {str(path)!r} ({error.strerror}); choose another folder"
        ) from error
    console = Console()
    console.print(table)
    console.print(f"results: {path}")


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < 1 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _percent(scores: dict[str, Any], key: str) -> str:
    return f"{scores[key]:.2f}" if key in scores else "-"


# ------------------------------------------------------------------------ commands


@app.command("linear-probe")
def linear_probe_cmd(
    ctx: typer.Context,
    source: Source = None,
    random_init: RandomInit = None,
    epoch: Epoch = None,
    recipe: RecipeFile = None,
    overrides: BackboneSet = None,
    data: DataName = None,
    train_dir: TrainDir = None,
    val_dir: ValDir = None,
    limit_train: LimitTrain = None,
    limit_val: LimitVal = None,
    layers: Annotated[str | None, _option(LinearProbeOptions, "layers", "--layers")] = None,
    epochs: Annotated[int, _option(LinearProbeOptions, "epochs", "--epochs")] = _default(
        LinearProbeOptions, "epochs"
    ),
    lr: Annotated[float, _option(LinearProbeOptions, "lr", "--lr")] = _default(
        LinearProbeOptions, "lr"
    ),
    momentum: Annotated[float, _option(LinearProbeOptions, "momentum", "--momentum")] = _default(
        LinearProbeOptions, "momentum"
    ),
    weight_decay: Annotated[
        float, _option(LinearProbeOptions, "weight_decay", "--weight-decay")
    ] = _default(LinearProbeOptions, "weight_decay"),
    mode: Annotated[str, _option(LinearProbeOptions, "mode", "--mode")] = _default(
        LinearProbeOptions, "mode"
    ),
    ten_crop: Annotated[
        bool, _option(LinearProbeOptions, "ten_crop", "--ten-crop/--center-crop")
    ] = _default(LinearProbeOptions, "ten_crop"),
    device: Device = _default(RunOptions, "device"),
    batch_size: BatchSize = _default(RunOptions, "batch_size"),
    workers: Workers = _default(RunOptions, "workers"),
    seed: Seed = _default(RunOptions, "seed"),
    output: Output = None,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Train a linear classifier on each frozen layer (the paper's Table 1 protocol).

    Top-1 (top-5 with more than 5 classes) in percent, at the best and the last epoch.
    """
    from dcframe.evaluation.linear_probe import linear_probe

    started = time.perf_counter()
    options = _validated(
        LinearProbeOptions,
        layers=_layers(layers),
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        mode=mode,
        ten_crop=ten_crop,
    )
    session = _start(ctx, options.layers)
    reports = linear_probe(session.features, session.data, options, session.runtime)
    rows = [
        [
            name,
            str(r.dim),
            r.pooling,
            f"{r.best['epoch']:.0f}",
            _percent(r.best, "top1"),
            _percent(r.best, "top5"),
            _percent(r.last, "top1"),
            _percent(r.last, "top5"),
        ]
        for name, r in reports.items()
    ]
    headers = ["layer", "dim", "pooling", "best ep", "best top1", "top5", "last top1", "top5"]
    table = _table(f"linear probe ({options.mode}, {options.epochs} epochs)", headers, rows)
    results = {name: r.as_dict() for name, r in reports.items()}
    _finish(session, "linear-probe", options, results, started, table)


@app.command("knn")
def knn_cmd(
    ctx: typer.Context,
    source: Source = None,
    random_init: RandomInit = None,
    epoch: Epoch = None,
    recipe: RecipeFile = None,
    overrides: BackboneSet = None,
    data: DataName = None,
    train_dir: TrainDir = None,
    val_dir: ValDir = None,
    limit_train: LimitTrain = None,
    limit_val: LimitVal = None,
    layers: Annotated[str, _option(KnnOptions, "layers", "--layers")] = ",".join(
        _default(KnnOptions, "layers")
    ),
    k: Annotated[int, _option(KnnOptions, "k", "--k", "-k")] = _default(KnnOptions, "k"),
    temperature: Annotated[float, _option(KnnOptions, "temperature", "--temperature")] = _default(
        KnnOptions, "temperature"
    ),
    device: Device = _default(RunOptions, "device"),
    batch_size: BatchSize = _default(RunOptions, "batch_size"),
    workers: Workers = _default(RunOptions, "workers"),
    seed: Seed = _default(RunOptions, "seed"),
    output: Output = None,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Weighted kNN (cosine, votes exp(sim/T)): training images classify validation images."""
    from dcframe.evaluation.knn import evaluate_knn

    started = time.perf_counter()
    options = _validated(KnnOptions, layers=_layers(layers), k=k, temperature=temperature)
    session = _start(ctx, options.layers)
    results = evaluate_knn(session.features, session.data, options, session.runtime)
    rows = [
        [name, str(r["dim"]), r["pooling"], _percent(r, "top1"), _percent(r, "top5")]
        for name, r in results.items()
    ]
    title = f"weighted kNN (k={options.k}, T={options.temperature})"
    table = _table(title, ["layer", "dim", "pooling", "top1", "top5"], rows)
    _finish(session, "knn", options, results, started, table)


@app.command("clusters")
def clusters_cmd(
    ctx: typer.Context,
    source: Source = None,
    random_init: RandomInit = None,
    epoch: Epoch = None,
    recipe: RecipeFile = None,
    overrides: BackboneSet = None,
    data: DataName = None,
    train_dir: TrainDir = None,
    val_dir: ValDir = None,
    limit_train: LimitTrain = None,
    limit_val: LimitVal = None,
    layers: Annotated[str, _option(ClusterOptions, "layers", "--layers")] = ",".join(
        _default(ClusterOptions, "layers")
    ),
    k: Annotated[int | None, _option(ClusterOptions, "k", "--k", "-k")] = None,
    pca_dim: Annotated[int, _option(ClusterOptions, "pca_dim", "--pca-dim")] = _default(
        ClusterOptions, "pca_dim"
    ),
    split: Annotated[str, _option(ClusterOptions, "split", "--split")] = _default(
        ClusterOptions, "split"
    ),
    device: Device = _default(RunOptions, "device"),
    batch_size: BatchSize = _default(RunOptions, "batch_size"),
    workers: Workers = _default(RunOptions, "workers"),
    seed: Seed = _default(RunOptions, "seed"),
    output: Output = None,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """k-means on frozen features (k = number of classes): NMI, AMI, ARI, accuracy."""
    from dcframe.evaluation.cluster_metrics import evaluate_clusters

    started = time.perf_counter()
    options = _validated(ClusterOptions, layers=_layers(layers), k=k, pca_dim=pca_dim, split=split)
    session = _start(ctx, options.layers)
    results = evaluate_clusters(session.features, session.data, options, session.runtime)
    rows = [
        [
            name,
            str(r["dim"]),
            str(r["pca_dim"]),
            str(r["k"]),
            *(f"{r[key]:.4f}" for key in ("nmi", "ami", "ari", "accuracy")),
        ]
        for name, r in results.items()
    ]
    headers = ["layer", "dim", "pca", "k", "NMI", "AMI", "ARI", "accuracy"]
    table = _table(f"k-means on {options.split} images", headers, rows)
    _finish(session, "clusters", options, results, started, table)
