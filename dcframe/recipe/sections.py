"""The recipe's own sections (``[run]``, ``[optimizer]``, ``[augment]``), the fields dcframe
adds to every component section, and which recipe key holds which component kind."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from dcframe.core import kinds
from dcframe.core.params import Params
from dcframe.core.registry import Registry

SCHEMA_VERSION = 1

# The largest TOML integer (a signed 64-bit one); torch.manual_seed takes it, numpy any size.
MAX_SEED = 2**63 - 1
# Most file systems cap one path component at 255 bytes.
MAX_NAME_BYTES = 255


class RunSection(Params):
    """How and where the run happens."""

    name: str = Field(
        "deepcluster",
        min_length=1,
        description="Run name; also its folder name, so one path component: no '/', '\\' or "
        f"NUL, not '.' or '..', at most {MAX_NAME_BYTES} bytes of UTF-8.",
    )
    seed: int = Field(
        31,
        ge=0,
        le=MAX_SEED,
        description="Seed of every random generator (paper: 31); at most 2^63 - 1.",
    )
    epochs: int = Field(500, ge=1, description="Cluster/train rounds (paper: 500).")
    output_dir: str = Field("runs", description="Parent folder of the run directory.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="'auto' uses CUDA when present (clustering too, if the clusterer can), "
        "else the CPU.",
    )
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision for extraction and training. 'auto': on CUDA bf16 "
        "where the GPU supports it (Ampere and later), else off; on the CPU off (float32). "
        "'bf16' also works on the CPU: faster where it has bf16 instructions (AVX512-BF16 "
        "or AMX), emulated and slower elsewhere; 'fp16' is for CUDA only.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the network for the training pass (CUDA mostly; the "
        "first steps of every epoch pay the compilation, since the top layer is new).",
    )
    workers: int | str = Field(
        "auto",
        description="DataLoader worker processes that decode images, 0 to 64; 'auto': one "
        "per core this process may use, less one, at most 8.",
    )
    augment_on: Literal["workers", "device"] = Field(
        "workers",
        description="Where the training view is computed. 'workers': each image cropped, "
        "resized, flipped and distorted with PIL in the loader workers (the reference). "
        "'device': workers only decode, and the batch is augmented as tensors on the run's "
        "device (same crops and flips from the same seeds, pixels within interpolation "
        "differences); with run.view_cache_gib the decoded images are also kept, so that "
        "later epochs decode nothing.",
    )
    jpeg_decode: Literal["workers", "device"] = Field(
        "workers",
        description="Where JPEGs are decoded for training with run.augment_on = 'device': "
        "'workers' (PIL) or 'device' (torchvision's decode_jpeg in batches: nvJPEG on a GPU), "
        "for datasets too big for the cache; other formats and files the device rejects "
        "are decoded with PIL.",
    )
    checkpoint_every: int = Field(
        0,
        ge=0,
        description="Also keep the weights of every n-th epoch (0: only the latest checkpoint).",
    )
    keep_clusters_every: int = Field(
        0,
        ge=0,
        description="Also keep the clustering of every n-th epoch in clusters/ (0: only the "
        "latest): the trunk that embedded the images, the fitted preprocessing and the "
        "centroids, which `dcframe assign` places new images with.",
    )
    checkpoint_every_steps: int = Field(
        0,
        ge=0,
        description="Also checkpoint every n training steps within an epoch, to resume a long "
        "epoch where it stopped (0: only at the end of each epoch).",
    )
    sync_batchnorm: bool = Field(
        False,
        description="In a distributed run, BatchNorm statistics over the global batch of all "
        "processes instead of each process's share (paper: one GPU, so off).",
    )
    view_cache_gib: float = Field(
        0.0,
        ge=0,
        le=1_000_000,
        description="Memory-mapped cache of the clustering view (resized, centre-cropped uint8 "
        "pixels) in the run directory, filled during the first epoch and read from then on, "
        "when the whole dataset fits in this many GiB (0: off). Results are bit-identical.",
    )
    knn_k: int = Field(
        20,
        ge=0,
        le=1000,
        description="Neighbours of the per-epoch learning signal, a leave-one-out kNN accuracy "
        "(cosine) of the clustering features already extracted, when the data has labels "
        "(0: off). It needs no extra forward pass and changes nothing in training.",
    )
    knn_queries: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Images the per-epoch kNN classifies, drawn at random each epoch among all "
        "(each against all the others: the cost is queries x images x feature dim).",
    )
    collective_timeout: float = Field(
        1800.0,
        gt=0,
        le=86400,
        description="Seconds a distributed run's processes wait for each other (e.g. while the "
        "main process clusters) before all of them stop with an error instead of hanging.",
    )

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, name: str) -> str:
        # The run folder is output_dir/name: anything but one plain component escapes or breaks it.
        if name in (".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError(
                "a run name is one folder name: no '/', '\\' or NUL byte, and not '.' or '..'"
            )
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            raise ValueError(
                f"a run name is at most {MAX_NAME_BYTES} bytes of UTF-8 (a folder name); "
                f"this one has {size}"
            )
        return name

    @field_validator("workers")
    @classmethod
    def _workers(cls, workers: int | str) -> int | str:
        if workers != "auto" and not (isinstance(workers, int) and 0 <= workers <= 64):
            raise ValueError("a number of loader processes from 0 to 64, or 'auto'")
        return workers

    @model_validator(mode="after")
    def _decode_on_device_needs_batches(self) -> RunSection:
        if self.jpeg_decode == "device" and self.augment_on != "device":
            raise ValueError(
                "run.jpeg_decode = 'device' decodes for the batched training view; also set "
                "run.augment_on = 'device' (or leave run.jpeg_decode = 'workers')"
            )
        return self

    @field_validator("output_dir")
    @classmethod
    def _no_nul(cls, output_dir: str) -> str:
        # No operating system accepts a NUL byte in a path; os calls would raise ValueError.
        if "\0" in output_dir:
            raise ValueError("a folder path cannot contain a NUL byte")
        return output_dir


class AugmentSection(Params):
    """The training pipeline's augmentation (the clustering pipeline has none)."""

    crop_scale_min: float = Field(
        0.08, gt=0, le=1, description="Smallest area fraction of RandomResizedCrop (paper: 0.08)."
    )
    horizontal_flip: bool = Field(True, description="Random horizontal flip, p=0.5 (paper: on).")
    color_jitter: float = Field(
        0.0,
        ge=0,
        le=2,
        description="Strength s of a colour distortion after the crop and flip (0: off, the "
        "paper's choice; 0.5: SimCLR's CIFAR setting): with p=0.8 brightness, contrast and "
        "saturation x U[1-0.8s, 1+0.8s] and hue + U[-0.2s, 0.2s], then grayscale with p=0.2. "
        "Meant for runs without Sobel, whose input has no colour to distort.",
    )
    large_crops: int = Field(
        1,
        ge=1,
        le=8,
        description="Views of each image at the input size per training step (paper: 1; "
        "DeepCluster-v2: 2, whose projections its memory bank keeps). Multi-crop: for "
        "method 'deepcluster-v2'.",
    )
    small_crops: int = Field(
        0,
        ge=0,
        le=16,
        description="Further views at small_size (multi-crop; 0: none, the paper's choice; "
        "DeepCluster-v2: 6 at 96 px for 224-px input). A small view costs about "
        "(small_size / input_size)^2 of a large one. For method 'deepcluster-v2'.",
    )
    small_size: int = Field(
        0,
        ge=0,
        le=1024,
        description="Side of the small views in pixels (0: 3/7 of the backbone's input "
        "size, 96 px for 224).",
    )
    small_scale: tuple[float, float] = Field(
        (0.05, 0.14),
        description="Area fraction range of the small views' crops (DeepCluster-v2: "
        "(0.05, 0.14); the large views use (crop_scale_min, 1)).",
    )

    @field_validator("small_scale")
    @classmethod
    def _ordered_fractions(cls, scale: tuple[float, float]) -> tuple[float, float]:
        low, high = scale
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"need 0 < low <= high <= 1, got {list(scale)}; e.g. small_scale = [0.05, 0.14]"
            )
        return scale


