"""JPEG decoding on the run's device (``run.jpeg_decode = "device"``), for datasets too big
for the decoded-image cache.

Loader workers only read each file's bytes and look at its header (PIL reads the header
alone, which costs microseconds); the main process then decodes a whole batch in one
``torchvision.io.decode_jpeg(..., device=...)`` call: nvJPEG on a GPU, libjpeg-turbo on the
CPU (where the same code is tested). What the device decoder should not or cannot take
goes through PIL as usual, so the bad-image policy (``data.on_bad_image``) still sees every
unreadable file:

* in the worker: files that are not baseline RGB or gray JPEGs (PNG, CMYK, ...) and images
  over PIL's decompression-bomb limit are decoded with PIL there, as without this option;
* in the main process: if the batched call fails, each image is decoded alone, and an image
  the device rejects is decoded with PIL from its bytes; one PIL cannot read either is
  reported unreadable, with PIL's reason.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from dcframe.core.errors import BadImageError
from dcframe.core.interfaces import Dataset
from dcframe.data.batch_views import DecodedImage, DecodedPixels
from dcframe.data.images import open_rgb

# PIL modes of JPEGs the device decoder turns into RGB as PIL would.
DEVICE_MODES = ("RGB", "L")


@dataclass(frozen=True)
class EncodedImage:
    """A JPEG's bytes, to be decoded on the device; ``name`` for messages."""

    data: torch.Tensor
    width: int
    height: int
    name: str


class JpegBytes:
    """The loader side: image ``index`` as :class:`EncodedImage` when the device can decode
    it, else decoded here with PIL (a :class:`DecodedImage`, shrunk by ``fallback``)."""

    def __init__(self, fallback: DecodedPixels) -> None:
        self.fallback = fallback

    def read(self, dataset: Dataset, index: int) -> EncodedImage | DecodedImage:
        found = dataset.encoded(index)
        if found is None:
            return self.fallback(dataset.image(index))
        data, name = found
        try:
            with Image.open(io.BytesIO(data)) as header:
                fits = header.format == "JPEG" and header.mode in DEVICE_MODES
                size = header.size
        except Exception:  # PIL decodes it below and names the problem
            fits = False
        limit = Image.MAX_IMAGE_PIXELS
        if not fits or (limit is not None and size[0] * size[1] > limit):
            return self.fallback(open_rgb(io.BytesIO(data), name=name))
        pixels = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return EncodedImage(pixels, size[0], size[1], name)


def decode_on_device(
    images: Sequence[EncodedImage | DecodedImage], device: torch.device
) -> list[DecodedImage | BadImageError]:
    """``images`` decoded, the encoded ones on ``device`` in one batch; an image that no
    decoder can read comes back as the :class:`BadImageError` saying why."""
    out: list[DecodedImage | BadImageError] = list(images)  # type: ignore[arg-type]
    encoded = [i for i, image in enumerate(images) if isinstance(image, EncodedImage)]
    if not encoded:
        return out
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [images[i].data for i in encoded]  # type: ignore[union-attr]
    try:
        planes = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # one bad file fails the batch: find it one image at a time
        planes = [_decode_one(images[i], device) for i in encoded]  # type: ignore[arg-type]
    for i, plane in zip(encoded, planes, strict=True):
        source = images[i]
        assert isinstance(source, EncodedImage)
        out[i] = _with_pil(source) if plane is None else _as_decoded(plane, source)
    return out


def _decode_one(image: EncodedImage, device: torch.device) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(image.data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None


def _as_decoded(plane: torch.Tensor, source: EncodedImage) -> DecodedImage:
    """A (3, H, W) decoded plane as a :class:`DecodedImage` (sizes from the decoder)."""
    pixels = plane.permute(1, 2, 0)
    return DecodedImage(pixels, int(pixels.shape[1]), int(pixels.shape[0]))


def _with_pil(source: EncodedImage) -> DecodedImage | BadImageError:
    """What the device rejected, decoded with PIL in this process."""
    try:
        image = open_rgb(io.BytesIO(source.data.numpy().tobytes()), name=source.name)
    except BadImageError as error:
        return error
    return DecodedPixels(max(image.size))(image)
