"""MRC <-> OME-Zarr conversion, lazy reading and the conversion cache."""

from __future__ import annotations

import os

import dask.array as da
import mrcfile
import numpy as np
import pytest
import zarr

from isonet_pl.io.mrc import read_mrc, write_mrc
from isonet_pl.io.zarr_store import (
    dask_to_mrc,
    ensure_zarr,
    mrc_to_zarr,
    open_tomogram,
    write_tomogram,
    zarr_to_mrc,
)


@pytest.mark.parametrize("dtype", ["float32", "int16", "int8"])
def test_mrc_zarr_mrc_is_bit_exact(tmp_path, rng, dtype):
    """MRC -> Zarr (ragged chunks) -> MRC gives the same voxel bytes, voxel size and origin."""
    data = (rng.normal(size=(37, 70, 53)) * 40).astype(dtype)
    src = write_mrc(tmp_path / "a.mrc", data, voxel_size=(8.0, 7.0, 6.0), origin=(10.0, 20.0, 30.0))
    store = mrc_to_zarr(src, tmp_path / "a.zarr", chunks=(16, 16, 16), levels=2)
    out = zarr_to_mrc(store.path, tmp_path / "b.mrc")
    back, info = read_mrc(out)
    assert back.dtype == data.dtype and np.array_equal(back, data)
    assert info.voxel_size == (8.0, 7.0, 6.0) and info.origin == (10.0, 20.0, 30.0)
    assert src.read_bytes()[1024:] == out.read_bytes()[1024:]
    assert mrcfile.validate(str(out))


def test_store_is_chunked_compressed_and_lazy(tmp_path, volume):
    """Level 0 has the requested chunks and zstd codec; dask reads it lazily, one task per chunk."""
    src = write_mrc(tmp_path / "a.mrc", volume)
    store = mrc_to_zarr(src, tmp_path / "a.zarr", chunks=(16, 32, 32), levels=1)
    arr = store.zarr_array(0)
    assert arr.chunks == (16, 32, 32)
    assert any("zstd" in type(c).__name__.lower() for c in arr.compressors)
    lazy = store.dask()
    assert isinstance(lazy, da.Array) and lazy.chunks[0] == (16, 16, 5)
    assert np.array_equal(lazy[3:30, 5:60, 7:50].compute(), volume[3:30, 5:60, 7:50])


def test_ngff_multiscale_metadata_and_pyramid(tmp_path, rng):
    """The store carries OME-NGFF multiscales; level 1 is the 2x2x2 mean of level 0."""
    data = rng.normal(size=(70, 68, 66)).astype(np.float32)
    src = write_mrc(tmp_path / "a.mrc", data, voxel_size=5.0, origin=(1.0, 2.0, 3.0))
    store = mrc_to_zarr(src, tmp_path / "a.zarr", chunks=(16, 16, 16), levels=3)
    attrs = zarr.open_group(store.path, mode="r").attrs.asdict()
    ms = attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1"]  # 35 -> 17 < 32 stops the pyramid
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [10.0, 10.0, 10.0]
    expected = data.reshape(35, 2, 34, 2, 33, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(store.dask(1).compute(), expected, rtol=1e-5, atol=1e-6)


def test_ensure_zarr_converts_once_and_again_when_the_source_changes(tmp_path, volume):
    """A second call reuses the store; a modified MRC is converted again."""
    src = write_mrc(tmp_path / "a.mrc", volume)
    first = ensure_zarr(src, tmp_path / "cache", chunks=(16, 16, 16), levels=1)
    stamp = (first.path / "zarr.json").stat().st_mtime_ns
    again = ensure_zarr(src, tmp_path / "cache", chunks=(16, 16, 16), levels=1)
    assert again.path == first.path and (again.path / "zarr.json").stat().st_mtime_ns == stamp
    write_mrc(src, volume + 1)
    os.utime(src, ns=(stamp + 10**9, stamp + 10**9))
    changed = ensure_zarr(src, tmp_path / "cache", chunks=(16, 16, 16), levels=1)
    assert np.array_equal(changed.dask().compute(), volume + 1)


def test_same_name_in_two_folders_gets_two_stores(tmp_path, volume):
    """Even and odd halves with the same file name do not share a cache entry."""
    (tmp_path / "even").mkdir()
    (tmp_path / "odd").mkdir()
    a = ensure_zarr(write_mrc(tmp_path / "even" / "t.mrc", volume), tmp_path / "cache", levels=1)
    b = ensure_zarr(write_mrc(tmp_path / "odd" / "t.mrc", volume * 2), tmp_path / "cache", levels=1)
    assert a.path != b.path


def test_write_tomogram_and_dask_to_mrc_stream_a_lazy_result(tmp_path, volume):
    """A lazy dask result is written to Zarr and MRC block by block, equal to the in-memory result."""
    lazy = da.from_array(volume, chunks=(10, 20, 53)) * 2 + 1
    store = write_tomogram(lazy, tmp_path / "r.zarr", voxel_size=(4.0, 4.0, 4.0), chunks=(16, 16, 16))
    assert store.voxel_size == (4.0, 4.0, 4.0)
    np.testing.assert_array_equal(store.dask().compute(), volume * 2 + 1)
    out = dask_to_mrc(lazy, tmp_path / "r.mrc", voxel_size=4.0)
    np.testing.assert_array_equal(read_mrc(out)[0], volume * 2 + 1)


def test_open_tomogram_rejects_other_folders(tmp_path):
    """A folder that is not one of our stores gives a clear error."""
    from isonet_pl.errors import InputError

    with pytest.raises(InputError, match="not an isonet-pl Zarr"):
        open_tomogram(tmp_path)


def test_cache_names_are_readable_and_unique(tmp_path):
    """Stores mirror the project's tree (x.mrc -> x.zarr, x.rec -> x.rec.zarr); files outside get a hashed name;
    the NGFF multiscale is named after its source file (folder and stem, so halves of one name are told apart),
    not the store's temporary name."""
    import zarr

    from isonet_pl.io.zarr_store import cached_zarr_path, ensure_zarr

    cache = tmp_path / "p" / "zarr"
    assert cached_zarr_path(tmp_path / "p" / "tomos" / "TS_01.mrc", cache) == cache / "tomos" / "TS_01.zarr"
    assert cached_zarr_path(tmp_path / "p" / "tomos" / "TS_01.rec", cache) == cache / "tomos" / "TS_01.rec.zarr"
    assert cached_zarr_path(tmp_path / "p" / "a" / "TS_01.mrc", cache) != \
        cached_zarr_path(tmp_path / "p" / "b" / "TS_01.mrc", cache)
    outside = [cached_zarr_path(tmp_path / d / "TS_01.mrc", cache) for d in ("x", "y")]
    assert outside[0] != outside[1] and all(p.parent == cache / "_outside" for p in outside)
    src = tmp_path / "p" / "tomos" / "TS_01.mrc"
    src.parent.mkdir(parents=True)
    write_mrc(src, np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32), voxel_size=5.0)
    store = ensure_zarr(src, cache, chunks=(16, 16, 16), levels=1)
    assert store.path == cache / "tomos" / "TS_01.zarr"
    assert zarr.open_group(store.path, mode="r").attrs["ome"]["multiscales"][0]["name"] == "tomos/TS_01"
