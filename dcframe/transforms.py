"""The two image pipelines of DeepCluster, sized by the backbone's input size.

Sizes follow the paper at 224 (resize 256, crop 224) and scale proportionally for other
input sizes (32 -> resize 37, crop 32).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

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


def clustering_transform(input_size: int) -> Any:
    """Deterministic view used for feature extraction: resize, centre crop, normalise."""
    T = _tv()
    return T.Compose([T.Resize(resize_size(input_size)), T.CenterCrop(input_size), *_normalise()])


def training_transform(
    input_size: int, crop_scale_min: float = 0.08, horizontal_flip: bool = True
) -> Any:
    """Augmented view used for training: random resized crop, optional flip, normalise."""
    T = _tv()
    steps: list[object] = [T.RandomResizedCrop(input_size, scale=(crop_scale_min, 1.0))]
    if horizontal_flip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, *_normalise()])
