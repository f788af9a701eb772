"""The built-in clusterers, one module each, and the torch k-means they can share.

- ``faiss-kmeans`` (:mod:`.faiss_kmeans`): the paper's tool; the CPU default.
- ``torch-kmeans`` (:mod:`.torch_kmeans`, algorithm in :mod:`.lloyd`): plain torch on the
  CPU or any GPU torch runs on; the GPU recipes' default.
- ``sklearn-kmeans`` (:mod:`.sklearn_kmeans`): scikit-learn, a CPU path without faiss.
"""

from dcframe.components.clusterers.faiss_kmeans import FaissKMeans
from dcframe.components.clusterers.sklearn_kmeans import SklearnKMeans
from dcframe.components.clusterers.torch_kmeans import TorchKMeans

__all__ = ["FaissKMeans", "SklearnKMeans", "TorchKMeans"]
