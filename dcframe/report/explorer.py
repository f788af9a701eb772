"""The transform explorer: a few images as the network receives them.

For each image: the original, the clustering view (resize and centre crop, what feature
extraction sees), training views drawn with different seeds (random resized crop, flip and
colour jitter if on: what the training pass sees), and the gradient channels the
backbone's frozen Sobel layer makes of the clustering view. Everything is computed by the
same code the run uses (:mod:`dcframe.data.transforms` and the backbone's own ``sobel`` module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dcframe.components.backbones.sobel import Sobel
from dcframe.core.interfaces import Backbone, Dataset
from dcframe.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PixelsOfClusteringView,
    TrainingView,
    normalise_pixels,
)

TRAINING_SEEDS = (0, 1, 2, 3)


@dataclass(frozen=True)
class ExploredImage:
    """One dataset image through both pipelines.

    Attributes:
        index: Dataset index.
        caption: Index and, when known, class name.
        original: (H, W, 3) uint8, the image as the dataset gives it.
        clustering_view: (S, S, 3) uint8, the clustering view.
        training_views: (S, S, 3) float in [0, 1] per seed of ``TRAINING_SEEDS``, the
            normalised training input mapped back to colours for display.
        sobel: (2, S, S) Gx and Gy of the clustering view, or None without a Sobel layer.
    """

    index: int
    caption: str
    original: np.ndarray
    clustering_view: np.ndarray
    training_views: list[np.ndarray]
    sobel: np.ndarray | None


def _displayable(normalised: torch.Tensor) -> np.ndarray:
    """A normalised (3, S, S) input back to (S, S, 3) colours in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (normalised * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def pick_images(
    readable: np.ndarray, labels: np.ndarray | None, count: int, rng: np.random.Generator
) -> list[int]:
    """``count`` random readable images, of different classes where there are labels."""
    candidates = rng.permutation(np.flatnonzero(readable))
    if labels is None:
        return sorted(candidates[:count].tolist())
    picked: list[int] = []
    seen: set[int] = set()
    for index in candidates:
        if int(labels[index]) not in seen:
            picked.append(int(index))
            seen.add(int(labels[index]))
        if len(picked) == count:
            break
    return sorted(picked)


def explore(
    dataset: Dataset,
    backbone: Backbone,
    indices: list[int],
    augment: Any,
) -> list[ExploredImage]:
    """The images at ``indices`` through the clustering and training pipelines (the
    latter with the recipe's ``augment`` section)."""
    size = backbone.input_size
    pixels_of = PixelsOfClusteringView(size)
    training = TrainingView(
        size, augment.crop_scale_min, augment.horizontal_flip, augment.color_jitter
    )
    sobel_layer = getattr(backbone, "sobel", None)
    labels, names = dataset.labels, dataset.class_names
    explored = []
    for index in indices:
        image = dataset.image(index)
        pixels = pixels_of(image)
        sobel = None
        if isinstance(sobel_layer, Sobel):
            with torch.no_grad():
                sobel = sobel_layer(normalise_pixels(pixels[None]))[0].numpy()
        caption = f"image {index}"
        if labels is not None:
            label = int(labels[index])
            caption += f", class {names[label] if names else label}"
        explored.append(
            ExploredImage(
                index=index,
                caption=caption,
                original=np.asarray(image.convert("RGB")),
                clustering_view=pixels.numpy(),
                training_views=[_displayable(training(image, seed)) for seed in TRAINING_SEEDS],
                sobel=sobel,
            )
        )
    return explored
