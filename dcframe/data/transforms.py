"""The two image pipelines of DeepCluster, sized by the backbone's input size.

Sizes follow the paper at 224 (resize 256, crop 224) and scale proportionally for other
input sizes (32 -> resize 37, crop 32).
"""

from __future__ import annotations

import math
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


class TrainingView:
    """The augmented view used for training, drawn from a seed given with each image.

    ``RandomResizedCrop(input_size, scale=(crop_scale_min, 1), ratio=(3/4, 4/3))``, then an
    optional horizontal flip with probability 1/2, then ToTensor and Normalize: the paper's
    augmentation. The crop follows the usual sampling rule (up to ten tries of an area
    fraction and a log-uniform aspect ratio that fit inside the image, else the largest
    centred crop of an allowed aspect ratio), drawn from ``numpy.random.default_rng(seed)``
    rather than from torch's global generator: the same seed gives the same crop in any
    process or thread, and loading never disturbs the random state dropout draws from.
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

    def __call__(self, image: Any, seed: int) -> torch.Tensor:
        functional = _tv().functional
        rng = np.random.default_rng(seed)
        top, left, h, w = self.crop_box(image.width, image.height, rng)
        view = functional.resized_crop(
            image, top=top, left=left, height=h, width=w, size=[self.size, self.size]
        )
        if self.flip and rng.random() < 0.5:
            view = functional.hflip(view)
        if self.colour is not None:
            view = self.colour(view, rng)
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

    def __call__(self, image: Any, rng: np.random.Generator) -> Any:
        functional = _tv().functional
        if rng.random() < 0.8:
            low, high = max(0.0, 1 - self.spread), 1 + self.spread
            steps = [
                (functional.adjust_brightness, rng.uniform(low, high)),
                (functional.adjust_contrast, rng.uniform(low, high)),
                (functional.adjust_saturation, rng.uniform(low, high)),
                (functional.adjust_hue, rng.uniform(-self.hue, self.hue)),
            ]
            for i in rng.permutation(len(steps)):
                adjust, factor = steps[i]
                image = adjust(image, factor)
        if rng.random() < 0.2:
            image = functional.to_grayscale(image, num_output_channels=3)
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
