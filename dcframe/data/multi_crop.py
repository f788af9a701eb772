"""Multi-crop: several random views of each image, a few large and some small.

DeepCluster-v2 and SwAV (Caron et al. 2020) train on ``large_count`` views of each image at
the network's input size (random-resized crops of area fraction ``(crop_scale_min, 1)``)
and ``small_count`` views at a smaller size (area fraction ``(small_scale_min,
small_scale_max)``, typically 96 pixels against 224). More views of an image per step give
the network more to compare for little compute: a small view costs about ``(small /
large) ** 2`` of a large one (0.18 at 96 against 224), so six small views cost about as
much as one large view.

Each crop draws from a seed of its own, :func:`crop_seeds` of the image's seed and the
crop's position, and then from that seed alone (through
:meth:`~dcframe.data.transforms.TrainingView.draw`): a crop is the same in any process,
worker or thread, on either path, and after a resume. Crop ``j``'s seed does not depend on
how many crops there are.

:class:`MultiCropView` is the per-image path (PIL, in a loader worker): one image gives a
tuple of tensors, the large views first. :class:`BatchMultiCropView` is the batched path on
the run's device: the same draws, applied to a batch by one
:class:`~dcframe.data.batch_views.BatchTrainingView` per distinct view, one (B, 3, s, s)
tensor per crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dcframe.data.batch_views import BatchTrainingView, DecodedImage
from dcframe.data.transforms import TrainingView, ViewDraw, smallest_side_used


def crop_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent seeds in ``[0, 2**63)`` for the crops of an image whose seed is
    ``seed`` (non-negative): the first ``count`` words of ``numpy.random.SeedSequence(seed)``,
    so the same in any process, and crop ``j``'s seed the same whatever ``count`` is."""
    if seed < 0:
        raise ValueError(f"an image's seed must be non-negative, got {seed}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    words = np.random.SeedSequence(seed).generate_state(count, dtype=np.uint64)
    return [int(word >> np.uint64(1)) for word in words]


class MultiCropView:
    """The per-image multi-crop view: ``large_count`` views of ``large`` then ``small_count``
    views of ``small``, as a tuple of normalised (3, s, s) tensors.

    Args:
        large: The view at the network's input size.
        large_count: How many large views (at least one).
        small: The view at the smaller size (its ``scale`` the small crops' area fractions);
            needed when ``small_count`` > 0.
        small_count: How many small views.

    Attributes:
        views: One view per crop, the large ones first (the same objects repeated).
        size: The large views' size, the network's input size.
        scale: The large views' area fractions.
    """

    def __init__(
        self,
        large: TrainingView,
        large_count: int,
        small: TrainingView | None = None,
        small_count: int = 0,
    ) -> None:
        if large_count < 1:
            raise ValueError(f"large_count must be at least 1, got {large_count}")
        if small_count < 0:
            raise ValueError(f"small_count must be non-negative, got {small_count}")
        if small_count and small is None:
            raise ValueError("small_count > 0 needs a small view")
        self.large, self.small = large, small
        self.large_count, self.small_count = large_count, small_count
        self.views: list[TrainingView] = [large] * large_count
        if small is not None:
            self.views += [small] * small_count
        self.size = large.size
        self.scale = large.scale

    @classmethod
    def from_settings(
        cls,
        input_size: int,
        crop_scale_min: float,
        horizontal_flip: bool,
        color_jitter: float,
        *,
        large_count: int,
        small_count: int,
        small_size: int,
        small_scale: tuple[float, float],
    ) -> MultiCropView:
        """The multi-crop view of the given settings: both sizes share the flip and colour
        jitter; the small views crop area fractions in ``small_scale``."""
        large = TrainingView(input_size, crop_scale_min, horizontal_flip, color_jitter)
        if small_count == 0:
            return cls(large, large_count)
        low, high = small_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"small_scale must satisfy 0 < min <= max <= 1, got {small_scale}")
        if small_size < 1:
            raise ValueError(f"small_size must be positive, got {small_size}")
        small = TrainingView(small_size, low, horizontal_flip, color_jitter)
        small.scale = (float(low), float(high))
        return cls(large, large_count, small, small_count)

    @property
    def count(self) -> int:
        """How many crops each image gives."""
        return len(self.views)

    def draws(self, width: int, height: int, seed: int) -> list[ViewDraw]:
        """Every crop's random choices for a ``width`` x ``height`` image, crop ``j`` from
        ``crop_seeds(seed, count)[j]``."""
        seeds = crop_seeds(seed, self.count)
        return [view.draw(width, height, s) for view, s in zip(self.views, seeds, strict=True)]

    def __call__(self, image: Any, seed: int) -> tuple[torch.Tensor, ...]:
        """The crops of ``image`` (PIL), large first, each drawn from its own seed."""
        seeds = crop_seeds(seed, self.count)
        return tuple(view(image, s) for view, s in zip(self.views, seeds, strict=True))


