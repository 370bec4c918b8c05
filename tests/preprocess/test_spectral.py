"""Noise measured from the empty slices of a tomogram, and the Wiener filter it gives."""

import dask.array as da
import numpy as np
import pytest
from scipy import signal

from isonet_pl.data.wedge import measured_region
from isonet_pl.preprocess import spectral as sp

SHAPE = (96, 160, 160)
SLAB = (24, 72)
K0 = 0.05  # corner frequency of the signal spectrum, cycles/voxel


def _spectrum(k: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + (k / K0) ** 2) ** 2


def _gaussian_tomogram(noise_sigma: float, seed: int = 0, slab=SLAB):
    """Gaussian signal of known spectrum (variance 0.25) inside a Z slab, white noise everywhere."""
    rng = np.random.default_rng(seed)
    kz = np.fft.fftfreq(SHAPE[0])[:, None, None]
    ky = np.fft.fftfreq(SHAPE[1])[None, :, None]
    kx = np.fft.rfftfreq(SHAPE[2])[None, None, :]
    power = _spectrum(np.sqrt(kz * kz + ky * ky + kx * kx))
    field = np.fft.irfftn(np.fft.rfftn(rng.standard_normal(SHAPE)) * np.sqrt(power), s=SHAPE, axes=(0, 1, 2))
    scale = 0.5 / field.std()
    z = np.arange(SHAPE[0])[:, None, None]
    signal_ = field * scale * ((z >= slab[0]) & (z < slab[1]))
    noise = noise_sigma * rng.standard_normal(SHAPE)
    return signal_, (signal_ + noise).astype(np.float32), scale**2


@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_noise_and_weights_match_the_analytic_values(sigma):
    _, volume, s2 = _gaussian_tomogram(sigma)
    est = sp.estimate_spectra(volume)
    assert est.specimen[0] >= SLAB[0] - 2 and est.specimen[1] <= SLAB[1] + 2
    assert all(b <= SLAB[0] or a >= SLAB[1] for a, b in est.empty)
    assert est.noise_std == pytest.approx(sigma, rel=0.03)
    lazy = sp.estimate_spectra(da.from_array(volume, chunks=(30, 30, 30)))  # chunks that are no multiple of 4
    assert lazy.empty == est.empty and lazy.noise_std == pytest.approx(est.noise_std, rel=1e-6)
    # the specimen's variance: the signal's (0.25, less the part each box's mean removes) plus the noise's
    assert sigma**2 < est.specimen_std**2 < 0.25 + sigma**2
    assert est.empty_share == pytest.approx((est.noise_std / est.specimen_std) ** 2)
    assert sigma**2 / (0.25 + sigma**2) < est.empty_share < 1
    # PSD of the signal per voxel: s2 · S(k) (white noise of unit variance has PSD 1 per voxel)
    signal_psd = s2 * _spectrum(est.frequency)
    expected = signal_psd / (signal_psd + sigma**2)
    shells = est.frequency < 0.45
    assert np.max(np.abs(est.weights[shells] - expected[shells])) < 0.08


def test_filter_reaches_the_minimum_mean_square_error():
    """For Gaussian signal and noise the Wiener filter is the best estimate: its error is sum S·N/(S+N)."""
    signal_, volume, s2 = _gaussian_tomogram(0.5, seed=3)
    est = sp.estimate_spectra(volume)
    filtered = sp.apply_kernel(volume, sp.wiener_kernel(est)).compute()
    inside = slice(SLAB[0] + 4, SLAB[1] - 4)
    error = np.mean((filtered[inside] - signal_[inside]) ** 2)
    kz = np.fft.fftfreq(SHAPE[0])[:, None, None]
    ky = np.fft.fftfreq(SHAPE[1])[None, :, None]
    kx = np.fft.fftfreq(SHAPE[2])[None, None, :]
    psd = s2 * _spectrum(np.sqrt(kz * kz + ky * ky + kx * kx))
    minimum = np.mean(psd * 0.25 / (psd + 0.25))
    raw_error = np.mean((volume[inside] - signal_[inside]) ** 2)
    assert raw_error == pytest.approx(0.25, rel=0.05)
    assert error == pytest.approx(minimum, rel=0.1)
    assert error < 0.3 * raw_error


