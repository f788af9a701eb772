"""The training view applied to a whole batch of uint8 tensors at once, on the run's device.

The per-image path (:class:`~dcframe.data.transforms.TrainingView`) crops, resizes, flips
and distorts each image with PIL inside a loader worker: on a few cores that work competes
with the network for the CPU, and on a GPU the cores cannot keep up with the device. Here
the workers only decode (or read bytes, see :mod:`dcframe.data.device_decode`), and the
main process applies the view to the batch where the network runs:

1. every image's random choices come from :meth:`TrainingView.draw` with the sample's own
   seed, exactly as in the per-image path: the same crop boxes and flips, whichever path,
   process or resumed epoch loads the image;
2. the images are padded into one tensor (each one's last row and column repeated, so that
   interpolation at an edge sees the edge, as PIL's does) and every crop box is resized to
   the input size by one batched call, ``torchvision.ops.roi_align`` with ``aligned=True``
   and an adaptive sampling grid: bilinear where a crop is enlarged, and the mean of
   several bilinear samples per output pixel where it is shrunk (the antialiasing PIL does
   with its wider filter);
3. flips, the colour distortion (each image's factors in each image's order) and grayscale
   are masked tensor operations over the batch; normalisation matches ToTensor + Normalize.

Pixels differ from PIL's within interpolation differences (tests/test_batch_views.py gives
the bound); what the network is shown is otherwise the same distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from dcframe.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainingView, ViewDraw

# ITU-R 601 luma, what PIL's "L" mode and torchvision's grayscale use.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class DecodedImage:
    """An image as a loader worker hands it over for the batched view.

    Attributes:
        pixels: (height, width, 3) uint8, possibly shrunk to a capped size.
        width: Width of the image as decoded (before any shrinking): crop boxes are drawn
            in these pixels, so a shrunk or cached copy gets the same crops.
        height: Height of the image as decoded.
    """

    pixels: torch.Tensor
    width: int
    height: int


def pad_batch(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, H + 1, W + 1, 3) uint8: each (h, w, 3) image top-left, its last row and column
    repeated to the right and bottom edges (H, W: the batch's largest sides)."""
    height = max(int(image.shape[0]) for image in images)
    width = max(int(image.shape[1]) for image in images)
    if all(image.shape[:2] == (height, width) for image in images):  # one size: no loop
        stacked = torch.stack(list(images))
        stacked = torch.cat([stacked, stacked[:, -1:]], dim=1)
        return torch.cat([stacked, stacked[:, :, -1:]], dim=2)
    out = torch.empty(
        (len(images), height + 1, width + 1, 3), dtype=torch.uint8, device=images[0].device
    )
    for b, image in enumerate(images):
        h, w = int(image.shape[0]), int(image.shape[1])
        out[b, :h, :w] = image
        out[b, h:, :w] = image[h - 1 : h]
        out[b, :, w:] = out[b, :, w - 1 : w]
    return out


