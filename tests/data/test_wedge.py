"""Tests of the missing-wedge geometry and the Fourier-space wedge filters."""

from __future__ import annotations

import numpy as np
import pytest

from isonet_pl.data.wedge import apply_wedge, fill_wedge, isonet_wedge_mask, measured_region


def _negate(mask2d):
    """mask[-k] on an unshifted FFT grid."""
    return np.roll(np.flip(mask2d, axis=(0, 1)), 1, axis=(0, 1))


def _disk(nz, nx):
    kz = np.fft.fftfreq(nz)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    return kz**2 + kx**2 <= 0.25


@pytest.mark.parametrize("tilts", [(-60, 60), (-50, 65), (-45, 45), (-30, 70), (0, 90)])
@pytest.mark.parametrize("shape", [(32, 5, 32), (24, 1, 40), (33, 3, 31)])
def test_full_mask_is_symmetric_under_k_to_minus_k(shape, tilts):
    """The fftn-layout mask equals itself under k -> -k, also on Nyquist rows/columns."""
    mask = measured_region(shape, *tilts)[:, 0, :]
    np.testing.assert_array_equal(mask, _negate(mask))


def test_mask_shapes_and_rfft_layout():
    """fftn layout is (nz, 1, nx), rfftn layout is its first nx//2+1 columns."""
    full = measured_region((16, 20, 24), -60, 60)
    half = measured_region((16, 20, 24), -60, 60, rfft=True)
    assert full.shape == (16, 1, 24) and full.dtype == bool
    assert half.shape == (16, 1, 13)
    np.testing.assert_array_equal(half, full[..., :13])


@pytest.mark.parametrize("tilts", [(-60, 60), (-50, 65), (-40, 40), (-70, 70), (10, 40)])
def test_measured_fraction_matches_tilt_range(tilts):
    """Inside the Nyquist disk the measured fraction is (tilt_max - tilt_min)/180."""
    n = 512
    mask = measured_region((n, 1, n), *tilts)[:, 0, :]
    fraction = mask[_disk(n, n)].mean()
    assert fraction == pytest.approx((tilts[1] - tilts[0]) / 180.0, rel=0.01)


def test_axes_and_directions_for_plus_minus_60():
    """±60°: the kx axis and the ky line are measured, the kz axis is missing."""
    mask = measured_region((32, 1, 32), -60, 60)[:, 0, :]
    assert mask[0, :].all()  # kz = 0 row
    assert not mask[1:, 0].any()  # kx = 0 column except DC
    assert not mask[10, 5] and mask[6, 10]  # 26.6° from kz missing; 31° from kz measured


def test_sign_convention_of_asymmetric_range():
    """Direction atan2(-kz, kx) = +63.4° is measured for -50/+65 but not for -65/+50."""
    n = 64
    kz, kx = -16, 8  # atan2(16, 8) = 63.4°
    a = measured_region((n, 1, n), -50, 65)[:, 0, :]
    b = measured_region((n, 1, n), -65, 50)[:, 0, :]
    assert a[kz % n, kx % n] and not b[kz % n, kx % n]


def test_asymmetric_ranges_are_mirror_images():
    """-50/+65 differs from -65/+50, and they map onto each other under kx -> -kx."""
    n = 48
    a = measured_region((n, 1, n), -50, 65)[:, 0, :]
    b = measured_region((n, 1, n), -65, 50)[:, 0, :]
    assert (a != b).sum() > 0.05 * a.size
    mirrored = np.roll(np.flip(b, axis=1), 1, axis=1)
    np.testing.assert_array_equal(a, mirrored)


def test_full_range_measures_everything():
    """A range of 180° or more has no missing wedge."""
    assert measured_region((8, 1, 8), -90, 90).all()


