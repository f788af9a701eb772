"""The two image pipelines of DeepCluster, sized by the backbone's input size.

Sizes follow the paper at 224 (resize 256, crop 224) and scale proportionally for other
input sizes (32 -> resize 37, crop 32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _tv() -> ModuleType:
    # torchvision takes seconds to import; commands that fail early should not pay for it.
    from torchvision import transforms

    return transforms


def _normalise() -> list[object]:
    T = _tv()
    return [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def resize_size(input_size: int) -> int:
    """Shorter side before the centre crop: 256 for 224, scaled alike for other sizes."""
    return round(input_size * 256 / 224)


def smallest_side_used(input_size: int, crop_scale_min: float) -> int:
    """The fewest pixels on an image's shorter side that lose nothing either view uses: the
    clustering view's resize, and the training view's smallest crop still covering the input
    size (a crop of area fraction ``crop_scale_min`` spans its square root of each side)."""
    return max(resize_size(input_size), math.ceil(input_size / math.sqrt(crop_scale_min)))


def clustering_transform(input_size: int) -> Any:
    """Deterministic view used for feature extraction: resize, centre crop, normalise."""
    T = _tv()
    return T.Compose([T.Resize(resize_size(input_size)), T.CenterCrop(input_size), *_normalise()])


@dataclass(frozen=True)
class ColourDraw:
    """One image's colour distortion: the ``factors`` of brightness, contrast, saturation
    (multipliers) and hue (a shift), applied in ``order`` (indices into ``factors``)."""

    factors: tuple[float, float, float, float]
    order: tuple[int, ...]


@dataclass(frozen=True)
class ViewDraw:
    """Every random choice of one image's training view.

    Attributes:
        box: (top, left, height, width) of the crop, in pixels of the image as decoded.
        flip: Mirror the crop left to right.
        colour: The colour distortion, or None (not drawn, or drawn to be skipped).
        gray: Turn the view to grayscale (after the colour distortion).
    """

    box: tuple[int, int, int, int]
    flip: bool = False
    colour: ColourDraw | None = None
    gray: bool = False


class TrainingView:
    """The augmented view used for training, drawn from a seed given with each image.

    ``RandomResizedCrop(input_size, scale=(crop_scale_min, 1), ratio=(3/4, 4/3))``, then an
    optional horizontal flip with probability 1/2, then ToTensor and Normalize: the paper's
    augmentation. The crop follows the usual sampling rule (up to ten tries of an area
    fraction and a log-uniform aspect ratio that fit inside the image, else the largest
    centred crop of an allowed aspect ratio), drawn from ``numpy.random.default_rng(seed)``
    rather than from torch's global generator: the same seed gives the same crop in any
    process or thread, and loading never disturbs the random state dropout draws from.

    :meth:`draw` makes every random choice; calling the view applies them with PIL, one
    image at a time. :class:`~dcframe.data.batch_views.BatchTrainingView` applies the same
    draws to a batch of tensors at once.
    """

    ratio = (3 / 4, 4 / 3)

    def __init__(
        self,
        input_size: int,
        crop_scale_min: float = 0.08,
        horizontal_flip: bool = True,
        color_jitter: float = 0.0,
    ) -> None:
        self.size = input_size
        self.scale = (crop_scale_min, 1.0)
        self.flip = horizontal_flip
        self.colour = ColourJitter(color_jitter) if color_jitter > 0 else None
        self.tail = _tv().Compose(_normalise())

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, ...]:
        """(top, left, height, width) of the crop, in pixels of a ``width`` x ``height`` image."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return (
                    int(rng.integers(0, height - h + 1)),
                    int(rng.integers(0, width - w + 1)),
                    h,
                    w,
                )
        aspect = width / height  # fallback: the whole image, cut to the nearest allowed ratio
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def draw(self, width: int, height: int, seed: int) -> ViewDraw:
        """The view's random choices for a ``width`` x ``height`` image, from ``seed`` alone
        (in this order: crop, flip, colour, grayscale; a disabled step draws nothing)."""
        rng = np.random.default_rng(seed)
        top, left, h, w = self.crop_box(width, height, rng)
        flip = bool(self.flip and rng.random() < 0.5)
        colour, gray = self.colour.draw(rng) if self.colour is not None else (None, False)
        return ViewDraw((top, left, h, w), flip, colour, gray)

    def __call__(self, image: Any, seed: int) -> torch.Tensor:
        functional = _tv().functional
        chosen = self.draw(image.width, image.height, seed)
        top, left, h, w = chosen.box
        view = functional.resized_crop(
            image, top=top, left=left, height=h, width=w, size=[self.size, self.size]
        )
        if chosen.flip:
            view = functional.hflip(view)
        if chosen.colour is not None:
            view = ColourJitter.apply(view, chosen.colour)
        if chosen.gray:
            view = functional.to_grayscale(view, num_output_channels=3)
        return self.tail(view)


class ColourJitter:
    """Colour distortion of strength ``s``, drawn from the image's own generator.

    With probability 0.8, brightness, contrast and saturation factors uniform in
    ``[1 - 0.8 s, 1 + 0.8 s]`` and a hue shift uniform in ``[-0.2 s, 0.2 s]``, applied in a
    random order; then grayscale with probability 0.2 (the colour distortion of SimCLR,
    Chen et al. 2020, whose CIFAR-10 setting is s = 0.5). Without Sobel, the network can
    otherwise tell many images' clusters apart by their colour histograms alone.
    """

    def __init__(self, strength: float) -> None:
        self.spread = 0.8 * strength
        self.hue = min(0.2 * strength, 0.5)

    def draw(self, rng: np.random.Generator) -> tuple[ColourDraw | None, bool]:
        """The distortion (None when skipped) and whether to turn the image gray."""
        colour = None
        if rng.random() < 0.8:
            low, high = max(0.0, 1 - self.spread), 1 + self.spread
            factors = (
                float(rng.uniform(low, high)),
                float(rng.uniform(low, high)),
                float(rng.uniform(low, high)),
                float(rng.uniform(-self.hue, self.hue)),
            )
            colour = ColourDraw(factors, tuple(int(i) for i in rng.permutation(4)))
        return colour, bool(rng.random() < 0.2)

    @staticmethod
    def apply(image: Any, colour: ColourDraw) -> Any:
        """``image`` (PIL) distorted as ``colour`` says."""
        functional = _tv().functional
        steps = (
            functional.adjust_brightness,
            functional.adjust_contrast,
            functional.adjust_saturation,
            functional.adjust_hue,
        )
        for i in colour.order:
            image = steps[i](image, colour.factors[i])
        return image


def clustering_view(input_size: int) -> Any:
    """The deterministic part of :func:`clustering_transform`: resize and centre crop (PIL)."""
    T = _tv()
    return T.Compose([T.Resize(resize_size(input_size)), T.CenterCrop(input_size)])


class PixelsOfClusteringView:
    """An image's clustering view as a uint8 (height, width, 3) tensor, the form in which it is
    cached; :func:`normalise_pixels` turns a batch of them into the network's input."""

    def __init__(self, input_size: int) -> None:
        self.view = clustering_view(input_size)

    def __call__(self, image: Any) -> torch.Tensor:
        return torch.from_numpy(np.array(self.view(image), dtype=np.uint8))


def normalise_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """A (B, H, W, 3) uint8 batch as the normalised (B, 3, H, W) float input, computed with the
    same operations, in the same order, as ToTensor then Normalize on each image (so the
    result is bit-identical to :func:`clustering_transform`)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return pixels.permute(0, 3, 1, 2).contiguous().float().div(255).sub_(mean).div_(std)
