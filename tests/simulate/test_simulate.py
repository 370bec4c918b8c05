"""Tests of the phantom, the tilt-series projector/back-projector and the tomogram simulator."""

from __future__ import annotations

import numpy as np
import pytest

from isonet_pl.data.wedge import measured_region
from isonet_pl.evaluate import correlation, fourier_correlation
from isonet_pl.preprocess.ctf import ctf_1d
from isonet_pl.simulate import (
    angle_weights,
    backproject,
    detector_width,
    make_phantom,
    project,
    simulate_tomogram,
    tilt_angles,
)

SHAPE = (32, 48, 48)


def _radius(shape):
    """|k| in cycles/voxel on the unshifted fftn grid."""
    kz, ky, kx = (np.fft.fftfreq(n) for n in shape)
    return np.sqrt(kz[:, None, None] ** 2 + ky[None, :, None] ** 2 + kx[None, None, :] ** 2)


def _wedge_to_measured_power(vol, tilt_min=-60, tilt_max=60, band=0.25):
    """Fourier power inside the wedge over power in the measured region, |k| <= band, no DC."""
    power = np.abs(np.fft.fftn(vol)) ** 2
    power[0, 0, 0] = 0.0
    inside = _radius(vol.shape) <= band
    measured = np.broadcast_to(measured_region(vol.shape, tilt_min, tilt_max), vol.shape)
    return power[inside & ~measured].sum() / power[inside & measured].sum()


def _gaussian_balls(shape, n, sigma, seed):
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float64)
    lo = np.array([0.25 * s for s in shape])
    centres = rng.uniform(lo, np.array(shape) - lo, size=(n, 3))
    vol = sum(
        np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * sigma**2))
        for c in centres
    )
    return vol.astype(np.float32)


@pytest.fixture(scope="module")
def simulated():
    """A small noisy tomogram with even/odd halves."""
    return simulate_tomogram(SHAPE, halves=True, seed=3)


# --- phantom -------------------------------------------------------------------------------


def test_phantom_is_reproducible_with_a_seed():
    """The same seed gives the same phantom; another seed a different one."""
    a = make_phantom(SHAPE, 5)
    b = make_phantom(SHAPE, np.random.default_rng(5))
    c = make_phantom(SHAPE, 6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_phantom_shape_values_and_slab():
    """float32, non-negative, with content, and zero outside the centred slab."""
    nz = 40
    vol = make_phantom((nz, 64, 64), 0, slab_fraction=0.5)
    assert vol.shape == (nz, 64, 64) and vol.dtype == np.float32
    assert vol.min() >= 0 and vol.max() > 0.5
    half = 0.5 * 0.5 * nz
    z = np.arange(nz) - 0.5 * (nz - 1)
    outside = np.abs(z) >= half
    assert outside.any() and not vol[outside].any()
    assert (vol[~outside] > 0.1).mean() > 0.02


def test_phantom_object_counts_are_respected():
    """With every object count at zero the phantom is empty; each class alone adds density."""
    empty = make_phantom(SHAPE, 0, n_membranes=0, n_vesicles=0, n_filaments=0, n_blobs=0)
    assert not empty.any()
    for key in ("n_membranes", "n_vesicles", "n_filaments", "n_blobs"):
        counts = {"n_membranes": 0, "n_vesicles": 0, "n_filaments": 0, "n_blobs": 0, key: 2}
        assert make_phantom((48, 64, 64), 1, **counts).max() > 0.3, key


# --- projector and back-projector ----------------------------------------------------------


def test_membrane_tilt_moves_the_sheets_power_out_of_the_wedge():
    """Sheets tilted up to 60° (each sheet's angle 6 × the default's, the same draws) put less of their power
    in a ±60° missing wedge than the default nearly flat ones (≤ 10°); outside 0–60° is refused."""
    shape = (48, 96, 96)
    wedge = ~np.broadcast_to(measured_region(shape, -60.0, 60.0), shape)
    sheets_only = {"n_membranes": 4, "n_vesicles": 0, "n_filaments": 0, "n_blobs": 0}

    def wedge_share(tilt: float) -> float:
        shares = []
        for seed in range(4):
            volume = make_phantom(shape, seed, membrane_tilt=tilt, **sheets_only)
            power = np.abs(np.fft.fftn(volume - volume.mean())) ** 2
            shares.append(power[wedge].sum() / power.sum())
        return float(np.mean(shares))

    np.testing.assert_array_equal(make_phantom(SHAPE, 3), make_phantom(SHAPE, 3, membrane_tilt=10.0))
    flat, tilted = wedge_share(10.0), wedge_share(60.0)
    assert flat > 0.88 and tilted < flat - 0.1, (flat, tilted)
    with pytest.raises(ValueError, match="membrane_tilt"):
        make_phantom(SHAPE, 0, membrane_tilt=61.0)


def test_tilt_angles_and_weights():
    """-60..60 step 3 gives 41 angles; evenly spaced angles all get the step as weight."""
    angles = tilt_angles(-60, 60, 3)
    assert angles.size == 41 and angles[0] == -60 and angles[-1] == 60
    np.testing.assert_allclose(angle_weights(angles), np.deg2rad(3.0))


def test_projector_is_adjoint_of_backprojector():
    """<P v, p> = <v, B p> for the unfiltered, unweighted back-projector."""
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(12, 5, 17)).astype(np.float32)
    angles = [-61.0, -20.0, 0.0, 7.5, 45.0, 70.0]
    for n_detector in (None, 11):  # also with a detector too narrow for the volume
        proj = project(vol, angles, n_detector=n_detector)
        other = rng.normal(size=proj.shape).astype(np.float32)
        back = backproject(other, angles, vol.shape, filter=None)
        lhs = np.vdot(proj.astype(np.float64), other)
        rhs = np.vdot(vol.astype(np.float64), back)
        assert lhs == pytest.approx(rhs, rel=1e-5)


