"""``dcframe eval``: linear probes, weighted kNN and k-means cluster metrics on frozen features.

Every command takes what to evaluate (a run directory, a checkpoint file or
``--random-init BACKBONE``), labelled data from the dataset registry (``--data NAME
--data-set KEY=VALUE``, validation ``--val-data``/``--val-set``; ``--train-dir`` +
``--val-dir`` for two image folders), prints a table (``--json``: one JSON document) and
keeps every result: ``<output>/<command>-<tag>-<hash>.json``, one file per evaluation
(``tag``: the checkpoint evaluated; ``hash``: of the options), and a line in
``<output>/index.jsonl``. The options are the fields of the models in
:mod:`dcframe.evaluation.options` (defaults and help texts come from there); the options
every command shares are declared once, below, and added to each command's own.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from dcframe.cli.tables import print_table
from dcframe.core.errors import UserError
from dcframe.core.params import Params
from dcframe.core.registry import plugin_output_to_stderr
from dcframe.evaluation.options import (
    ClusterOptions,
    DataOptions,
    KnnOptions,
    LinearProbeOptions,
    RunOptions,
)
from dcframe.store.model_options import ModelOptions

if TYPE_CHECKING:
    from dcframe.evaluation.data import EvalData
    from dcframe.evaluation.features import FrozenFeatures
    from dcframe.evaluation.runtime import Runtime
    from dcframe.store.trained import EvalModel

# The evaluation modules (torch, torchvision, faiss, scikit-learn, the registries) are
# imported by the commands themselves, so that `dcframe --help` and failing option checks
# stay fast; the options models only need pydantic.

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
_FLAGS = {"path": "RUN_DIR_OR_CHECKPOINT", "overrides": "--set", "json_output": "--json"}


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
        metavar="DATASET",
        help="Registered dataset of the training images (`dcframe plugins list`), e.g. "
        "sklearn-digits, imagefolder, filelist, cifar10, mnist, webdataset.",
    ),
]
DataSet = Annotated[
    list[str] | None,
    typer.Option(
        "--data-set",
        metavar="KEY=VALUE",
        help="A parameter of the --data dataset (repeat the option), e.g. root=/data/train; "
        "`dcframe plugins show DATASET` lists them.",
    ),
]
ValData = Annotated[
    str | None,
    typer.Option(
        "--val-data",
        metavar="DATASET",
        help="Registered dataset of the validation images (default: the --data one, with "
        "--val-set changing its parameters; split=test where it has a split).",
    ),
]
ValSet = Annotated[
    list[str] | None,
    typer.Option("--val-set", metavar="KEY=VALUE", help="A parameter of the validation "
                 "dataset (repeat), e.g. root=/data/val."),
]  # fmt: skip
TrainDir = Annotated[
    Path | None,
    typer.Option("--train-dir", help="Short for --data imagefolder --data-set root=DIR."),
]
ValDir = Annotated[Path | None, typer.Option("--val-dir", help="Short for --val-set root=DIR.")]
LimitTrain = Annotated[int | None, _option(DataOptions, "limit_train", "--limit-train")]
LimitVal = Annotated[int | None, _option(DataOptions, "limit_val", "--limit-val")]
Device = Annotated[str, _option(RunOptions, "device", "--device")]
BatchSize = Annotated[int, _option(RunOptions, "batch_size", "--batch-size")]
Workers = Annotated[int, _option(RunOptions, "workers", "--workers")]
Seed = Annotated[int, _option(RunOptions, "seed", "--seed")]
Output = Annotated[Path | None, _option(RunOptions, "output", "--output", "-o")]
CacheDir = Annotated[Path | None, _option(RunOptions, "cache_dir", "--cache-dir")]
Quiet = Annotated[bool, _option(RunOptions, "quiet", "--quiet", "-q")]
JsonOutput = Annotated[bool, _option(RunOptions, "json_output", "--json")]


def _what_and_on_what(
    source: Source = None,
    random_init: RandomInit = None,
    epoch: Epoch = None,
    recipe: RecipeFile = None,
    overrides: BackboneSet = None,
    data: DataName = None,
    data_set: DataSet = None,
    val_data: ValData = None,
    val_set: ValSet = None,
    train_dir: TrainDir = None,
    val_dir: ValDir = None,
    limit_train: LimitTrain = None,
    limit_val: LimitVal = None,
) -> None:
    """The options in front of every command's own (its signature is all that is used)."""


