"""The sampling mask: parity with IsoNet 0.2, chunk invariance and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from isonet_pl.errors import InputError
from isonet_pl.preprocess.mask import make_mask

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
PARITY_CHUNKS = (20, 50, 37)  # ragged on every axis of (64, 128, 128)


@pytest.fixture(scope="module")
def parity():
    """IsoNet 0.2's input volume, masks and mask parameters."""
    npz = REFERENCE / "isonet_parity.npz"
    if not npz.exists():
        pytest.skip(f"parity data not found at {REFERENCE}")
    with np.load(npz) as data:
        arrays = {k: data[k] for k in ("input", "mask0", "mask1")}
    params = json.loads((REFERENCE / "isonet_parity.json").read_text())["mask"]
    return arrays, params


@pytest.fixture(scope="module")
def blobs():
    """A small seeded volume: dark blobs in noise, with odd sizes."""
    rng = np.random.default_rng(0)
    vol = rng.normal(scale=0.3, size=(23, 40, 35)).astype(np.float32)
    z, y, x = np.indices(vol.shape)
    for cz, cy, cx in rng.uniform((4, 5, 5), (19, 35, 30), size=(6, 3)):
        vol -= np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / 8.0).astype(np.float32)
    return vol


@pytest.mark.parametrize("index", [0, 1])
def test_mask_matches_isonet(parity, index):
    """Each reference parameter set reproduces IsoNet's mask on at least 99 % of voxels."""
    arrays, params = parity
    mask = make_mask(da.from_array(arrays["input"]), **params[index]).compute()
    expected = arrays[f"mask{index}"]
    assert mask.dtype == np.uint8 and mask.shape == expected.shape
    agreement = np.mean(mask == expected)
    assert agreement >= 0.99, f"agreement {agreement:.5f}"


@pytest.mark.parametrize("index, use_tmp", [(0, True), (1, False)])
def test_chunked_equals_unchunked(parity, tmp_path, index, use_tmp):
    """Ragged chunks (stored in Zarr or in memory) give exactly the single-chunk mask."""
    arrays, params = parity
    whole = make_mask(da.from_array(arrays["input"]), **params[index]).compute()
    chunked = make_mask(da.from_array(arrays["input"], chunks=PARITY_CHUNKS), **params[index],
                        tmp_dir=tmp_path if use_tmp else None)
    assert chunked.chunks == da.from_array(arrays["input"], chunks=PARITY_CHUNKS).chunks
    assert_array_equal(chunked.compute(), whole)


def test_odd_shape_leaves_last_slices_empty(blobs):
    """Odd sizes: the mask keeps the tomogram's shape and its last odd slices stay 0."""
    mask = make_mask(da.from_array(blobs, chunks=(8, 16, 12)), patch_size=2).compute()
    assert mask.shape == blobs.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    assert not mask[-1].any() and not mask[:, :, -1].any()
    assert mask[:, -1].any()  # 40 is even: no empty slice along y


def test_disabled_criteria_keep_everything(blobs):
    """Percentages above 99.8 disable both criteria: all binned voxels are kept."""
    mask = make_mask(blobs, patch_size=2, density_percentage=100, std_percentage=99.9).compute()
    assert mask[:22, :, :34].all()


def test_z_crop_and_boundary_restrict_the_mask(blobs, tmp_path):
    """z_crop zeroes binned slices at both ends; a boundary file limits the XY region."""
    base = make_mask(blobs, patch_size=2, density_percentage=100, std_percentage=100,
                     z_crop=0.2).compute()
    # binned nZ = 11: slices [0, 2) and [8, 11) zeroed -> full-resolution z 4..15 kept.
    assert_array_equal(np.nonzero(base.any(axis=(1, 2)))[0], np.arange(4, 16))
    points = tmp_path / "boundary.txt"
    points.write_text("5 5 0\n25 5 0\n25 25 0\n5 25 0\n")  # binned square 2.5..12.5 in x and y
    inside = make_mask(blobs, patch_size=2, density_percentage=100, std_percentage=100,
                       boundary_points=points).compute()
    ys, xs = np.nonzero(inside.any(axis=0))
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (6, 25, 6, 25)


def test_constant_tomogram_raises():
    """A constant tomogram has no contrast: InputError, not an empty or full mask."""
    with pytest.raises(InputError, match="std is zero"):
        make_mask(da.full((16, 20, 18), 3.0, dtype=np.float32, chunks=8))


def test_empty_mask_raises(blobs):
    """Keeping 0 % of the voxels leaves nothing: the error says which settings to change."""
    with pytest.raises(InputError, match="density_percentage"):
        make_mask(blobs, patch_size=2, density_percentage=0)
    with pytest.raises(InputError, match="empty"):
        make_mask(blobs, patch_size=2, z_crop=0.6)


@pytest.mark.parametrize(
    "kwargs", [{"patch_size": 0}, {"patch_size": 2.5}, {"density_percentage": -1}, {"z_crop": -0.1}]
)
def test_bad_parameters_raise(blobs, kwargs):
    """Invalid settings are InputErrors."""
    with pytest.raises(InputError):
        make_mask(blobs, **kwargs)


def test_non_3d_input_raises():
    """Only volumes can be masked."""
    with pytest.raises(InputError, match="3-D"):
        make_mask(np.zeros((10, 10), dtype=np.float32))
