"""Images per second per core of each piece of the training data path, on ImageNet-sized
photograph-like JPEGs: the figures docs/performance.md projects a GPU epoch from.

The images are made as ``benchmarks/prepared_shards.py`` makes them (nothing downloaded),
400-500 px wide by default (ILSVRC-2012 averages about 400x350). Each piece runs on one
core (one thread, torch on one thread), over all the images, ``--rounds`` times in turns;
the table gives the median rate:

* ``PIL decode + TrainingView``: what a loader worker does per image with
  ``run.augment_on = "workers"`` (decode, RandomResizedCrop 224, flip, ToTensor, Normalize);
* ``PIL decode + clustering view``: what a worker does per image for the clustering pass
  (decode, resize 256, centre crop 224, ToTensor, Normalize), which stays on PIL;
* ``PIL decode + cap``: what a worker does with ``run.augment_on = "device"`` (decode, shrink
  to the cap, hand over uint8 pixels);
* ``bytes + header``: what a worker does with ``run.jpeg_decode = "device"``;
* ``decode_jpeg on the CPU``: torchvision's libjpeg-turbo decoder, the CPU side of the
  device decoding path (on a GPU, nvJPEG does this);
* ``batched view on the CPU``: the main process's share with ``run.augment_on = "device"``
  on a CPU run (crop boxes from seeds, one roi_align, flip, normalise), per image in
  batches of 256 (on a GPU the device does it).

    python benchmarks/data_path_per_core.py            # 400 images, 400-500 px
    python benchmarks/data_path_per_core.py --width 2000 4000 --images 100
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from prepared_shards import make_photographs
from torchvision.io import ImageReadMode, decode_jpeg

from dcframe.components.builtin_params import ImageFolderParams
from dcframe.components.datasets.folder import ImageFolder
from dcframe.data.batch_views import BatchTrainingView, DecodedPixels
from dcframe.data.device_decode import JpegBytes
from dcframe.data.transforms import TrainingView, clustering_transform, smallest_side_used

SIZE, SCALE_MIN, BATCH = 224, 0.08, 256


def pieces(data: ImageFolder) -> dict[str, Callable[[], int]]:
    """Each piece of the path as a function doing it to every image; returns the count."""
    n = len(data)
    view = TrainingView(SIZE, SCALE_MIN)
    clustering = clustering_transform(SIZE)
    cap = DecodedPixels(smallest_side_used(SIZE, SCALE_MIN))
    reader = JpegBytes(cap)
    raw = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p in data.paths]
    decoded = [cap(data.image(i)) for i in range(n)]
    batched = BatchTrainingView(view, torch.device("cpu"))

    def pil_view() -> int:
        return len([view(data.image(i), i) for i in range(n)])

    def pil_clustering() -> int:
        return len([clustering(data.image(i)) for i in range(n)])

    def pil_cap() -> int:
        return len([cap(data.image(i)) for i in range(n)])

    def header() -> int:
        return len([reader.read(data, i) for i in range(n)])

    def libjpeg() -> int:
        return len([decode_jpeg(r, mode=ImageReadMode.RGB) for r in raw])

    def batched_view() -> int:
        for s in range(0, n, BATCH):
            batched(decoded[s : s + BATCH], list(range(s, min(n, s + BATCH))))
        return n

    return {
        "PIL decode + TrainingView (workers path)": pil_view,
        "PIL decode + clustering view (clustering pass)": pil_clustering,
        "PIL decode + cap (batched path, worker side)": pil_cap,
        "bytes + header (device decoding, worker side)": header,
        "decode_jpeg on the CPU (libjpeg-turbo)": libjpeg,
        "batched view on the CPU (main side)": batched_view,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--width", type=int, nargs=2, default=(400, 500), metavar=("MIN", "MAX"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="dcframe-datapath-") as scratch:
        folder = Path(scratch) / "photos"
        make_photographs(folder, args.images, tuple(args.width), args.seed)
        data = ImageFolder(ImageFolderParams(root=str(folder)))
        data.decode_at_least(smallest_side_used(SIZE, SCALE_MIN))
        size = statistics.mean(len(Path(p).read_bytes()) for p in data.paths)
        wide = f"{args.width[0]}-{args.width[1]} px wide"
        print(f"{len(data)} JPEGs, {wide}, mean {size / 1e3:.0f} kB")
        timed = pieces(data)
        rates: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(args.rounds):
            for name, piece in timed.items():
                started = time.perf_counter()
                count = piece()
                rates[name].append(count / (time.perf_counter() - started))
    print("| piece (one core) | images/s |\n|---|---:|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