class OptimizerSection(Params):
    """Settings of the body optimizer, shared by the per-epoch top-layer optimizer."""

    algorithm: Literal["sgd", "lars"] = Field(
        "sgd",
        description="The body optimizer: 'sgd' with momentum (paper), or 'lars', SGD whose "
        "step is scaled per layer by trust x |w| / |g| (large batches; DeepCluster-v2). "
        "The top layers of method 'deepcluster' keep plain SGD.",
    )
    lars_trust: float = Field(
        0.001,
        gt=0,
        le=1,
        description="LARS's trust coefficient (DeepCluster-v2: 0.001); with algorithm = 'lars'.",
    )

    lr: float = Field(
        0.05, gt=0, description="Learning rate (paper: 0.05, constant); see schedule."
    )
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="Learning rate over the run, set at every training step of both "
        "optimizers: 'constant' (paper) or 'cosine', from lr down to 0 at the last step of "
        "run.epochs, after warmup_epochs of linear warm-up.",
    )
    warmup_epochs: float = Field(
        0.0,
        ge=0,
        description="Epochs of linear warm-up from 0 to lr at the start of the run (with "
        "either schedule; 0: none).",
    )
    top_init: Literal["normal", "centroids"] = Field(
        "normal",
        description="Init of each epoch's new top layer: 'normal', N(0, 0.01) (paper), or "
        "'centroids': each cluster's row is the mean of its images' top-layer inputs, "
        "so the layer starts out predicting the clusters (the idea behind DeepCluster-v2) "
        "instead of disrupting the trunk at the start of every epoch.",
    )
    momentum: float = Field(
        0.9, ge=0, lt=1, description="Body momentum (paper: 0.9); the top layer has none."
    )
    weight_decay: float = Field(1e-5, ge=0, description="L2 weight decay (paper: 1e-5).")
    batch_size: int = Field(
        256,
        ge=1,
        le=2**31 - 1,  # torch's DataLoader fails beyond sys.maxsize; no batch this big fits
        description="Images per batch, for training and extraction (paper: 256).",
    )


