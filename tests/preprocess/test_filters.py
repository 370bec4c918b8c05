"""Dask filters equal their scipy twins on the whole array, whatever the chunking."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import ndimage, signal

from isonet_pl.preprocess.filters import (
    bin2,
    gaussian_filter,
    local_std,
    maximum_filter,
    uniform_filter,
    upsample2,
)

SHAPE = (37, 50, 43)
# Ragged chunks, and chunks smaller than every halo used below.
CHUNKINGS = [(16, 20, 17), (5, 26, 6)]


@pytest.fixture(scope="module")
def vol():
    """A seeded float32 volume with odd and even sizes."""
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize(
    "sigma, mode", [(2.0, "reflect"), ((0.0, 1.5, 0.7), "mirror"), (1.0, "nearest")]
)
def test_gaussian_filter_equals_scipy(vol, chunks, sigma, mode):
    """gaussian_filter is bit-identical to scipy.ndimage.gaussian_filter."""
    result = gaussian_filter(da.from_array(vol, chunks=chunks), sigma, mode=mode).compute()
    assert_array_equal(result, ndimage.gaussian_filter(vol, sigma, mode=mode))


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("size", [9, (3, 5, 4)])
def test_maximum_filter_equals_scipy(vol, chunks, size):
    """maximum_filter is bit-identical to scipy.ndimage.maximum_filter."""
    result = maximum_filter(da.from_array(vol, chunks=chunks), size).compute()
    assert_array_equal(result, ndimage.maximum_filter(vol, size, mode="reflect"))


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_uniform_filter_equals_scipy(vol, chunks, mode):
    """uniform_filter agrees with scipy.ndimage.uniform_filter to float rounding."""
    result = uniform_filter(da.from_array(vol, chunks=chunks), 9, mode=mode, cval=0.5).compute()
    expected = ndimage.uniform_filter(vol, 9, mode=mode, cval=0.5)
    assert_allclose(result, expected, rtol=1e-6, atol=1e-7)


def test_wrap_mode_is_refused(vol):
    """A mode that needs the opposite face cannot run blockwise."""
    with pytest.raises(ValueError, match="wrap"):
        gaussian_filter(da.from_array(vol), 1.0, mode="wrap")


def _local_std_reference(x, size):
    """IsoNet's box statistics by direct float64 convolution with zero padding."""
    x = x.astype(np.float64)
    box = np.ones((size,) * 3)
    s1 = signal.convolve(x, box, mode="same", method="direct")
    s2 = signal.convolve(x * x, box, mode="same", method="direct")
    n = signal.convolve(np.ones_like(x), box, mode="same", method="direct")
    return np.sqrt(np.clip((s2 - s1 * s1 / n) / n, 0, None))


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_local_std_equals_direct_convolution(vol, chunks):
    """local_std matches the float64 convolution formula and is float32."""
    x = vol[:20, :24, :22] + 3.0  # an offset exercises the cancellation in S2 - S^2/n
    result = local_std(da.from_array(x, chunks=chunks), 9).compute()
    assert result.dtype == np.float32
    assert_allclose(result, _local_std_reference(x, 9), rtol=1e-6, atol=1e-6)


def test_local_std_does_not_depend_on_chunks(vol):
    """Chunked and unchunked local_std are bit-identical."""
    whole = local_std(da.from_array(vol), 9).compute()
    for chunks in CHUNKINGS:
        assert_array_equal(local_std(da.from_array(vol, chunks=chunks), 9).compute(), whole)


def test_local_std_of_constant_is_zero():
    """A constant volume has zero local std everywhere, borders included."""
    x = np.full((9, 10, 11), 7.25, dtype=np.float32)
    assert_array_equal(local_std(da.from_array(x, chunks=4), 5).compute(), 0)


def _bin2_reference(x):
    """skimage's resize(x, shape // 2, anti_aliasing=True), or its recipe in scipy."""
    out_shape = tuple(s // 2 for s in x.shape)
    try:
        from skimage.transform import resize
    except ImportError:
        factors = np.divide(x.shape, out_shape)
        smooth = ndimage.gaussian_filter(x, np.maximum(0, (factors - 1) / 2), mode="mirror")
        return ndimage.zoom(smooth, 1 / factors, order=1, mode="mirror", grid_mode=True)
    return resize(x, out_shape, anti_aliasing=True)


def test_bin2_even_is_gaussian_then_pair_mean(vol):
    """For even sizes bin2 is a sigma-0.5 mirror Gaussian followed by the mean of voxel pairs."""
    x = vol[:36, :50, :42]
    smooth = ndimage.gaussian_filter(x, 0.5, mode="mirror").astype(np.float64)
    expected = smooth.reshape(18, 2, 25, 2, 21, 2).mean(axis=(1, 3, 5)).astype(np.float32)
    result = bin2(da.from_array(x, chunks=(7, 9, 11))).compute()
    assert result.dtype == np.float32
    assert_allclose(result, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(36, 50, 42), (37, 50, 43)])
def test_bin2_equals_skimage_resize(vol, shape):
    """bin2 equals skimage's anti-aliased resize (or scipy's zoom of the same recipe)."""
    x = vol[tuple(slice(0, s) for s in shape)]
    expected = _bin2_reference(x)
    for chunks in CHUNKINGS:
        result = bin2(da.from_array(x, chunks=chunks)).compute()
        assert result.shape == expected.shape
        assert_allclose(result, expected, rtol=1e-6, atol=1e-7)


def test_bin2_does_not_depend_on_chunks(vol):
    """Chunked and unchunked bin2 are bit-identical."""
    whole = bin2(da.from_array(vol)).compute()
    for chunks in CHUNKINGS:
        assert_array_equal(bin2(da.from_array(vol, chunks=chunks)).compute(), whole)


def test_upsample2_replicates_and_leaves_odd_edge_zero():
    """Each binned voxel fills a 2x2x2 block; the last slice of an odd axis stays 0."""
    small = np.arange(1, 1 + 3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    result = upsample2(da.from_array(small, chunks=2), (7, 8, 11)).compute()
    expected = np.zeros((7, 8, 11), dtype=np.uint8)
    expected[:6, :8, :10] = small.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert result.dtype == np.uint8
    assert_array_equal(result, expected)


def test_upsample2_rejects_wrong_shape():
    """The target shape must be twice the binned shape (plus at most one)."""
    with pytest.raises(ValueError):
        upsample2(da.zeros((3, 4, 5)), (8, 8, 10))