def test_projection_shape_and_mass():
    """Projections are (n_angles, ny, nu) and keep the volume's total mass at every angle."""
    vol = make_phantom(SHAPE, 0)
    angles = tilt_angles(-70, 70, 10)
    proj = project(vol, angles)
    assert proj.shape == (angles.size, SHAPE[1], detector_width(SHAPE, angles))
    assert proj.dtype == np.float32
    np.testing.assert_allclose(proj.sum(axis=(1, 2)), vol.sum(), rtol=1e-4)


def test_backprojection_follows_the_wedge_sign_convention():
    """A single projection at +30° fills the Fourier line atan2(-kz, kx) = +30°, not -30°."""
    rng = np.random.default_rng(1)
    shape = (64, 4, 64)
    proj = rng.normal(size=(1, 4, detector_width(shape, [30.0]))).astype(np.float32)
    back = backproject(proj, [30.0], shape, filter=None)
    power = np.abs(np.fft.fftn(back)) ** 2
    near = np.broadcast_to(measured_region(shape, 25, 35), shape)
    mirror = np.broadcast_to(measured_region(shape, -35, -25), shape)
    assert power[near].sum() > 10 * power[mirror].sum()
    assert power[near].sum() > 0.5 * power.sum()


def test_dense_tilt_wbp_reconstructs_smooth_phantom():
    """Ramp-filtered WBP over ±89° (1° steps) reproduces a smooth phantom (r > 0.95)."""
    vol = _gaussian_balls((32, 16, 48), n=6, sigma=2.5, seed=0)
    angles = tilt_angles(-89, 89, 1)
    rec = backproject(project(vol, angles), angles, vol.shape, filter="ramp")
    assert rec.shape == vol.shape and rec.dtype == np.float32
    assert correlation(rec, vol) > 0.95
    assert rec.std() == pytest.approx(vol.std(), rel=0.1)  # WBP is correctly scaled


def test_limited_tilt_wbp_leaves_the_wedge_empty():
    """With ±60° (3° steps) the in-wedge power of the reconstruction is small."""
    vol = make_phantom(SHAPE, 2)
    angles = tilt_angles(-60, 60, 3)
    rec = backproject(project(vol, angles), angles, vol.shape)
    assert _wedge_to_measured_power(rec) < 0.1
    assert _wedge_to_measured_power(rec) < 0.1 * _wedge_to_measured_power(vol)


# --- simulate_tomogram ---------------------------------------------------------------------


def test_simulation_outputs_shapes_and_dtypes(simulated):
    """All volumes are float32 (nz, ny, nx); angles are the 41 tilts; GT is -phantom."""
    for key in ("ground_truth", "tomogram", "even", "odd"):
        assert simulated[key].shape == SHAPE and simulated[key].dtype == np.float32, key
    np.testing.assert_array_equal(simulated["angles"], tilt_angles(-60, 60, 3).astype(np.float32))
    assert simulated["ground_truth"].max() <= 0 and simulated["ground_truth"].min() < -0.5
    assert simulated["noise_sigma"] > 0


def test_simulation_is_reproducible():
    """The same seed gives identical volumes; another seed differs."""
    a = simulate_tomogram(SHAPE, seed=11)
    b = simulate_tomogram(SHAPE, seed=11)
    c = simulate_tomogram(SHAPE, seed=12)
    np.testing.assert_array_equal(a["tomogram"], b["tomogram"])
    np.testing.assert_array_equal(a["ground_truth"], b["ground_truth"])
    assert not np.array_equal(a["tomogram"], c["tomogram"])


