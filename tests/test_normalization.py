"""The Normalization value: modes, sign convention, STAR columns, inverse, chunked statistics."""

import dask.array as da
import numpy as np
import pytest

from isonet_pl.normalization import STAT_COLUMNS, Normalization, rescale


def _volume():
    return np.random.default_rng(0).normal(3, 2, size=(20, 30, 40)).astype(np.float32)


def test_modes_and_sign():
    """Percentile mode maps P96(x)/P4(x) to 0/1 of −x (protein bright); z-score mode to mean 0, std 1."""
    x = _volume()
    p = Normalization.of_volume(x).apply(x)
    assert abs(np.percentile(p, 4)) < 1e-5 and abs(np.percentile(p, 96) - 1) < 1e-5
    assert np.corrcoef(p.ravel(), x.ravel())[0, 1] == pytest.approx(-1, abs=1e-6)
    z = Normalization.of_volume(x, percentile=False).apply(x)
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-5


def test_inverse_and_columns():
    x = _volume()
    norm = Normalization.of_volume(x)
    np.testing.assert_allclose(norm.invert(norm.apply(x)), x, atol=1e-5)
    row = norm.columns()
    assert tuple(row) == STAT_COLUMNS
    assert Normalization.from_row(row) == norm
    assert Normalization.from_row(row, percentile=False) == norm.with_mode(False)
    assert Normalization.from_row({"rlnImageName": "a.mrc"}) is None
    np.testing.assert_array_equal(Normalization.unit().apply(x), -x)


def test_chunked_statistics_equal_in_memory():
    """Exact percentiles and moments of a dask array equal numpy's on the whole array (the streamed percentiles
    are the float32 values of the data type, numpy's float64)."""
    x = _volume()
    lazy = Normalization.of_volume(da.from_array(x, chunks=7))
    mem = Normalization.of_volume(x)
    assert lazy.p4 == np.float32(mem.p4) and lazy.p96 == np.float32(mem.p96)
    assert lazy.mean == pytest.approx(mem.mean, rel=1e-12) and lazy.std == pytest.approx(mem.std, rel=1e-9)


def test_rescale_is_the_per_cube_normalisation_of_network_values():
    y = _volume()
    r = rescale(y)
    assert abs(np.percentile(r, 4)) < 1e-5 and abs(np.percentile(r, 96) - 1) < 1e-5
    assert np.corrcoef(r.ravel(), y.ravel())[0, 1] == pytest.approx(1, abs=1e-6)


def test_percentile_mode_needs_percentiles():
    with pytest.raises(ValueError):
        Normalization(0.0, 1.0)


def test_statistics_of_a_store_are_computed_once_and_recorded(tmp_path, monkeypatch):
    """Normalization.of_store equals of_volume of the store's data (both modes), is recorded in the store,
    read back without another pass, and gone when the store is written anew."""
    from isonet_pl.io.zarr_store import write_tomogram

    x = _volume()
    store = write_tomogram(x, tmp_path / "t.zarr", voxel_size=(5.0,) * 3, chunks=(8, 8, 8))
    for percentile in (True, False):
        assert Normalization.of_store(store, percentile) == Normalization.of_volume(store.dask(), percentile)
    np.testing.assert_allclose(list(Normalization.of_store(store).columns().values()),
                               list(Normalization.of_volume(x).columns().values()), rtol=1e-6)

    def no_pass(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(Normalization, "of_volume", no_pass)
    assert Normalization.of_store(store) == Normalization.from_row(store.recorded("normalization", no_pass))
    store = write_tomogram(x + 1, tmp_path / "t.zarr", voxel_size=(5.0,) * 3, chunks=(8, 8, 8))
    monkeypatch.undo()
    assert Normalization.of_store(store) == Normalization.of_volume(store.dask())
    assert Normalization.of_store(store).mean == pytest.approx(x.mean() + 1, rel=1e-6)
