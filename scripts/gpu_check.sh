#!/usr/bin/env bash
# The CUDA paths in one short run, for a machine with a GPU (not part of the test suite):
# `dcframe doctor` (its smoke test clusters on every device), torch-kmeans at ImageNet size
# on the GPU against faiss-kmeans when a faiss GPU build is installed, bf16 autocast, NCCL
# under torchrun with world size 1, `dcframe bench` on the device, and the data path with
# the batched view and nvJPEG (run.augment_on, run.jpeg_decode). Prints figures to
# paste into a note; about five minutes on one H100.
#   bash scripts/gpu_check.sh /path/to/cifar10/test
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?give an image folder, e.g. CIFAR-10 test as JPEG class folders}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "== dcframe doctor (exit 1 means it found a known-bad combination; the run goes on)"
dcframe doctor || true
dcframe doctor --json --no-smoke > "$scratch/doctor.json" || true

echo "== k-means on the GPU, k = 10,000 on 1,281,167 x 256 unit rows, 20 iterations"
python - <<'EOF'
import time

import numpy as np
import torch

from dcframe.components.builtin_params import FaissKMeansParams, TorchKMeansParams
from dcframe.components.clusterers import FaissKMeans, TorchKMeans

rows = np.random.default_rng(0).standard_normal((1_281_167, 256), dtype=np.float32)
rows /= np.linalg.norm(rows, axis=1, keepdims=True)
runs = {"torch-kmeans": TorchKMeans(TorchKMeansParams(k=10_000))}
if "cuda" in FaissKMeans.available_devices():
    runs["faiss-kmeans"] = FaissKMeans(FaissKMeansParams(k=10_000))
else:
    print("faiss-kmeans: no faiss GPU build here (see docs/gpu.md); torch-kmeans only")
for name, clusterer in runs.items():
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = clusterer.cluster(rows, 31, "cuda")
    seconds = time.perf_counter() - start
    print(f"{name}: {seconds:.1f} s, objective {result.objective:.6g}, "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
EOF

echo "== NCCL, world size 1, bf16: two epochs of the CIFAR-10 recipe, torch-kmeans on the GPU"
torchrun --standalone --nproc-per-node=1 -m dcframe run recipes/cifar10.toml \
  --set "data.root=\"$root\"" --set run.device=cuda --set run.amp=bf16 --set run.epochs=2 \
  --set clusterer.name=torch-kmeans --set "run.output_dir=\"$scratch\""
python -c "import json,sys; [print(json.loads(l)['seconds']) for l in open(sys.argv[1])]" \
  "$scratch/cifar10/metrics.jsonl"

echo "== dcframe bench on CUDA, the paper's AlexNet at 224 px with bf16 (torch-kmeans)"
dcframe bench recipes/deepcluster_alexnet.toml --set "data.root=\"$root\"" \
  --set run.device=cuda --set run.amp=bf16 --images 2000 --repeat 3

echo "== the data path on CUDA: batched view, then JPEGs decoded with nvJPEG (issue 23)"
dcframe bench recipes/deepcluster_alexnet.toml --set "data.root=\"$root\"" \
  --set run.device=cuda --set run.amp=bf16 --set run.augment_on=device \
  --set run.jpeg_decode=device --images 2000 --repeat 3
python - "$root" <<'EOF'
import sys, time
from pathlib import Path

import torch

from dcframe.data.batch_views import BatchTrainingView
from dcframe.data.device_decode import EncodedImage, decode_on_device
from dcframe.data.transforms import TrainingView

files = sorted(Path(sys.argv[1]).rglob("*.jpg"))[:2048]
encoded = [
    EncodedImage(torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8), 0, 0, str(f))
    for f in files
]
view = BatchTrainingView(TrainingView(224), torch.device("cuda"))
for _ in range(2):  # the first round warms nvJPEG and the kernels up
    torch.cuda.synchronize()
    start = time.perf_counter()
    for s in range(0, len(encoded), 256):
        decoded = decode_on_device(encoded[s : s + 256], torch.device("cuda"))
        view(decoded, list(range(s, s + len(decoded))))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
print(f"nvJPEG decode + batched view at 224 px: {len(encoded) / seconds:,.0f} images/s")
EOF
