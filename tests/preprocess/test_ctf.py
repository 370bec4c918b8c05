"""Tests of the CTF and IsoNet's Wiener-like deconvolution curve (SPEC §3)."""

from __future__ import annotations

import numpy as np
import pytest

from isonet_pl.preprocess.ctf import (
    apply_ctf,
    ctf_1d,
    ctf_2d,
    electron_wavelength,
    wiener_filter_1d,
)

# SPEC §3.4: a = 10 Å, Δf = 3 µm, snrfalloff 1, strength 1, hp 0.02, 300 kV, Cs 2.7 mm.
# (k, g, CTF, W); values are strings so that the tolerance follows the printed number of decimals.
REFERENCE_ROWS = [
    (10, "0.00489", "0.0701", "0.1847"),
    (41, "0.02003", "0.0719", "1.0846"),
    (100, "0.04885", "0.0810", "0.9201"),
    (400, "0.19541", "0.2445", "0.5925"),
    (800, "0.39082", "0.7017", "0.2353"),
    (1200, "0.58622", "0.9958", "0.0536"),
    (2047, "1.0", "-0.99995", "-0.00091"),
]


def _close_to_printed(value, printed):
    """True when value rounds to the printed decimal string."""
    decimals = len(printed.split(".")[1])
    return abs(value - float(printed)) <= 0.5 * 10.0**-decimals + 1e-12


def _ctf_on_isonet_grid(pixel_size, defocus, n=2048):
    k = np.arange(n)
    return ctf_1d(k / (2 * n * pixel_size), defocus)


def test_electron_wavelength_at_300kv():
    """The relativistic wavelength at 300 kV is 0.019687 Å."""
    assert electron_wavelength(300) == pytest.approx(0.019687, abs=1e-6)


def test_ctf_at_zero_frequency_is_amplitude_contrast():
    """CTF(0) equals the amplitude contrast 0.07."""
    assert ctf_1d(np.array([0.0]), 30000.0)[0] == pytest.approx(0.07, abs=1e-12)


@pytest.mark.parametrize(("k", "g_ref", "ctf_ref", "w_ref"), REFERENCE_ROWS)
def test_wiener_curve_matches_spec_table(k, g_ref, ctf_ref, w_ref):
    """g, CTF and W match SPEC §3.4 at the tabulated samples, to the printed digits."""
    g, w = wiener_filter_1d(10.0, 30000.0, snrfalloff=1.0, deconvstrength=1.0)
    ctf = _ctf_on_isonet_grid(10.0, 30000.0)
    assert g.shape == w.shape == (2048,)
    assert _close_to_printed(g[k], g_ref)
    assert _close_to_printed(ctf[k], ctf_ref)
    assert _close_to_printed(w[k], w_ref)


def test_wiener_curve_is_almost_zero_at_dc():
    """At g = 0 the SNR is 1e-6, so W ≈ 7e-8."""
    _, w = wiener_filter_1d(10.0, 30000.0, snrfalloff=1.0, deconvstrength=1.0)
    assert 0 < w[0] < 1e-7


def test_wiener_curve_second_spec_example():
    """SPEC §3.4 second example: a = 10.8, Δf = 3.8838 µm, snrfalloff 0.7."""
    _, w = wiener_filter_1d(10.8, 38838.0, snrfalloff=0.7, deconvstrength=1.0)
    assert w[400] == pytest.approx(1.0671, abs=5e-5)
    assert w[1200] == pytest.approx(0.3048, abs=5e-5)


def test_first_ctf_zero_near_k_1666():
    """The first sign change of the CTF (a = 10 Å, 3 µm) is at k ≈ 1666 (≈ 24.6 Å)."""
    ctf = _ctf_on_isonet_grid(10.0, 30000.0)
    first_zero = int(np.flatnonzero(np.diff(np.sign(ctf)) != 0)[0])
    assert abs(first_zero - 1666) <= 1
    assert 1.0 / (first_zero / (2 * 2048 * 10.0)) == pytest.approx(24.6, abs=0.1)


def test_ctf_2d_is_radial_and_matches_1d():
    """ctf_2d on the rfft grid equals ctf_1d of the radial frequency."""
    ny, nx, a = 32, 48, 10.0
    c2 = ctf_2d((ny, nx), a, 30000.0)
    assert c2.shape == (ny, nx // 2 + 1)
    s = np.hypot(np.fft.fftfreq(ny)[5], np.fft.rfftfreq(nx)[7]) / a
    assert c2[5, 7] == pytest.approx(ctf_1d(np.array(s), 30000.0))
    assert c2[0, 0] == pytest.approx(0.07)
    np.testing.assert_allclose(c2[1:, :], c2[:0:-1, :])  # symmetric under ky -> -ky


def test_apply_ctf_scales_mean_and_keeps_shape():
    """apply_ctf keeps the stack shape and multiplies the image mean by CTF(0)."""
    rng = np.random.default_rng(0)
    images = rng.normal(1.0, 0.1, size=(3, 16, 20)).astype(np.float32)
    out = apply_ctf(images, 10.0, 30000.0)
    assert out.shape == images.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.07 * images.mean(axis=(1, 2)), rtol=1e-4)
