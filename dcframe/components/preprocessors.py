"""Feature preprocessing before clustering: PCA whitening and row-wise L2 normalisation."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from dcframe.components.builtin_params import PCAParams
from dcframe.core.clustering import float32_rows, import_faiss
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Preprocessor
from dcframe.core.params import Params


class PCAWhitening(Preprocessor):
    """PCA to dim components, each scaled by a power of its variance (whitening), guarded.

    The PCA is fitted from scratch by every :meth:`fit` on at most ``fit_sample`` rows
    (faiss ``PCAMatrix``, no further subsampling). :meth:`transform` centres a row,
    projects it on the top ``dim`` eigenvectors of the sample covariance, and multiplies
    component ``i`` by ``max(lambda_i, eps * lambda_max) ** whitening_power``, where the
    ``lambda`` are the eigenvalues of the sample covariance (scatter matrix divided by the
    number of fitted rows). With the default power -0.5 the fitted rows come out with
    identity covariance.

    The guard: faiss' own ``eigen_power`` divides by ``sqrt(lambda_i)`` directly, and low-rank
    features (fewer informative directions than ``dim``) have eigenvalues of zero, or
    tiny and even slightly negative through rounding, which yields inf or NaN. Here
    eigenvalues below ``eps * lambda_max`` are raised to that floor before the power, so a
    direction without variance is scaled by at most ``(eps * lambda_max) ** power`` instead
    of dividing by ~0 (with power -0.5, no component of the fitted rows then has more than
    unit variance). When all fitted rows are equal
    (``lambda_max == 0``) the components are left unscaled.

    Differences from faiss' ``PCAMatrix(d_in, dim, -0.5)`` besides the guard: faiss uses
    the eigenvalues of the unnormalised scatter matrix, which only changes every row by
    the same factor (undone by the L2 normalisation that follows in DeepCluster).
    """

    Params: ClassVar[type[Params]] = PCAParams
    params: PCAParams

    def __init__(self, params: PCAParams) -> None:
        super().__init__(params)
        self._pca: Any = None
        self._scale: np.ndarray | None = None

    def fit_sample_size(self, num_samples: int) -> int:
        return min(num_samples, self.params.fit_sample)

    def check_sizes(self, num_samples: int, input_dim: int) -> list[str]:
        dim, fit_sample = self.params.dim, self.params.fit_sample
        problems = []
        if dim > num_samples:
            problems.append(
                f"dim: {dim} is larger than the number of images ({num_samples}); PCA finds at "
                f"most one component per image: set dim <= {num_samples}"
            )
        elif dim > fit_sample:
            problems.append(
                f"dim: {dim} is larger than fit_sample ({fit_sample}), the number of images the "
                f"PCA is fitted on: set fit_sample >= {dim} or dim <= {fit_sample}"
            )
        if dim > input_dim:
            problems.append(
                f"dim: {dim} is larger than the width of its input features ({input_dim}); PCA "
                f"cannot add dimensions: set dim <= {input_dim}"
            )
        return problems

    def output_dim(self, input_dim: int) -> int:
        return self.params.dim

    def fit(self, x: np.ndarray) -> None:
        x = float32_rows(x)
        num_rows, input_dim = x.shape
        problems = self.check_sizes(num_rows, input_dim)
        if problems:
            raise UserError("; ".join(problems))
        faiss = import_faiss()
        # eigen_power 0: faiss only centres and rotates; the guarded scaling is applied below.
        pca = faiss.PCAMatrix(input_dim, self.params.dim, 0.0, False)
        # faiss subsamples above max_points_per_d * d_in rows; fit_sample already bounds the rows.
        pca.max_points_per_d = math.ceil(num_rows / input_dim)
        pca.train(x)
        scatter_eigenvalues = faiss.vector_to_array(pca.eigenvalues)[: self.params.dim]
        self._pca = pca
        self._scale = self._scaling(scatter_eigenvalues.astype(np.float64) / num_rows)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The fitted affine map (``matrix`` d_out x d_in and ``bias``, as faiss applies
        them) and the per-component ``scale``."""
        if self._pca is None or self._scale is None:
            raise RuntimeError("PCAWhitening has no state before fit")
        faiss = import_faiss()
        pca = self._pca
        matrix = faiss.vector_to_array(pca.A).reshape(pca.d_out, pca.d_in)
        return {"matrix": matrix, "bias": faiss.vector_to_array(pca.b), "scale": self._scale}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        matrix, bias = float32_rows(arrays["matrix"]), np.asarray(arrays["bias"], np.float32)
        scale = np.asarray(arrays["scale"], np.float32)
        d_out, d_in = matrix.shape
        if bias.shape != (d_out,) or scale.shape != (d_out,):
            raise ValueError(
                f"PCA state: bias {bias.shape} and scale {scale.shape} must be ({d_out},)"
            )
        faiss = import_faiss()
        # The same affine map faiss' PCAMatrix applies, so the results are bit-identical.
        projection = faiss.LinearTransform(d_in, d_out, True)
        faiss.copy_array_to_vector(matrix.ravel(), projection.A)
        faiss.copy_array_to_vector(np.ascontiguousarray(bias), projection.b)
        projection.is_trained = True
        self._pca, self._scale = projection, scale

    def __getstate__(self) -> dict[str, Any]:
        """Picklable state (a distributed run fits once and sends the fitted step to every
        process): the fitted projection as arrays instead of the faiss object."""
        fitted = self._pca is not None
        return {"params": self.params, "arrays": self.state_arrays() if fitted else None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.params, self._pca, self._scale = state["params"], None, None
        if state["arrays"] is not None:
            self.load_state_arrays(state["arrays"])

    def _scaling(self, eigenvalues: np.ndarray) -> np.ndarray:
        """Per-component factors ``max(lambda, eps * lambda_max) ** power`` (see the class doc)."""
        largest = float(eigenvalues.max())
        if largest <= 0.0:
            return np.ones_like(eigenvalues, dtype=np.float32)
        floored = np.maximum(eigenvalues, self.params.eps * largest)
        return (floored**self.params.whitening_power).astype(np.float32)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self._pca is None or self._scale is None:
            raise RuntimeError("PCAWhitening.transform called before fit")
        x = float32_rows(x)
        if x.shape[1] != self._pca.d_in:
            raise ValueError(
                f"PCAWhitening was fitted on {self._pca.d_in}-d rows, got {x.shape[1]}-d rows"
            )
        return self._pca.apply(x) * self._scale


class L2Normalize(Preprocessor):
    """Scale every row to unit Euclidean norm (rows of zeros stay zero)."""

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = float32_rows(x)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        # Dividing a zero row by its zero norm would give NaN; leave it at zero instead.
        return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