class BatchTrainingView:
    """:class:`TrainingView`'s augmentation applied to batches of :class:`DecodedImage`.

    Args:
        view: The per-image view whose draws (and sizes, flip, jitter settings) to follow.
        device: Where the batch is augmented: the network's device.
    """

    def __init__(self, view: TrainingView, device: torch.device) -> None:
        self.view, self.device = view, device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, images: Sequence[DecodedImage], seeds: Sequence[int]) -> torch.Tensor:
        """The normalised (B, 3, size, size) float32 views of ``images``, on the device,
        each drawn from its seed."""
        return self.apply(images, self.draws(images, seeds))

    def draws(self, images: Sequence[DecodedImage], seeds: Sequence[int]) -> list[ViewDraw]:
        """Each image's random choices (host work, which a loading thread can do ahead)."""
        pairs = zip(images, seeds, strict=True)
        return [self.view.draw(image.width, image.height, int(seed)) for image, seed in pairs]

    def apply(self, images: Sequence[DecodedImage], draws: Sequence[ViewDraw]) -> torch.Tensor:
        """The views of ``images`` as ``draws`` say, computed on the device."""
        pixels = pad_batch([i.pixels.to(self.device, non_blocking=True) for i in images])
        x = self._resized_crops(pixels, images, draws) / 255.0
        flips = self._mask([d.flip for d in draws])
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
        if any(d.colour is not None for d in draws):
            x = _distort_colours(x, draws, self.device)
        grays = self._mask([d.gray for d in draws])
        if bool(grays.any()):
            x = torch.where(grays.view(-1, 1, 1, 1), _gray(x).expand_as(x), x)
        return (x - self.mean) / self.std

    def _mask(self, flags: list[bool]) -> torch.Tensor:
        return torch.tensor(flags, dtype=torch.bool, device=self.device)

    def _resized_crops(
        self, pixels: torch.Tensor, images: Sequence[DecodedImage], draws: Sequence[ViewDraw]
    ) -> torch.Tensor:
        from torchvision.ops import roi_align

        boxes = []
        for b, (image, draw) in enumerate(zip(images, draws, strict=True)):
            top, left, h, w = draw.box
            # boxes are drawn on the decoded image; a shrunk copy gets them scaled
            sx = int(image.pixels.shape[1]) / image.width
            sy = int(image.pixels.shape[0]) / image.height
            boxes.append((b, left * sx, top * sy, (left + w) * sx, (top + h) * sy))
        rois = torch.tensor(boxes, dtype=torch.float32, device=self.device)
        planes = pixels.permute(0, 3, 1, 2).float()
        size = self.view.size
        return roi_align(planes, rois, (size, size), 1.0, sampling_ratio=-1, aligned=True)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of (B, 3, H, W) RGB."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * x + (1 - factor) * other``, clamped to [0, 1]; ``factor`` per image."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), f)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x), f)


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each image by its ``shift`` (in turns), through HSV."""
    r, g, b = x.unbind(1)
    value, _ = x.max(1)
    spread = value - x.min(1).values
    safe = torch.where(spread > 0, spread, torch.ones_like(spread))
    hue = torch.where(
        value == r, (g - b) / safe, torch.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe)
    )
    # in sixths of a turn, rotated; a gray pixel (no spread) keeps no hue to rotate
    sixths = (hue + 6 * shift.view(-1, 1, 1)).remainder(6).unsqueeze(1)
    # back to RGB: channel n (5, 3, 1 for R, G, B) is value - spread * clamp(min(k, 4 - k), 0, 1)
    # with k = (n + sixths) mod 6, since value - spread is the smallest channel
    k = (sixths + _HSV_OFFSETS.to(x.device)).remainder(6)
    return value.unsqueeze(1) - spread.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)


_HSV_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)


_ADJUST = (_brightness, _contrast, _saturation, _hue)


def _distort_colours(
    x: torch.Tensor, draws: Sequence[ViewDraw], device: torch.device
) -> torch.Tensor:
    """Each image's colour distortion, its four steps in its own order: in round ``r`` every
    image takes its ``r``-th step, the images taking the same step together."""
    chosen = [d.colour for d in draws]
    applied = torch.tensor([c is not None for c in chosen], device=device)
    factors = torch.tensor(
        [c.factors if c is not None else (1.0, 1.0, 1.0, 0.0) for c in chosen], device=device
    )
    orders = torch.tensor(
        [c.order if c is not None else (0, 1, 2, 3) for c in chosen], device=device
    )
    for step in range(4):
        for kind, adjust in enumerate(_ADJUST):
            rows = (applied & (orders[:, step] == kind)).nonzero().flatten()
            if len(rows):
                x[rows] = adjust(x[rows], factors[rows, kind])
    return x


class DecodedPixels:
    """The loader side of the batched view: an image as a :class:`DecodedImage`, shrunk
    (PIL, antialiased) so that its shorter side is at most ``max_short_side`` pixels.

    With ``max_short_side`` from :func:`~dcframe.data.transforms.smallest_side_used`,
    shrinking loses nothing the views use, and the loader hands over fewer bytes.
    """

    def __init__(self, max_short_side: int) -> None:
        self.max_short_side = max_short_side

    def __call__(self, image: Image.Image, seed: int = -1) -> DecodedImage:
        width, height = image.size
        scale = self.max_short_side / min(width, height)
        if scale < 1:
            shrunk = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = image.resize(shrunk, Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        return DecodedImage(pixels, width, height)