def _where_and_how(
    device: Device = _default(RunOptions, "device"),
    batch_size: BatchSize = _default(RunOptions, "batch_size"),
    workers: Workers = _default(RunOptions, "workers"),
    seed: Seed = _default(RunOptions, "seed"),
    output: Output = None,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """The options after every command's own (its signature is all that is used)."""


_BEFORE = list(inspect.signature(_what_and_on_what, eval_str=True).parameters.values())
_AFTER = list(inspect.signature(_where_and_how, eval_str=True).parameters.values())

Show = Callable[[], None]
Command = Callable[..., Show]


def _eval_command(name: str) -> Callable[[Command], Command]:
    """Register ``command(common, **own)`` as ``dcframe eval NAME`` with the shared options.

    Typer reads a command's options from its signature; the one given here is the shared
    options in front, the command's own (every parameter after ``common``), then the
    shared ones about running. The shared values reach the command as one dict. The
    command evaluates with stdout sent to stderr (a plugin backbone's prints must not mix
    with ``--json``) and returns what shows its results, run after.
    """

    def register(command: Command) -> Command:
        own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]
        shared = [p.name for p in (*_BEFORE, *_AFTER)]

        def run(**values: Any) -> None:
            with plugin_output_to_stderr():
                show = command({n: values.pop(n) for n in shared}, **values)
            show()

        parameters = [*_BEFORE, *own, *_AFTER]
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        run.__doc__ = command.__doc__
        run.__name__ = command.__name__
        app.command(name)(run)
        return command

    return register


@dataclass(frozen=True)
class _Session:
    """Everything a command evaluates with, ready before the first pass over the data."""

    model: EvalModel
    features: FrozenFeatures
    data: EvalData
    data_options: DataOptions
    run_options: RunOptions
    runtime: Runtime


def _start(given: dict[str, Any], layers: tuple[str, ...] | None) -> _Session:
    """Validate the shared options, load the model, check the layers, then the data."""
    import torch

    from dcframe.evaluation.data import data_options, load_data
    from dcframe.evaluation.features import FrozenFeatures
    from dcframe.evaluation.hints import recipe_data_flags
    from dcframe.evaluation.runtime import Runtime
    from dcframe.store.trained import data_recipe, load_model

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
    run_options = _validated(
        RunOptions,
        **{name: given[name] for name in ("device", "batch_size", "workers", "seed", "quiet")},
        json_output=given["json_output"],
        output=path_or_none("output"),
        cache_dir=path_or_none("cache_dir"),
    )
    recipe, run = data_recipe(model_options) if given["data"] is None else (None, None)
    flags = recipe_data_flags(recipe)
    own_data = None
    if recipe is not None and flags is not None:
        own_data = (f"the run's own ({run})" if run else f"that of {recipe}", flags)
    data = data_options(
        given["data"],
        list(given["data_set"] or ()),
        given["val_data"],
        list(given["val_set"] or ()),
        path_or_none("train_dir"),
        path_or_none("val_dir"),
        given["limit_train"],
        given["limit_val"],
        own_data,
    )
    runtime = Runtime.from_options(run_options)
    torch.manual_seed(run_options.seed)  # the random init, the heads, the augmentations
    model = load_model(model_options)
    if runtime.cache_dir is None:  # next to the results: a real disk, unlike a RAM-backed /tmp
        runtime = replace(runtime, cache_dir=_output_folder(run_options, model))
    backbone = model.backbone.to(runtime.device)
    features = FrozenFeatures(backbone, layers or backbone.tap_names)
    evaluation_data = load_data(data, run_options.seed)
    runtime.reporter.info(
        f"{model.info['source']} {model.info['backbone']}: layers "
        + ", ".join(f"{n} ({features.dims[n]})" for n in features.layers)
        + f"; {len(evaluation_data.train)} train / {len(evaluation_data.val)} val images"
    )
    return _Session(model, features, evaluation_data, data, run_options, runtime)