def test_measured_region_only():
    """With a tilt range, coefficients of the missing wedge (empty in a raw tomogram) are not counted."""
    _, volume, _ = _gaussian_tomogram(0.5)
    from isonet_pl.data.wedge import apply_wedge

    wedged = apply_wedge(volume, measured_region(volume.shape, -60, 60)).astype(np.float32)
    est = sp.estimate_spectra(wedged, tilt_range=(-60, 60))
    full = sp.estimate_spectra(volume)
    assert est.noise_std < full.noise_std  # the wedge's share of the noise is gone
    assert np.max(np.abs(est.weights[1:20] - full.weights[1:20])) < 0.1  # the same signal-to-noise per shell


def test_no_empty_slices_is_refused_when_they_are_asked_for():
    _, volume, _ = _gaussian_tomogram(0.5, slab=(0, SHAPE[0]))
    with pytest.raises(sp.NoEmptyRegion):
        sp.estimate_spectra(volume, source="empty")
    _, volume, _ = _gaussian_tomogram(0.5, slab=(3, SHAPE[0] - 3))  # a few empty slices only: too few
    with pytest.raises(sp.NoEmptyRegion, match="too few empty slices"):
        sp.estimate_spectra(volume, source="empty")
    noise_only = np.random.default_rng(0).standard_normal((32, 64, 64)).astype(np.float32)
    with pytest.raises(sp.NoEmptyRegion):
        sp.empty_slices(noise_only)


def test_both_sources_agree_where_both_exist():
    """White noise is a (flat) tilt-axis model too: with empty slices both estimates are made and agree (the
    tilt-axis one is 6 % high here: this specimen's power-law spectrum still holds a few % of the power at
    |k| >= 0.375, where the model is fitted)."""
    _, volume, _ = _gaussian_tomogram(0.5)
    est = sp.estimate_spectra(volume)
    assert est.source == sp.EMPTY_SLICES and est.other_std == pytest.approx(est.noise_std, rel=0.1)
    assert est.noise_std == pytest.approx(0.5, rel=0.03)
    axis = sp.estimate_spectra(volume, source="tilt_axis")
    assert axis.source == sp.TILT_AXIS and axis.other_std == pytest.approx(est.noise_std, rel=1e-6)
    assert axis.noise_std == pytest.approx(0.5, rel=0.1)
    assert "tilt-axis model gives" in est.describe() and "no empty slices used" in axis.describe()


WBP_SHAPE = (64, 192, 192)
TILT = (-50.0, 65.0)


def _wbp_like(seed: int, transfer=None, lowpass=None):
    """A volume without empty slices: a Gaussian specimen of falling spectrum filling every slice, plus noise of
    variance exactly 1 shaped as a weighted back-projection's (power ∝ |(kz, kx)|, flat along the tilt axis Y, or
    times ``transfer(|ky|)``), both confined to the measured region of ``TILT``; optionally everything low-passed
    by ``lowpass(|k|)``. Returns (volume, the noise alone)."""
    rng = np.random.default_rng(seed)
    kz = np.fft.fftfreq(WBP_SHAPE[0])[:, None, None]
    ky = np.fft.fftfreq(WBP_SHAPE[1])[None, :, None]
    kx = np.fft.rfftfreq(WBP_SHAPE[2])[None, None, :]
    k = np.sqrt(kz * kz + ky * ky + kx * kx)
    measured = measured_region(WBP_SHAPE, *TILT, rfft=True)

    def field(amplitude):
        spectrum = np.fft.rfftn(rng.standard_normal(WBP_SHAPE)) * amplitude * measured
        return np.fft.irfftn(spectrum, s=WBP_SHAPE, axes=(0, 1, 2))

    specimen = field(np.exp(-0.5 * (k / 0.12) ** 2))
    power = np.sqrt(kz * kz + kx * kx) * (1.0 if transfer is None else transfer(np.abs(ky)))
    noise = field(np.sqrt(power))
    noise /= noise.std()
    volume = 0.5 * specimen / specimen.std() + noise
    if lowpass is not None:
        volume, noise = (np.fft.irfftn(np.fft.rfftn(v) * lowpass(k), s=WBP_SHAPE, axes=(0, 1, 2))
                         for v in (volume, noise))
    return volume.astype(np.float32), noise


