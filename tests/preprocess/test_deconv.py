"""CTF deconvolution: IsoNet parity, and chunked (out-of-core) against whole-volume."""

from __future__ import annotations

import json

import numpy as np

from isonet_pl.preprocess.ctf import Microscope
from isonet_pl.preprocess.deconv import (
    DeconvParams,
    deconv_filter,
    deconvolve_chunked,
    deconvolve_volume,
    match_intensity,
    radial_frequency,
)


def rel_rms(a, b):
    """Relative RMS difference of a against the reference b."""
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


def parity_cases(reference):
    """(input, [(DeconvParams, IsoNet output), ...]) from isonet_parity.npz/json."""
    data = np.load(reference / "isonet_parity.npz")
    cfg = json.loads((reference / "isonet_parity.json").read_text())["deconv"]
    cases = []
    for i, p in enumerate(cfg):
        params = DeconvParams(pixel_size=p["angpix"], defocus=p["defocus"] * 1e4,
                              microscope=Microscope(p["voltage"], p["cs"], phase_shift_deg=p["phaseshift"]),
                              snrfalloff=p["snrfalloff"], deconvstrength=p["deconvstrength"],
                              highpassnyquist=p["highpassnyquist"])
        cases.append((params, data[f"deconv{i}"]))
    return data["input"], cases


def test_whole_volume_matches_isonet(reference):
    """Whole-volume deconvolution reproduces IsoNet 0.2's deconv0/deconv1 (relative RMS <= 1e-4)."""
    vol, cases = parity_cases(reference)
    for params, expected in cases:
        assert rel_rms(deconvolve_volume(vol, params), expected) <= 1e-4


def test_radial_frequency_is_isonets_grid():
    """The rfft-layout radial grid equals IsoNet's fftshifted full grid, cut to the rfft half."""
    shape = (6, 9, 8)
    axes = [np.arange(-(n // 2), n - n // 2) / max(1, n // 2) for n in shape]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    full = np.fft.ifftshift(np.minimum(np.sqrt(z**2 + y**2 + x**2), 1.0))
    np.testing.assert_allclose(radial_frequency(shape), full[:, :, : shape[2] // 2 + 1], atol=1e-6)


def test_filter_is_real_and_removes_dc():
    """The filter is real, ~0 at DC (the high-pass) and bounded."""
    f = deconv_filter((16, 16, 16), DeconvParams(pixel_size=10, defocus=30000))
    assert f.dtype == np.float32 and abs(f[0, 0, 0]) < 1e-6 and np.abs(f).max() < 3


def test_chunked_matches_whole_volume(reference):
    """Blocks of 64 with a 16-voxel halo (the default halo) stay within 1e-2 relative RMS of one FFT."""
    vol, cases = parity_cases(reference)
    for params, _ in cases:
        whole = deconvolve_volume(vol, params)
        plan = deconvolve_chunked(vol, params, chunk_size=64, overlap_rate=0.5)
        filtered = plan.filtered.compute()
        chunked = match_intensity(filtered, float(filtered.std(dtype=np.float64)), plan.mean, plan.std)
        assert rel_rms(chunked, whole) <= 1e-2


def test_zarr_source_equals_numpy_source(reference, tmp_path):
    """Reading blocks from a Zarr array (ragged chunks) gives the result of the in-memory array."""
    import zarr

    vol, cases = parity_cases(reference)
    z = zarr.create_array(tmp_path / "v.zarr", shape=vol.shape, chunks=(17, 33, 29), dtype=np.float32)
    z[:] = vol
    a = deconvolve_chunked(vol, cases[0][0], chunk_size=32).filtered.compute()
    b = deconvolve_chunked(z, cases[0][0], chunk_size=32).filtered.compute()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_read_periodic_wraps_like_numpy_take():
    """Reading a box that sticks out of the volume wraps around, as np.take(mode='wrap')."""
    from isonet_pl.preprocess.deconv import read_periodic

    vol = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    got = read_periodic(vol, (-2, 3, -9), (4, 10, 2))
    expected = vol.take(range(-2, 4), 0, mode="wrap").take(range(3, 10), 1, mode="wrap").take(range(-9, 2), 2,
                                                                                               mode="wrap")
    np.testing.assert_array_equal(got, expected)


def test_no_seams_at_block_borders():
    """Gradient energy on block borders is no higher than elsewhere (no visible seams)."""
    from isonet_pl.simulate import simulate_tomogram

    vol = simulate_tomogram((64, 128, 128), defocus_angstrom=30000, seed=2)["tomogram"]
    params = DeconvParams(pixel_size=10, defocus=30000)
    out = deconvolve_chunked(vol, params, chunk_size=32, overlap_rate=0.5).filtered
    grad = np.abs(np.diff(out.compute(), axis=2))  # differences between x and x+1
    border = grad[:, :, 31::32].mean()
    inside = np.delete(grad, np.s_[31::32], axis=2).mean()
    assert border < 1.1 * inside
