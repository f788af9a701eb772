"""Multi-crop (DeepCluster-v2 / SwAV): several large and small views of each image, each
crop drawn from its own seed, the same on the per-image and the batched path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dcframe.data.bad_images import collate_readable
from dcframe.data.batch_views import DecodedPixels
from dcframe.data.multi_crop import (
    BatchMultiCropView,
    MultiCropView,
    crop_seeds,
    smallest_side_for,
)
from dcframe.data.transforms import IMAGENET_STD, TrainingView, smallest_side_used

CPU = torch.device("cpu")
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _noise(rng: np.random.Generator, height: int = 36, width: int = 40) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _smooth(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Slowly varying colours with a little noise, where interpolation differences stay small
    (as in photographs)."""
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 6, 3)
    waves = np.stack([np.sin(xx / 6 + p) * np.cos(yy / 9 - p) for p in phase], -1)
    pixels = (waves * 0.4 + 0.5 + rng.normal(0, 0.04, waves.shape)) * 255
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _view(jitter: float = 0.0) -> MultiCropView:
    return MultiCropView.from_settings(
        input_size=24,
        crop_scale_min=0.3,
        horizontal_flip=True,
        color_jitter=jitter,
        large_count=2,
        small_count=3,
        small_size=12,
        small_scale=(0.05, 0.3),
    )


def test_crops_come_large_first_and_repeat_from_the_same_seed() -> None:
    view = _view(jitter=0.5)
    assert view.count == 5 and view.size == 24 and view.scale == (0.3, 1.0)
    assert view.views[2].scale == (0.05, 0.3)
    image = _noise(np.random.default_rng(0))
    crops = view(image, 7)
    assert isinstance(crops, tuple)
    assert [tuple(c.shape) for c in crops] == [(3, 24, 24)] * 2 + [(3, 12, 12)] * 3
    assert all(c.dtype == torch.float32 for c in crops)
    for first, again in zip(crops, view(image, 7), strict=True):
        assert torch.equal(first, again)
    assert not torch.equal(crops[0], crops[1])
    assert len({c.numpy().tobytes() for c in crops[2:]}) == 3
    assert not torch.equal(view(image, 8)[0], crops[0])


def test_large_only_multi_crop_needs_no_small_view() -> None:
    view = MultiCropView(TrainingView(16), 2)
    assert view.count == 2 and len(view(_noise(np.random.default_rng(1)), 3)) == 2
    with pytest.raises(ValueError, match="small view"):
        MultiCropView(TrainingView(16), 2, small_count=1)
    with pytest.raises(ValueError, match="large_count"):
        MultiCropView(TrainingView(16), 0)


def test_crop_seeds_are_deterministic_distinct_and_in_range() -> None:
    seeds = crop_seeds(12345, 8)
    assert len(seeds) == 8 and len(set(seeds)) == 8
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert crop_seeds(12345, 8) == seeds
    assert crop_seeds(12345, 3) == seeds[:3]  # a crop's seed does not depend on the count
    assert crop_seeds(12346, 8) != seeds
    assert crop_seeds(0, 0) == []
    assert set(crop_seeds(0, 4)).isdisjoint(crop_seeds(1, 4))
    with pytest.raises(ValueError):
        crop_seeds(-1, 2)


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_batched_multi_crop_follows_the_per_image_view(jitter: float) -> None:
    """The same draws on both paths; pixels within the bound tests/test_batch_views.py states
    for one view on the 0-255 scale: mean absolute difference <= 1.6 without colour jitter
    and <= 2.5 with it, 99% of values within 12."""
    rng = np.random.default_rng(2)
    images = [_smooth(rng, 36, 40) for _ in range(6)]
    images += [_smooth(rng, *rng.integers(30, 80, 2)) for _ in range(6)]
    view = _view(jitter)
    seeds = [1000 + 17 * i for i in range(len(images))]
    batched = BatchMultiCropView(view, CPU)
    assert batched.device == CPU
    assert len({id(c) for c in batched.crops}) == 2  # one batched view per distinct view
    decoded = [DecodedPixels(10**4)(image) for image in images]

    draws = batched.draws(decoded, seeds)
    assert len(draws) == view.count and all(len(d) == len(images) for d in draws)
    for b, (image, seed) in enumerate(zip(images, seeds, strict=True)):
        assert [draws[j][b] for j in range(view.count)] == view.draws(*image.size, seed)

    out = batched.apply(decoded, draws)
    per_image = [view(image, seed) for image, seed in zip(images, seeds, strict=True)]
    assert len(out) == view.count
    for j, crop in enumerate(out):
        reference = torch.stack([crops[j] for crops in per_image])
        assert crop.shape == reference.shape and crop.dtype == torch.float32
        gap = ((crop - reference) * STD * 255).abs()
        assert gap.mean() <= (2.5 if jitter else 1.6)
        assert gap.flatten().quantile(0.99) <= 12
    for again, first in zip(batched(decoded, seeds), out, strict=True):
        assert torch.equal(again, first)


def test_collating_multi_crop_items_gives_one_batch_per_crop() -> None:
    view = _view()
    rng = np.random.default_rng(3)
    items = [(view(_noise(rng), seed), seed % 4) for seed in (5, 6)]
    images, targets, unreadable = collate_readable(items)
    assert unreadable == [] and isinstance(targets, torch.Tensor)
    assert torch.equal(targets, torch.tensor([1, 2]))
    assert isinstance(images, list) and len(images) == view.count
    assert [tuple(b.shape) for b in images] == [(2, 3, 24, 24)] * 2 + [(2, 3, 12, 12)] * 3
    assert torch.equal(images[3][1], items[1][0][3])


def test_smallest_side_covers_every_crop() -> None:
    view = _view()
    assert smallest_side_for(view) >= smallest_side_used(24, 0.3)
    # small crops of a tiny area fraction need more pixels than the large ones
    tiny = MultiCropView.from_settings(
        24, 0.5, True, 0.0, large_count=2, small_count=4, small_size=16, small_scale=(0.01, 0.2)
    )
    assert smallest_side_for(tiny) == smallest_side_used(16, 0.01) == 160
    assert smallest_side_for(tiny) > smallest_side_used(24, 0.5)
    assert smallest_side_for(MultiCropView(TrainingView(24, 0.3), 2)) == smallest_side_used(24, 0.3)