# Which recipe key holds which kind; the preprocess section is an ordered list.
COMPONENT_SECTIONS: dict[str, Registry[Any]] = {
    "method": kinds.methods,
    "data": kinds.datasets,
    "backbone": kinds.backbones,
    "preprocess": kinds.preprocessors,
    "clusterer": kinds.clusterers,
    "sampler": kinds.samplers,
    "loggers": kinds.loggers,
}
# Sections that are ordered lists of components rather than one.
LIST_SECTIONS = ("preprocess", "loggers")
SECTION_DEFAULTS: dict[str, Any] = {
    "method": {"name": "deepcluster"},
    "preprocess": [{"name": "pca"}, {"name": "l2"}],
    "sampler": {"name": "uniform"},
    "loggers": [{"name": "jsonl"}],
}
# The logger whose file is the run's record: --resume and dcframe report read it.
RECORD_LOGGER = "jsonl"


class BadImageSettings(Params):
    """What the engine does with images that cannot be read; part of every ``[data]`` section.

    dcframe owns these fields rather than each dataset, so plugin datasets get them too.
    """

    on_bad_image: Literal["fail", "skip"] = Field(
        "fail",
        description="fail: stop at the first unreadable image, naming it; skip: leave "
        "unreadable images out of the epoch, list them in the run directory, stop when more "
        "than max_bad_fraction are bad.",
    )
    max_bad_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="With on_bad_image = 'skip': the largest fraction of the dataset that may "
        "be unreadable before the run stops.",
    )


class ExtraClusterings(Params):
    """Further clusterings of each epoch's features; part of every ``[clusterer]`` section.

    dcframe owns the field rather than each clusterer, so plugin clusterers get it too.
    """

    extra_k: list[Annotated[int, Field(ge=2)]] = Field(
        default_factory=list,
        max_length=8,
        description="Several clusterings per epoch (not in the paper; off when empty): the same "
        "features are clustered again once for each value, with that many clusters and a "
        "seed of its own, and each clustering gets a top layer of its own on the shared "
        "trunk. The training loss is the mean of the heads' cross-entropies; images are "
        "still drawn over the clusters of k, which the run records. E.g. [300, 1000].",
    )


# Fields dcframe adds to every member of a component section's union, whatever its origin.
SECTION_MIXINS: dict[str, type[Params]] = {"data": BadImageSettings, "clusterer": ExtraClusterings}