class BatchMultiCropView:
    """:class:`MultiCropView`'s crops applied to batches of :class:`DecodedImage` on the
    device: the same draws from the same seeds, one :class:`BatchTrainingView` per distinct
    view.

    Args:
        view: The per-image multi-crop view to follow.
        device: Where the batch is augmented: the network's device.
    """

    def __init__(self, view: MultiCropView, device: torch.device) -> None:
        self.view, self.device = view, device
        batched: dict[int, BatchTrainingView] = {}
        for one in view.views:
            if id(one) not in batched:
                batched[id(one)] = BatchTrainingView(one, device)
        self.crops = [batched[id(one)] for one in view.views]

    def __call__(self, images: Sequence[DecodedImage], seeds: Sequence[int]) -> list[torch.Tensor]:
        """One normalised (B, 3, s, s) float32 batch per crop, large first, on the device."""
        return self.apply(images, self.draws(images, seeds))

    def draws(self, images: Sequence[DecodedImage], seeds: Sequence[int]) -> list[list[ViewDraw]]:
        """Per crop, each image's random choices (host work, which a loading thread can do
        ahead)."""
        if len(images) != len(seeds):
            raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
        per_image = [crop_seeds(int(seed), self.view.count) for seed in seeds]
        return [
            crop.draws(images, [own[j] for own in per_image]) for j, crop in enumerate(self.crops)
        ]

    def apply(
        self, images: Sequence[DecodedImage], draws: list[list[ViewDraw]]
    ) -> list[torch.Tensor]:
        """The crops of ``images`` as ``draws`` (per crop, per image) say, on the device."""
        if len(draws) != len(self.crops):
            raise ValueError(f"{len(draws)} crops' draws for a view of {len(self.crops)} crops")
        # the pixels go to the device once, not once per crop
        moved = [
            DecodedImage(i.pixels.to(self.device, non_blocking=True), i.width, i.height)
            for i in images
        ]
        return [crop.apply(moved, chosen) for crop, chosen in zip(self.crops, draws, strict=True)]


def smallest_side_for(view: TrainingView | MultiCropView) -> int:
    """The fewest pixels on an image's shorter side that lose nothing any crop of ``view``
    uses (nor the clustering view at the large size): a decoded image may be shrunk to it."""
    views = view.views if isinstance(view, MultiCropView) else [view]
    return max(smallest_side_used(one.size, one.scale[0]) for one in views)


def training_view(input_size: int, augment: Any) -> TrainingView | MultiCropView:
    """The training pass's view of an image from a recipe's ``[augment]`` section: the
    paper's one crop, or multi-crop (``large_crops`` > 1 or ``small_crops`` > 0, small
    views of ``small_size`` px, 3/7 of the input size when 0)."""
    large = (augment.crop_scale_min, augment.horizontal_flip, augment.color_jitter)
    if augment.large_crops == 1 and not augment.small_crops:
        return TrainingView(input_size, *large)
    small = augment.small_size or max(1, round(input_size * 3 / 7))
    return MultiCropView.from_settings(
        input_size,
        *large,
        large_count=augment.large_crops,
        small_count=augment.small_crops,
        small_size=small,
        small_scale=augment.small_scale,
    )