def test_tomogram_has_much_less_wedge_power_than_ground_truth(simulated):
    """Noise and signal of the tomogram both carry the missing wedge."""
    ratio_tomo = _wedge_to_measured_power(simulated["tomogram"])
    ratio_gt = _wedge_to_measured_power(simulated["ground_truth"])
    assert ratio_tomo < 0.2 * ratio_gt


def test_tomogram_contrast_is_dark_protein():
    """Noise-free, the tomogram correlates positively with the (negated) ground truth."""
    result = simulate_tomogram(SHAPE, snr=None, seed=4)
    assert correlation(result["tomogram"], result["ground_truth"]) > 0.4


def test_even_and_odd_have_independent_noise(simulated):
    """even - odd is pure noise (uncorrelated with GT) and tomogram = (even + odd) / 2."""
    even, odd, gt = simulated["even"], simulated["odd"], simulated["ground_truth"]
    assert abs(correlation(even - odd, gt)) < 0.05
    assert abs(correlation(even - odd, even + odd)) < 0.05
    assert correlation(even, gt) > 0.0 and correlation(odd, gt) > 0.0
    np.testing.assert_allclose(simulated["tomogram"], 0.5 * (even + odd), atol=1e-6)


def test_snr_sets_noise_level():
    """noise_sigma**2 equals the projection variance divided by snr."""
    vol = make_phantom(SHAPE, 7)
    result = simulate_tomogram(phantom=vol, snr=0.5, seed=7)
    angles = tilt_angles(-60, 60, 3)
    proj = project(vol, angles)
    first = (proj.shape[-1] - SHAPE[2]) // 2
    signal_var = proj[:, :, first : first + SHAPE[2]].var(dtype=np.float64)
    assert result["noise_sigma"] ** 2 == pytest.approx(signal_var / 0.5, rel=1e-4)
    quiet = simulate_tomogram(phantom=vol, snr=5.0, seed=7)
    assert correlation(quiet["tomogram"], -vol) > correlation(result["tomogram"], -vol)


def test_ctf_flips_contrast_where_ctf_is_negative():
    """With defocus, bands where CTF < 0 are inverted relative to the CTF-free tomogram."""
    pixel_size, defocus = 10.0, 60000.0
    plain = simulate_tomogram(SHAPE, snr=None, seed=3, pixel_size=pixel_size)["tomogram"]
    with_ctf = simulate_tomogram(
        SHAPE, snr=None, seed=3, pixel_size=pixel_size, defocus_angstrom=defocus
    )["tomogram"]
    k = _radius(SHAPE)
    ctf = ctf_1d(k / pixel_size, defocus)
    usable = k < 0.45
    assert fourier_correlation(plain, with_ctf, (ctf < -0.5) & usable) < -0.5
    assert fourier_correlation(plain, with_ctf, (ctf > 0.5) & usable) > 0.5


def test_simulate_command_settings_reach_the_phantom(tmp_path):
    """simulate --membranes 0 --slab_fraction 1: the same phantom without its sheets, filling all of z;
    --membranes 3 --membrane_tilt 45: the phantom with three sheets tilted up to 45°."""
    from isonet_pl.config import SimulateConfig
    from isonet_pl.io.mrc import read_mrc
    from isonet_pl.simulate.phantom import make_phantom
    from isonet_pl.workflows.simulate import simulate

    shape = (32, 64, 64)
    simulate(tmp_path / "a", SimulateConfig(shape=shape, membranes=0, slab_fraction=1.0, snr=2.0, seed=5))
    truth = read_mrc(tmp_path / "a" / "ground_truth" / "sim_00.mrc")[0]
    np.testing.assert_array_equal(truth, -make_phantom(shape, 5, slab_fraction=1.0, n_membranes=0))
    default = make_phantom(shape, 5)
    assert np.abs(truth[0]).max() > 0 and np.abs(default[0]).max() == 0  # the slab now reaches the faces
    simulate(tmp_path / "b", SimulateConfig(shape=shape, membranes=3, membrane_tilt=45.0, snr=2.0, seed=5))
    tilted = read_mrc(tmp_path / "b" / "ground_truth" / "sim_00.mrc")[0]
    np.testing.assert_array_equal(tilted, -make_phantom(shape, 5, n_membranes=3, membrane_tilt=45.0))
    assert not np.array_equal(tilted, -make_phantom(shape, 5, n_membranes=3))
