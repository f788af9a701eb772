#!/usr/bin/env bash
# The CUDA paths in one short run, for a machine with a GPU (not part of the test suite):
# faiss-gpu k-means at ImageNet size, bf16 autocast, NCCL under torchrun with world size 1,
# and `dcframe bench` on the device. Prints figures to paste into a note.
#   bash scripts/gpu_check.sh /path/to/cifar10/test
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?give an image folder, e.g. CIFAR-10 test as JPEG class folders}

echo "== devices"
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))"
python -c "import faiss; print('faiss', faiss.__version__, 'gpus', faiss.get_num_gpus())"

echo "== faiss-gpu k-means, k = 10,000 on 1,281,167 x 256 random rows, 20 iterations"
python - <<'EOF'
import time

import numpy as np

from dcframe.components.builtin_params import FaissKMeansParams
from dcframe.components.clusterers import FaissKMeans

rows = np.random.default_rng(0).standard_normal((1_281_167, 256), dtype=np.float32)
start = time.perf_counter()
result = FaissKMeans(FaissKMeansParams(k=10_000)).cluster(rows, 31, "cuda")
print(f"{time.perf_counter() - start:.1f} s, objective {result.objective:.4g}")
EOF

echo "== NCCL, world size 1, bf16: two epochs of the CIFAR-10 recipe"
scratch=$(mktemp -d)
torchrun --standalone --nproc-per-node=1 -m dcframe run recipes/cifar10.toml \
  --set "data.root=\"$root\"" --set run.device=cuda --set run.amp=bf16 --set run.epochs=2 \
  --set "run.output_dir=\"$scratch\""
python -c "import json,sys; [print(json.loads(l)['seconds']) for l in open(sys.argv[1])]" \
  "$scratch/cifar10/metrics.jsonl"

echo "== dcframe bench on CUDA, the paper's AlexNet at 224 px with bf16"
dcframe bench recipes/deepcluster_alexnet.toml --set "data.root=\"$root\"" \
  --set run.device=cuda --set run.amp=bf16 --images 2000 --repeat 3
rm -rf "$scratch"
