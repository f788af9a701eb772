"""The training pass's batches on the batched path (``run.augment_on = "device"``).

Loader workers decode whole images (or only read JPEG bytes, with ``run.jpeg_decode =
"device"``); a loading thread of the main process takes the images the decoded-image cache
already holds from it instead, decodes the JPEG bytes on the device, stores what it decoded
in the cache, and draws every image's crop, flip and colours from its seed; the main thread
then applies the views to the batch on the device. Batches come out as the per-image path
gives them: ``(images, targets, unreadable)``, with ``images`` None when nothing was readable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from dcframe.core.errors import BadImageError
from dcframe.data.bad_images import Unreadable
from dcframe.data.batch_views import BatchTrainingView, DecodedImage
from dcframe.data.device_decode import decode_on_device
from dcframe.data.image_cache import DecodedImageCache
from dcframe.data.loading import DECODED, JPEG_BYTES, Item, RunLoader
from dcframe.data.multi_crop import BatchMultiCropView
from dcframe.data.prefetch import prefetched


@dataclass
class DeviceAugmentation:
    """What the batched path needs besides the loader.

    Attributes:
        view: The batched training view (one view, or multi-crop's several), on the
            network's device.
        cache: Decoded images kept from earlier passes (``run.view_cache_gib``), or None.
        jpeg_on_device: Decode JPEGs on the device rather than in the workers.
    """

    view: BatchTrainingView | BatchMultiCropView
    cache: DecodedImageCache | None = None
    jpeg_on_device: bool = False


@dataclass(frozen=True)
class _Prepared:
    """One step's readable images, their draws, their targets, and the unreadable ones."""

    images: list[DecodedImage]
    draws: Any  # per image; multi-crop: per view, per image
    targets: Any
    unreadable: list[Unreadable]


def device_augmented(
    loader: RunLoader, steps: Sequence[Sequence[Item]], augmentation: DeviceAugmentation
) -> Iterator[tuple[Any, Any, list[Unreadable]]]:
    """``(views, targets, unreadable)`` of each step's items, augmented on the device
    (views: a tensor, or multi-crop's list of tensors; None when nothing was readable)."""
    for batch in prefetched(_prepared(loader, steps, augmentation)):
        views = augmentation.view.apply(batch.images, batch.draws) if batch.images else None
        yield views, batch.targets, batch.unreadable


def _prepared(
    loader: RunLoader, steps: Sequence[Sequence[Item]], augmentation: DeviceAugmentation
) -> Iterator[_Prepared]:
    cache, view = augmentation.cache, augmentation.view
    # Decided once, before the pass: the loader gets its plan now, while the cache goes on
    # filling during the pass.
    cached = [cache is not None and cache.holds([i.image for i in items]) for items in steps]
    source = JPEG_BYTES if augmentation.jpeg_on_device else DECODED
    pending = [
        [i._replace(view=source) for i in items]
        for items, held in zip(steps, cached, strict=True)
        if not held
    ]
    loaded = iter(loader.load(pending))
    for items, from_cache in zip(steps, cached, strict=True):
        if from_cache:
            assert cache is not None
            images = cache.read([i.image for i in items])
            readable, unreadable = list(items), []
            targets = default_collate([i.target for i in items])
        else:
            images, targets, unreadable = next(loaded)
            bad = {u.index for u in unreadable}
            readable = [i for i in items if i.image not in bad]
            if images is not None and augmentation.jpeg_on_device:
                images, readable, targets = _decoded(images, readable, targets, unreadable, view)
            if cache is not None and images:
                cache.store([i.image for i in readable], images)
        images = images or []
        yield _Prepared(images, view.draws(images, [i.seed for i in readable]), targets, unreadable)


def _decoded(
    images: list[Any],
    readable: list[Item],
    targets: Any,
    unreadable: list[Unreadable],
    view: BatchTrainingView | BatchMultiCropView,
) -> tuple[list[DecodedImage], list[Item], Any]:
    """The batch's JPEG bytes decoded on the device; images no decoder reads join
    ``unreadable`` and leave the batch, with their targets."""
    decoded = decode_on_device(images, view.device)
    keep = np.array([not isinstance(d, BadImageError) for d in decoded])
    for item, result in zip(readable, decoded, strict=True):
        if isinstance(result, BadImageError):
            unreadable.append(Unreadable(item.image, result.path, result.reason))
    if keep.all():
        return decoded, readable, targets  # type: ignore[return-value]
    rows = torch.from_numpy(np.flatnonzero(keep))
    kept = [d for d in decoded if isinstance(d, DecodedImage)]
    targets = [t[rows] for t in targets] if isinstance(targets, list) else targets[rows]
    return kept, [i for i, k in zip(readable, keep, strict=True) if k], targets