@pytest.mark.parametrize("transfer", [None, lambda q: np.cos(np.pi * q) ** 2], ids=["white along Y", "interpolated"])
@pytest.mark.parametrize("seed", [0, 1])
def test_tilt_axis_noise_without_empty_slices(seed, transfer):
    """Known noise power (variance 1), no empty slice: the tilt-axis model finds it within 4 % (std) and every shell
    of 0.05–0.45 cycles/voxel within 25 % of the noise's own spectrum, also when an interpolation along Y (a
    half-voxel linear shift: power cos²(π ky)) shaped it."""
    volume, noise = _wbp_like(seed, transfer)
    est = sp.estimate_spectra(volume, tilt_range=TILT)
    assert est.source == sp.TILT_AXIS and est.empty == () and est.misfit < sp.MAX_MISFIT
    assert est.noise_std == pytest.approx(1.0, rel=0.04)
    depth = est.specimen[1] - est.specimen[0]
    depth = min(depth, sp.MAX_DEPTH)
    region = [measured_region((depth, sp.BOX, sp.BOX), *TILT, rfft=True)]
    truth = sp.radial_psd(sp._boxes(noise, [est.specimen], depth, sp.MAX_BOXES, seed=1), region)[0][0]
    band = (est.frequency > 0.05) & (est.frequency < 0.45)
    assert np.all(np.abs(np.log(est.noise[band] / truth[band])) < np.log(1.25))
    # the Wiener weights follow: near 1 where the specimen dominates, near 0 where the noise does
    assert est.weights[1] > 0.9 and est.weights[-1] < 0.05
    # neighbouring Y planes: independent noise, or correlated 0.5 by the interpolation (∫cos²·cos(2π ky) / ∫cos²)
    assert est.plane_correlation == pytest.approx(0.0 if transfer is None else 0.5, abs=0.05)


def test_tilt_axis_model_refuses_noise_it_does_not_describe():
    """A tomogram low-passed in |k| (a filtered or processed one, not a back-projection's noise) fails the model's fit
    and, having no empty slices either, gets no estimate: the reason and the remedy are in the exception."""
    volume, _ = _wbp_like(0, lowpass=lambda k: 1.0 / (1.0 + (k / 0.25) ** 8))
    with pytest.raises(sp.NoNoiseEstimate, match="tilt-axis noise model does not fit") as info:
        sp.estimate_spectra(volume, tilt_range=TILT)
    assert "reconstruct the tomogram thicker" in info.value.fix


@pytest.mark.parametrize(("chunks", "shape"), [(16, (40, 70, 90)), (33, (40, 70, 90)), (128, (40, 70, 90)),
                                               (16, (6, 40, 50))])
def test_chunked_filter_equals_in_memory(chunks, shape):
    """Block by block (or in memory for an axis thinner than the kernel) equals the padded in-memory convolution."""
    rng = np.random.default_rng(1)
    volume = rng.standard_normal(shape).astype(np.float32)
    weights = np.clip(1 - np.arange(24) / 12, 0, 1)
    est = sp.SpectralEstimate((np.arange(24) + 0.5) / 48, np.ones(24), np.ones(24), weights, ((0, 1),), (0, 1), 1.0)
    kernel = sp.wiener_kernel(est)
    r = kernel.shape[0] // 2
    expected = signal.fftconvolve(np.pad(volume.astype(np.float64), r, mode="symmetric"), kernel, mode="valid")
    out = sp.apply_kernel(da.from_array(volume, chunks=chunks), kernel).compute()
    assert out.shape == volume.shape
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_kernel_response_follows_the_weights():
    weights = 1.0 / (1.0 + ((np.arange(24) + 0.5) / 48 / 0.15) ** 4)
    est = sp.SpectralEstimate((np.arange(24) + 0.5) / 48, np.ones(24), np.ones(24), weights, ((0, 1),), (0, 1), 1.0)
    kernel = sp.wiener_kernel(est)
    n = 64
    response = np.abs(np.fft.fftn(kernel, s=(n, n, n), axes=(0, 1, 2)))  # the kernel's centre: a phase only
    k = np.abs(np.fft.fftfreq(n))
    along_x = response[0, 0, : n // 2]
    np.testing.assert_allclose(along_x, np.interp(k[: n // 2], est.frequency, weights, left=1.0), atol=0.06)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)


def test_power_ratio_compares_the_high_frequencies():
    """Of a volume against itself 1; against a copy with its high frequencies halved in amplitude (k >= 0.25
    cycles/voxel) a quarter; low frequencies do not count."""
    volume, _ = _wbp_like(0)
    assert sp.power_ratio(volume, volume, TILT) == pytest.approx(1.0)
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*(np.fft.fftfreq(n) for n in WBP_SHAPE[:2]),
                                             np.fft.rfftfreq(WBP_SHAPE[2]), indexing="ij")))
    halved = np.fft.irfftn(np.fft.rfftn(volume) * np.where(k >= 0.25, 0.5, 2.0), s=WBP_SHAPE, axes=(0, 1, 2))
    assert sp.power_ratio(halved.astype(np.float32), volume, TILT) == pytest.approx(0.25, rel=0.1)