def test_isonet_mask_agrees_with_general_mask_inside_disk():
    """For ±60° the general mask agrees with IsoNet 0.2's mask on > 99 % of the disk."""
    for n in (32, 64):
        iso = np.fft.ifftshift(isonet_wedge_mask(n)).astype(bool)
        mask = measured_region((n, n, n), -60, 60)[:, 0, :]
        disk = _disk(n, n)
        assert (iso == mask)[disk].mean() > 0.99


def test_isonet_mask_rules_match_spec_examples():
    """SPEC appendix: (kZ, kX) = (10, 5) removed, (10, 6) kept, corner (15, 15) removed."""
    n = 32
    m = isonet_wedge_mask(n)
    c = n // 2
    assert m[c + 10, c + 5] == 0 and m[c + 10, c + 6] == 1
    assert m[c + 15, c + 15] == 0
    assert m[c, :].all()  # kZ = 0 row kept, even beyond the disk
    assert m[c + 3, c] == 0  # kX = 0 column removed


def test_apply_wedge_is_idempotent_and_real():
    """Applying the wedge twice equals applying it once; the output is float32."""
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(24, 20, 28)).astype(np.float32)
    mask = measured_region(vol.shape, -50, 65)
    once = apply_wedge(vol, mask)
    twice = apply_wedge(once, mask)
    assert once.dtype == np.float32 and once.shape == vol.shape
    np.testing.assert_allclose(twice, once, atol=1e-5)


def test_apply_wedge_full_and_rfft_layouts_agree_with_complex_fft():
    """fftn-layout, rfftn-layout and Re(ifftn(fftn(x) M)) all give the same result."""
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(16, 8, 20)).astype(np.float32)
    full = measured_region(vol.shape, -60, 60)
    half = measured_region(vol.shape, -60, 60, rfft=True)
    reference = np.real(np.fft.ifftn(np.fft.fftn(vol) * full))
    np.testing.assert_allclose(apply_wedge(vol, full), reference, atol=1e-5)
    np.testing.assert_allclose(apply_wedge(vol, half), reference, atol=1e-5)


def test_apply_wedge_removes_wedge_power():
    """After filtering, the spectrum inside the wedge is zero."""
    rng = np.random.default_rng(2)
    vol = rng.normal(size=(32, 4, 32)).astype(np.float32)
    mask = measured_region(vol.shape, -60, 60)
    power = np.abs(np.fft.fftn(apply_wedge(vol, mask))) ** 2
    missing = np.broadcast_to(~mask, vol.shape)
    assert power[missing].max() < 1e-8 * power.max()


def test_wmeas_plus_wmiss_is_identity():
    """Wmeas(x) + Wmiss(x) = x, and fill_wedge(x, x) = x."""
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(2, 16, 12, 16)).astype(np.float32)  # with a batch axis
    mask = measured_region(vol.shape[-3:], -45, 60)
    total = apply_wedge(vol, mask) + apply_wedge(vol, ~mask)
    np.testing.assert_allclose(total, vol, atol=1e-5)
    np.testing.assert_allclose(fill_wedge(vol, vol, mask), vol, atol=1e-5)


def test_fill_wedge_takes_each_region_from_the_right_input():
    """fill_wedge = Wmeas(data) + Wmiss(estimate)."""
    rng = np.random.default_rng(4)
    data = rng.normal(size=(16, 8, 16)).astype(np.float32)
    estimate = rng.normal(size=(16, 8, 16)).astype(np.float32)
    mask = measured_region(data.shape, -60, 60)
    expected = apply_wedge(data, mask) + apply_wedge(estimate, ~mask)
    np.testing.assert_allclose(fill_wedge(data, estimate, mask), expected, atol=1e-5)


def test_bad_arguments_raise():
    """Reversed tilt range and mismatched mask shapes are rejected."""
    with pytest.raises(ValueError):
        measured_region((8, 8, 8), 60, -60)
    with pytest.raises(ValueError):
        apply_wedge(np.zeros((8, 8, 8), np.float32), np.ones((8, 1, 7), bool))
