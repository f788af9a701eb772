"""The options of ``dcframe eval``, one strict pydantic model per concern.

Every command-line option of ``dcframe eval`` is a field of one of these models (the CLI
takes its defaults and help texts from them), so the bounds are checked in one place and
the JSON result file records exactly the validated values:

* :class:`~dcframe.store.model_options.ModelOptions` (in the store): what to evaluate
  (run directory, checkpoint, random init).
* :class:`DataOptions`: the labelled train/validation images.
* :class:`RunOptions`: device, batch size, workers, seed, output folder.
* :class:`LinearProbeOptions`, :class:`KnnOptions`, :class:`ClusterOptions`: one per command.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SerializeAsAny

from dcframe.core.params import Params

#: Name of the clustering feature (fc7 before its ReLU for AlexNet/VGG) among the layers.
EMBED = "embed"

Layers = tuple[str, ...]


class DatasetChoice(Params):
    """One registered dataset and its validated parameters."""

    name: str = Field(min_length=1, description="Registered dataset name, e.g. imagefolder.")
    params: SerializeAsAny[Params] = Field(
        description="The dataset's parameters, an instance of its own Params model."
    )


class DataOptions(Params):
    """The labelled images: a train split (probe / kNN memory) and a validation split.

    Both come from the dataset registry, so any dataset a recipe can name (a plugin's
    included) can be evaluated on.
    """

    train: DatasetChoice = Field(description="Training images (probe / kNN memory).")
    val: DatasetChoice = Field(description="Validation images, with the same classes.")
    limit_train: int | None = Field(
        None,
        ge=1,
        description="Use a fixed stratified subset of this many training images (all if unset).",
    )
    limit_val: int | None = Field(
        None,
        ge=1,
        description="Use a fixed stratified subset of this many validation images (all if unset).",
    )


class RunOptions(Params):
    """Where and how the evaluation runs, and where its results go."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' uses CUDA when PyTorch sees a GPU, else the CPU."
    )
    batch_size: int = Field(
        256,
        ge=1,
        le=65536,
        description="Images per batch for feature extraction and probe training (paper: 256).",
    )
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes.")
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Seed of the random init, the probe heads, the shuffling, the subsets "
        "and k-means.",
    )
    output: str | None = Field(
        None,
        min_length=1,
        description="Folder of the results JSON (default: eval/ in the run directory or next "
        "to a checkpoint; for --random-init, eval/ of the run its --recipe describes, else "
        "in the current folder).",
    )
    cache_dir: str | None = Field(
        None,
        min_length=1,
        description="Folder of the temporary on-disk feature cache (N x layer dims float32 "
        "per split; removed when the command ends). Default: the output folder.",
    )
    quiet: bool = Field(False, description="No progress bars or per-epoch lines.")
    json_output: bool = Field(
        False,
        description="Print the result as one JSON document on stdout and nothing else there "
        "(progress and the results file's path go to stderr).",
    )


class LinearProbeOptions(Params):
    """The linear probe: one linear classifier per frozen layer (paper or stable protocol)."""

    layers: Layers | None = Field(
        None,
        min_length=1,
        description="Layers to probe, e.g. conv1..conv5 or 'embed' (default: every conv tap).",
    )
    epochs: int = Field(
        90, ge=1, le=10_000, description="Passes over the training set (paper: 90)."
    )
    lr: float = Field(0.01, gt=0.0, le=10.0, description="Initial learning rate lr0 (paper: 0.01).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum (paper: 0.9).")
    weight_decay: float = Field(
        1e-4,
        ge=0.0,
        le=1.0,
        description="SGD weight decay, also in the decay lr0 / sqrt(1 + lr0*wd*t) (paper: 1e-4).",
    )
    mode: Literal["cached", "augment"] = Field(
        "cached",
        description="'cached': training features computed once without augmentation and kept "
        "in the on-disk cache (cheap); 'augment': the paper's random crops and flips, a trunk "
        "pass per batch.",
    )
    ten_crop: bool = Field(
        False, description="Validate on 10 crops (corners, centre, flipped) averaging the softmax."
    )
    protocol: Literal["paper", "stable"] = Field(
        "paper",
        description="'paper': raw features and lr0 / sqrt(1 + lr0*wd*t); 'stable': features "
        "standardised with the training split's mean/std and a cosine learning rate to 0, "
        "steadier on small data (quote its last or mean_last_10).",
    )


class KnnOptions(Params):
    """Weighted k-nearest-neighbour classification on cosine similarity."""

    layers: Layers = Field(
        (EMBED,), min_length=1, description="Layers whose features are classified."
    )
    k: int = Field(20, ge=1, le=10_000, description="Neighbours that vote (common benchmark: 20).")
    temperature: float = Field(
        0.07, gt=0.0, le=100.0, description="A neighbour votes exp(similarity / temperature)."
    )


class ClusterOptions(Params):
    """k-means on frozen features, scored against the true classes."""

    layers: Layers = Field(
        (EMBED,), min_length=1, description="Layers whose features are clustered."
    )
    k: int | None = Field(
        None, ge=2, description="Number of clusters (default: the number of classes)."
    )
    pca_dim: int = Field(
        256,
        ge=0,
        description="PCA-whiten to this many dims before L2 + k-means, as DeepCluster does "
        "(capped by the feature width and image count; 0: L2 only).",
    )
    split: Literal["train", "val", "all"] = Field(
        "all", description="Which images are clustered: train, val, or both together."
    )