def _output_folder(run_options: RunOptions, model: EvalModel) -> Path:
    """Where the results go: ``--output``, else the model's default folder (a run's
    ``eval/``; for a random init, that of the run its ``--recipe`` describes, else
    ``./eval``)."""
    return Path(run_options.output or model.output_dir).expanduser()


def _away_from_runs(run_options: RunOptions, model: EvalModel) -> str | None:
    """One line for a random-init result that no run's folder received: where it went,
    and how to put it beside a run (whose report compares with it)."""
    if run_options.output is not None or model.run_dir is not None:
        return None
    from dcframe.store.trained import described_run

    folder = _output_folder(run_options, model).absolute()
    run = None if model.recipe is None else described_run(model.recipe)
    if model.recipe is None:
        why = "no --recipe names a run"
    elif run is None:
        why = f"{model.recipe} names no run folder"
    else:
        why = f"no run of {model.recipe} in {run}"
    return (
        f"note: the random-init result is in {folder} ({why}); --output RUN/eval puts it "
        "beside a run, where the run's report compares with it"
    )


def _layers(text: str | None) -> tuple[str, ...] | None:
    """``conv1,conv2`` -> ('conv1', 'conv2'); None stays None (the command's default)."""
    return None if text is None else tuple(p.strip() for p in text.split(",") if p.strip())


#: Decimals kept per result key: accuracies are percentages (2 decimals: 0.01 %), cluster
#: scores fractions of 1 (4 decimals), losses 4 decimals.
_DECIMALS = {"top1": 2, "top5": 2, "nmi": 4, "ami": 4, "ari": 4, "accuracy": 4, "loss": 4}
_HEADLINE = ("top1", "top5", "nmi", "ami", "ari", "accuracy")


def _rounded(value: Any, key: str = "") -> Any:
    """``value`` with every number rounded to what it means (see ``_DECIMALS``)."""
    if isinstance(value, dict):
        return {k: _rounded(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, key) for v in value]
    if isinstance(value, float) and key in _DECIMALS:
        return round(value, _DECIMALS[key])
    return value


def _headline(results: dict[str, Any]) -> dict[str, Any]:
    """The scores of each layer worth a line in the index (the best epoch of a probe)."""
    out = {}
    for layer, scores in results.items():
        scores = scores.get("best", scores) if isinstance(scores, dict) else {}
        out[layer] = {k: scores[k] for k in _HEADLINE if k in scores}
    return out


