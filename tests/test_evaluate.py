"""Tests of the real-space and Fourier-space quality measures."""

from __future__ import annotations

import numpy as np
import pytest

from isonet_pl.data.wedge import apply_wedge, measured_region
from isonet_pl.evaluate import (
    correlation,
    fourier_correlation,
    shell_correlations,
    wedge_correlations,
    z_profile_correlation,
)


def _smooth_random(shape, seed, sigma=2.0):
    """Gaussian-filtered white noise: a volume with power at all orientations."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=shape)
    k2 = sum(
        np.fft.fftfreq(n).reshape([-1 if i == ax else 1 for i in range(3)]) ** 2
        for ax, n in enumerate(shape)
    )
    return np.real(np.fft.ifftn(np.fft.fftn(noise) * np.exp(-2 * np.pi**2 * sigma**2 * k2)))


def test_identical_volumes_correlate_perfectly():
    """All three measures are 1 for identical volumes."""
    vol = _smooth_random((24, 20, 28), 0)
    scores = wedge_correlations(vol, vol, -60, 60)
    assert scores == pytest.approx({"overall": 1.0, "in_wedge": 1.0, "measured": 1.0})
    assert correlation(vol, 3 * vol + 1) == pytest.approx(1.0)


def test_independent_noise_correlates_near_zero():
    """Independent noise volumes give correlations near 0."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(32, 32, 32))
    b = rng.normal(size=(32, 32, 32))
    scores = wedge_correlations(a, b, -60, 60)
    for value in scores.values():
        assert abs(value) < 0.05


def test_wedge_filtered_ground_truth_has_no_wedge_information():
    """GT vs its wedge-filtered copy: in_wedge ≈ 0, measured ≈ 1."""
    gt = _smooth_random((32, 24, 32), 2).astype(np.float32)
    filtered = apply_wedge(gt, measured_region(gt.shape, -50, 65))
    scores = wedge_correlations(filtered, gt, -50, 65)
    assert abs(scores["in_wedge"]) < 1e-3
    assert scores["measured"] == pytest.approx(1.0, abs=1e-5)
    assert 0.3 < scores["overall"] < 0.95


def test_fourier_correlation_with_unit_weight_equals_pearson():
    """Over the whole spectrum (minus DC) the Fourier correlation is the Pearson correlation."""
    a = _smooth_random((16, 12, 15), 3)
    b = a + _smooth_random((16, 12, 15), 4)
    ones = np.ones((16, 12, 15))
    assert fourier_correlation(a, b, ones) == pytest.approx(correlation(a, b), abs=1e-10)
    half = np.ones((16, 12, 8))
    assert fourier_correlation(a, b, half) == pytest.approx(correlation(a, b), abs=1e-10)


def test_correlation_region_and_sign():
    """A region restricts the voxels used; negation flips the sign."""
    a = _smooth_random((8, 8, 8), 5)
    region = np.zeros((8, 8, 8), dtype=bool)
    region[2:6] = True
    b = np.where(region, -a, 0.0)
    assert correlation(a, b, region) == pytest.approx(-1.0)


def test_loss_figure_marks_noise_stages_and_has_round_ticks():
    """The loss figure marks where the noise level rises (the loss rises there by design) and uses round ticks."""
    import xml.etree.ElementTree as ET

    from isonet_pl.plot import loss_figure, nice_ticks

    assert nice_ticks(0.13, 0.97) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(1, 40, 8) == [0.0, 10.0, 20.0, 30.0, 40.0]
    svg = loss_figure([1.0, 0.8, 0.7, 0.9, 0.85, 0.8], [1.1, 0.9, 0.8, 1.0, 0.9, 0.9], 2, noise=[0.0, 0.0, 0.1])
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "noise 0.1" in texts and svg.count('stroke-dasharray="3,3"') == 2


def test_shell_contributions_add_up_to_the_overall_correlation():
    """The rows of shell_correlations split the real-space correlation exactly; each row's correlation is the
    Fourier correlation over its coefficients (computed independently with the full fftn and a mask)."""
    truth = _smooth_random((32, 28, 36), 3)
    rng = np.random.default_rng(4)
    measured = np.broadcast_to(measured_region(truth.shape, -45, 60), truth.shape)
    pred = np.real(np.fft.ifftn(np.fft.fftn(truth) * measured)) + 0.01 * rng.normal(size=truth.shape)
    rows = shell_correlations(pred, truth, -45, 60)
    assert sum(r["contribution"] for r in rows) == pytest.approx(correlation(pred, truth), abs=1e-10)
    assert sum(r["truth_power"] for r in rows) == pytest.approx(1.0)
    assert sum(r["pred_power"] for r in rows) == pytest.approx(1.0)
    k = np.sqrt(sum(np.fft.fftfreq(n).reshape([-1 if i == ax else 1 for i in range(3)]) ** 2
                    for ax, n in enumerate(truth.shape))) / 0.5
    fp, ft = np.fft.fftn(pred), np.fft.fftn(truth)
    for row in rows:
        sel = (k >= row["low"]) & (k < row["high"]) & (measured if row["region"] == "measured" else ~measured)
        sel[0, 0, 0] = False
        expected = (np.real(fp[sel] * ft[sel].conj()).sum()
                    / np.sqrt((abs(fp[sel]) ** 2).sum() * (abs(ft[sel]) ** 2).sum()))
        assert row["correlation"] == pytest.approx(expected, abs=1e-9)
    # the wedge was removed from the prediction: its wedge rows hold only noise, its measured ones the truth
    assert all(abs(r["correlation"]) < 0.2 for r in rows if r["region"] == "wedge" and r["low"] >= 0.1)
    assert all(r["correlation"] > 0.9 for r in rows if r["region"] == "measured" and r["high"] <= 0.3)


def test_shell_correlations_refuse_bad_edges():
    vol = _smooth_random((8, 8, 8), 0)
    with pytest.raises(ValueError, match="edges"):
        shell_correlations(vol, vol, edges=(0.2, 0.1))


def test_z_profile_correlation_is_that_of_the_slice_means_lazily_too():
    """The Z profiles' correlation equals numpy's on the means of the XY slices, for numpy and dask inputs; a
    constant profile gives 0; different Z sizes are refused."""
    import dask.array as da

    rng = np.random.default_rng(0)
    a = rng.standard_normal((24, 16, 20)) + np.linspace(-1, 1, 24)[:, None, None]
    b = rng.standard_normal((24, 16, 20)) + np.sin(np.linspace(0, 3, 24))[:, None, None]
    expected = np.corrcoef(a.mean(axis=(1, 2)), b.mean(axis=(1, 2)))[0, 1]
    assert z_profile_correlation(a, b) == pytest.approx(expected, abs=1e-12)
    lazy = z_profile_correlation(da.from_array(a.astype(np.float32), chunks=(8, 8, 8)), b)
    assert lazy == pytest.approx(expected, abs=1e-6)
    assert z_profile_correlation(a, np.ones_like(b)) == 0.0
    with pytest.raises(ValueError, match="Z sizes differ"):
        z_profile_correlation(a, b[:-1])
