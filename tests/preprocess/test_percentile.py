"""Exact out-of-core percentiles equal np.percentile bit for bit."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from isonet_pl.preprocess import percentile as pct
from isonet_pl.preprocess.percentile import exact_percentile, exact_percentiles

QS = [0, 0.1, 4, 25, 33.3, 50, 70.5, 96, 99.9, 100]
SHAPE = (37, 50, 43)
CHUNKS = (16, 20, 17)


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "normal": rng.normal(size=SHAPE).astype(np.float32),
        "heavy_tailed": rng.standard_cauchy(size=SHAPE).astype(np.float32),
        "integers_with_ties": rng.integers(-3, 4, size=SHAPE),
        "float64": rng.lognormal(size=SHAPE),
        "constant": np.full(SHAPE, -2.5, dtype=np.float32),
    }


ARRAYS = _arrays()


def _assert_same(got, expected):
    """Equal value and dtype (what np.percentile returns for a float q)."""
    assert got == expected
    assert np.asarray(got).dtype == np.asarray(expected).dtype


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_exact_percentiles_equal_numpy(name):
    """Several q in shared passes, on ragged chunks, equal np.percentile."""
    x = ARRAYS[name]
    got = exact_percentiles(da.from_array(x, chunks=CHUNKS), QS)
    for q, value in zip(QS, got, strict=True):
        _assert_same(value, np.percentile(x, q))


def test_exact_percentile_single_q_and_numpy_input():
    """One q, on a numpy array or a single-chunk dask array."""
    x = ARRAYS["normal"]
    _assert_same(exact_percentile(x, 50.0), np.percentile(x, 50.0))
    _assert_same(exact_percentile(da.from_array(x), 96), np.percentile(x, 96))


@pytest.mark.parametrize("name", ["heavy_tailed", "integers_with_ties"])
def test_crowded_bins_are_refined(monkeypatch, name):
    """With a tiny gather limit, crowded bins are split again and ties resolved exactly."""
    monkeypatch.setattr(pct, "GATHER_LIMIT", 8)
    monkeypatch.setattr(pct, "N_BINS", 16)
    x = ARRAYS[name]
    got = exact_percentiles(da.from_array(x, chunks=CHUNKS), QS)
    for q, value in zip(QS, got, strict=True):
        _assert_same(value, np.percentile(x, q))


def test_tiny_arrays():
    """One and two elements."""
    one = np.array([3.0], dtype=np.float32)
    _assert_same(exact_percentile(one, 40), np.percentile(one, 40))
    x = np.array([5.0, -1.0], dtype=np.float32)
    for q in (0, 30, 50, 100):
        _assert_same(exact_percentile(da.from_array(x, chunks=1), q), np.percentile(x, q))


def test_nan_raises():
    """NaN makes the percentile undefined."""
    x = ARRAYS["normal"].copy()
    x[3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        exact_percentile(da.from_array(x, chunks=CHUNKS), 50)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_q_out_of_range_raises(q):
    """q must lie in [0, 100]."""
    with pytest.raises(ValueError):
        exact_percentile(ARRAYS["normal"], q)
