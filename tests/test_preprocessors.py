"""PCA whitening (faiss) against a numpy eigen-decomposition, and L2 normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from dcframe.components.preprocessors import L2Normalize, PCAParams, PCAWhitening
from dcframe.core.errors import UserError


def _anisotropic(num_rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """Gaussian rows with well-separated variances along random directions, off-centre."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scales = np.linspace(10.0, 0.5, dim)
    return (rng.standard_normal((num_rows, dim)) * scales @ rotation + 3.0).astype(np.float32)


def _numpy_pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: centred rows projected on the top eigenvectors, and their eigenvalues."""
    centred = x.astype(np.float64) - x.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(x))
    top = np.argsort(eigenvalues)[::-1][:dim]
    return centred @ eigenvectors[:, top], eigenvalues[top]


def _fitted(x: np.ndarray, **params: object) -> PCAWhitening:
    pca = PCAWhitening(PCAParams(**params))
    pca.fit(x)
    return pca


@pytest.mark.parametrize(("num_rows", "input_dim", "dim"), [(2000, 20, 5), (15, 20, 10)])
def test_whitening_matches_numpy_up_to_sign(num_rows: int, input_dim: int, dim: int) -> None:
    # The second case has fewer rows than input dims, which faiss fits through the Gram matrix.
    x = _anisotropic(num_rows, input_dim)
    y = _fitted(x, dim=dim).transform(x)
    projected, eigenvalues = _numpy_pca(x, dim)
    reference = projected / np.sqrt(eigenvalues)
    signs = np.sign(np.sum(y * reference, axis=0))
    assert y.dtype == np.float32 and y.shape == (num_rows, dim)
    np.testing.assert_allclose(y, reference * signs, atol=2e-3)


def test_whitened_rows_have_identity_covariance() -> None:
    x = _anisotropic(2000, 20)
    y = _fitted(x, dim=8).transform(x)
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(8), atol=1e-3)


def test_power_zero_is_plain_pca() -> None:
    x = _anisotropic(2000, 20)
    y = _fitted(x, dim=6, whitening_power=0.0).transform(x)
    _, eigenvalues = _numpy_pca(x, 6)
    np.testing.assert_allclose(np.var(y, axis=0), eigenvalues, rtol=1e-3)


@pytest.mark.parametrize("mixing", ["random", "zero-columns"])
def test_low_rank_input_stays_finite_and_bounded(mixing: str) -> None:
    # Rank 3 in 20 dims; with zero columns faiss reports eigenvalues of exactly 0, which an
    # unguarded power -0.5 turns into inf (and 0 * inf = NaN in the projection).
    rng = np.random.default_rng(1)
    if mixing == "random":
        basis = rng.standard_normal((3, 20))
    else:
        basis = np.hstack([np.eye(3), np.zeros((3, 17))])
    x = (rng.standard_normal((200, 3)) @ basis).astype(np.float32)
    y = _fitted(x, dim=10).transform(x)
    assert np.isfinite(y).all()
    variances = np.var(y, axis=0)
    # The 3 real directions are whitened; the 7 null ones are never blown up beyond them.
    np.testing.assert_allclose(variances[:3], 1.0, atol=1e-3)
    assert (variances[3:] <= 1.0 + 1e-3).all()


def test_constant_rows_give_zeros() -> None:
    x = np.full((50, 8), 2.5, dtype=np.float32)
    y = _fitted(x, dim=4).transform(x)
    np.testing.assert_array_equal(y, np.zeros((50, 4), dtype=np.float32))


def test_transform_accepts_other_rows_and_dtypes() -> None:
    x = _anisotropic(500, 12)
    pca = _fitted(x, dim=4)
    y = pca.transform(x[::2].astype(np.float64))
    assert y.dtype == np.float32 and y.shape == (250, 4)
    with pytest.raises(ValueError, match="12-d"):
        pca.transform(np.zeros((3, 11), dtype=np.float32))


def test_transform_before_fit_raises() -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        PCAWhitening(PCAParams(dim=2)).transform(np.zeros((3, 4), dtype=np.float32))


def test_sizes() -> None:
    pca = PCAWhitening(PCAParams(dim=256, fit_sample=1000))
    assert pca.output_dim(4096) == 256
    assert pca.fit_sample_size(300) == 300
    assert pca.fit_sample_size(5000) == 1000
    assert pca.check_sizes(5000, 4096) == []


def test_check_sizes_names_dim_and_the_limit() -> None:
    pca = PCAWhitening(PCAParams(dim=256))
    (too_few,) = pca.check_sizes(100, 4096)
    assert too_few.startswith("dim: 256") and "number of images (100)" in too_few
    assert "dim <= 100" in too_few
    (too_narrow,) = pca.check_sizes(5000, 64)
    assert too_narrow.startswith("dim: 256") and "(64)" in too_narrow and "dim <= 64" in too_narrow
    assert len(pca.check_sizes(100, 64)) == 2
    (small_sample,) = PCAWhitening(PCAParams(dim=256, fit_sample=200)).check_sizes(5000, 4096)
    assert "fit_sample (200)" in small_sample and "dim <= 200" in small_sample


def test_fit_refuses_too_few_rows() -> None:
    with pytest.raises(UserError, match="dim: 8"):
        PCAWhitening(PCAParams(dim=8)).fit(np.ones((5, 10), dtype=np.float32))


def test_l2_rows_have_unit_norm_and_zero_rows_stay_zero() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 1.0]])
    y = L2Normalize(L2Normalize.Params()).transform(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), [1.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(y[1], [0.0, 0.0])
    np.testing.assert_allclose(y[0], [0.6, 0.8], rtol=1e-6)