def _finish(
    session: _Session,
    command: str,
    options: Params,
    results: dict[str, Any],
    started: float,
    title: str,
    headers: list[str],
    rows: list[list[str]],
) -> Show:
    """Keep the results (their own file, a line in the index); returns what shows them."""
    from dcframe.store.rundir import versions

    model = session.model
    tag = model.tag
    trained = model.info.get("epoch")
    if tag == "latest" and isinstance(trained, int):
        tag = f"latest-{trained}ep"  # "latest" moves on as a run trains: say which it was
    settings = {
        **session.run_options.model_dump(
            mode="json", exclude={"output", "quiet", "cache_dir", "json_output"}
        ),
        "device": str(session.runtime.device),
        **options.model_dump(mode="json"),
        "layers": list(session.features.layers),  # resolved: the default is "every tap"
    }
    data = session.data.info(session.data_options)
    digest = json.dumps([command, model.info, data, settings], sort_keys=True, default=str)
    options_hash = hashlib.sha256(digest.encode()).hexdigest()[:8]
    folder = _output_folder(session.run_options, model)
    path = folder / f"{command}-{tag}-{options_hash}.json"
    payload = {
        "command": command,
        "tag": tag,
        "options_hash": options_hash,
        "model": model.info,
        "data": data,
        "options": settings,
        "results": _rounded(results),
        "seconds": round(time.perf_counter() - started, 1),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions([]),
    }
    index = {
        "file": path.name,
        **{k: payload[k] for k in ("command", "tag", "options_hash", "finished")},
        "results": _headline(payload["results"]),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        with (folder / "index.jsonl").open("a", encoding="utf-8") as lines:
            lines.write(json.dumps(index) + "\n")
    except OSError as error:
        raise UserError(
            f"--output: cannot write in {str(folder)!r} ({error.strerror}); choose another folder"
        ) from error

    note = _away_from_runs(session.run_options, model)

    def show() -> None:
        if session.run_options.json_output:
            print(json.dumps(payload, indent=2))
            print(f"results: {path}", file=sys.stderr)
        else:
            print_table(title, headers, rows, right_from=1)
            print(f"results: {path}")
        if note is not None:
            print(note, file=sys.stderr)

    return show


def _percent(scores: dict[str, Any], key: str) -> str:
    return f"{scores[key]:.2f}" if key in scores else "-"


# ------------------------------------------------------------------------ commands


@_eval_command("linear-probe")
def linear_probe_cmd(
    common: dict[str, Any],
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
    protocol: Annotated[str, _option(LinearProbeOptions, "protocol", "--protocol")] = _default(
        LinearProbeOptions, "protocol"
    ),
) -> Show:
    """Train a linear classifier on each frozen layer (the paper's Table 1 protocol).

    Top-1 (top-5 with more than 5 classes) in percent, at the best and the last epoch, and
    the mean top-1 of the last 10 epochs.
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
        protocol=protocol,
    )
    session = _start(common, options.layers)
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
            _percent(r.mean_last_10, "top1"),
        ]
        for name, r in reports.items()
    ]
    headers = ["layer", "dim", "pooling", "best ep", "best top1", "top5", "last top1", "top5"]
    headers.append("mean last 10 top1")
    title = f"linear probe ({options.protocol}, {options.mode}, {options.epochs} epochs)"
    results = {name: r.as_dict() for name, r in reports.items()}
    return _finish(session, "linear-probe", options, results, started, title, headers, rows)


@_eval_command("knn")
def knn_cmd(
    common: dict[str, Any],
    layers: Annotated[str, _option(KnnOptions, "layers", "--layers")] = ",".join(
        _default(KnnOptions, "layers")
    ),
    k: Annotated[int, _option(KnnOptions, "k", "--k", "-k")] = _default(KnnOptions, "k"),
    temperature: Annotated[float, _option(KnnOptions, "temperature", "--temperature")] = _default(
        KnnOptions, "temperature"
    ),
) -> Show:
    """Weighted kNN (cosine, votes exp(sim/T)): training images classify validation images."""
    from dcframe.evaluation.knn import evaluate_knn

    started = time.perf_counter()
    options = _validated(KnnOptions, layers=_layers(layers), k=k, temperature=temperature)
    session = _start(common, options.layers)
    results = evaluate_knn(session.features, session.data, options, session.runtime)
    rows = [
        [name, str(r["dim"]), r["pooling"], _percent(r, "top1"), _percent(r, "top5")]
        for name, r in results.items()
    ]
    title = f"weighted kNN (k={options.k}, T={options.temperature})"
    headers = ["layer", "dim", "pooling", "top1", "top5"]
    return _finish(session, "knn", options, results, started, title, headers, rows)


@_eval_command("clusters")
def clusters_cmd(
    common: dict[str, Any],
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
) -> Show:
    """k-means on frozen features (k = number of classes): NMI, AMI, ARI, accuracy."""
    from dcframe.evaluation.cluster_metrics import evaluate_clusters

    started = time.perf_counter()
    options = _validated(ClusterOptions, layers=_layers(layers), k=k, pca_dim=pca_dim, split=split)
    session = _start(common, options.layers)
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
    title = f"k-means on {options.split} images"
    return _finish(session, "clusters", options, results, started, title, headers, rows)
