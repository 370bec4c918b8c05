"""Quality measures for missing-wedge correction against a known ground truth.

All functions take real volumes in ZYX order (tilt axis Y) and are pure numpy. Fourier-space
measures use the unshifted ``numpy.fft`` layouts of :mod:`isonet_pl.data.wedge`; frequencies are
in cycles/voxel, Nyquist = 0.5.
"""

from __future__ import annotations

import logging

import numpy as np

from isonet_pl.data.wedge import _rfft_weight, measured_region

logger = logging.getLogger(__name__)

__all__ = ["correlation", "fourier_correlation", "wedge_correlations"]

# Relative power below which a region counts as empty (float32 FFT rounding is ~1e-14).
_NEGLIGIBLE = 1e-10


def correlation(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Pearson correlation of two volumes in real space.

    Parameters
    ----------
    a, b : ndarray, shape (nz, ny, nx)
        Volumes of the same shape (any shape works).
    region : ndarray of bool, optional
        Voxels to use, broadcastable to ``a.shape``; default all.

    Returns
    -------
    float
        Correlation in [−1, 1]; 0 when either input is constant over the region.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if region is not None:
        sel = np.broadcast_to(np.asarray(region, dtype=bool), a.shape)
        a, b = a[sel], b[sel]
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denom) if denom > 0 else 0.0


def _rfft_multiplicity(shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """How often each rfftn coefficient occurs in the full spectrum: shape (1, 1, nx//2+1)."""
    nx = shape_zyx[-1]
    mult = np.full(nx // 2 + 1, 2.0, dtype=np.float64)
    mult[0] = 1.0
    if nx % 2 == 0:
        mult[-1] = 1.0
    return mult[None, None, :]


def fourier_correlation(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> float:
    """Correlation of Fourier coefficients inside a region, DC excluded.

    ``Re Σ w·A·conj(B) / sqrt(Σ w·|A|² · Σ w·|B|²)`` over the full spectrum (computed on the
    rfft half with the proper multiplicities). With ``weight = 1`` everywhere this equals the
    real-space Pearson correlation.

    Parameters
    ----------
    a, b : ndarray, shape (nz, ny, nx)
        Real volumes of the same shape.
    weight : ndarray
        Non-negative Fourier weight (bool or float), broadcastable to the spectrum, in
        unshifted fftn layout (last axis nx) or rfftn layout (last axis nx//2+1), e.g. from
        :func:`isonet_pl.data.wedge.measured_region`.

    Returns
    -------
    float
        Correlation in [−1, 1]; 0 when either volume has no power in the region, i.e. less
        than 1e-10 of its total (non-DC) power, which is float32 rounding level.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"a and b must be 3-D volumes of one shape, got {a.shape} and {b.shape}")
    fa = np.fft.rfftn(a)
    fb = np.fft.rfftn(b)
    mult = np.broadcast_to(_rfft_multiplicity(a.shape), fa.shape).copy()
    mult[0, 0, 0] = 0.0  # DC excluded
    w = mult * _rfft_weight(weight, a.shape).astype(np.float64)
    pa, pb = np.abs(fa) ** 2, np.abs(fb) ** 2
    power_a, power_b = np.sum(w * pa), np.sum(w * pb)
    # Power at float rounding level (e.g. a wedge-filtered float32 volume) is no signal.
    if power_a <= _NEGLIGIBLE * np.sum(mult * pa) or power_b <= _NEGLIGIBLE * np.sum(mult * pb):
        return 0.0
    num = np.sum(w * np.real(fa * np.conj(fb)))
    return float(num / np.sqrt(power_a * power_b))


def wedge_correlations(
    pred: np.ndarray,
    ground_truth: np.ndarray,
    tilt_min: float = -60.0,
    tilt_max: float = 60.0,
    max_resolution_fraction: float = 0.5,
    min_resolution_fraction: float = 0.0,
) -> dict[str, float]:
    """How well a prediction matches the ground truth, inside and outside the missing wedge.

    Parameters
    ----------
    pred, ground_truth : ndarray, shape (nz, ny, nx)
        Prediction (e.g. a corrected tomogram) and ground truth in the same contrast.
    tilt_min, tilt_max : float, default −60, 60
        Tilt range (degrees) that defines the measured region (:func:`measured_region`).
    max_resolution_fraction : float, default 0.5
        Fourier measures use only ``|k| <= max_resolution_fraction · Nyquist`` (|k| over all
        three axes, cycles/voxel); 0.5 means resolutions of 4 voxels and coarser, where a
        tomogram still has signal.
    min_resolution_fraction : float, default 0
        Optionally also drop ``|k| < min_resolution_fraction · Nyquist`` (e.g. 0.05), where a
        finite box makes "in the wedge" ill-defined (see Notes).

    Returns
    -------
    dict
        ``"overall"``: real-space Pearson correlation (all frequencies);
        ``"in_wedge"``: Fourier correlation over the band-limited coefficients the tilt range
        did **not** sample; higher is a better correction;
        ``"measured"``: the same over the sampled coefficients. DC is excluded from both.

    Notes
    -----
    ``in_wedge`` is not 0 for a plain WBP reconstruction of a finite volume: cutting the
    reconstruction (streaks included) to the box spreads measured power by about one Fourier
    cell, which at the lowest frequencies and next to the wedge edges lands inside the wedge.
    For the simulator's phantoms (:func:`isonet_pl.simulate.simulate_tomogram`, ±60°) a
    noise-free WBP scores about 0.3–0.5 here; a Gaussian ball in the middle of the box about 0.
    Compare methods against that baseline, or raise ``min_resolution_fraction``.
    """
    pred = np.asarray(pred)
    ground_truth = np.asarray(ground_truth)
    if pred.shape != ground_truth.shape or pred.ndim != 3:
        raise ValueError(
            f"pred and ground_truth must be 3-D volumes of one shape, got {pred.shape} "
            f"and {ground_truth.shape}"
        )
    if not 0 <= min_resolution_fraction < max_resolution_fraction:
        raise ValueError(
            "need 0 <= min_resolution_fraction < max_resolution_fraction, got "
            f"{min_resolution_fraction} and {max_resolution_fraction}"
        )
    nz, ny, nx = pred.shape
    kz = np.fft.fftfreq(nz)[:, None, None]
    ky = np.fft.fftfreq(ny)[None, :, None]
    kx = np.fft.rfftfreq(nx)[None, None, :]
    k2 = kz * kz + ky * ky + kx * kx
    k_low, k_high = 0.5 * min_resolution_fraction, 0.5 * max_resolution_fraction
    band = (k2 <= k_high**2) & (k2 >= k_low**2)
    measured = measured_region(pred.shape, tilt_min, tilt_max, rfft=True)
    in_wedge = band & ~measured
    sampled = band & measured
    return {
        "overall": correlation(pred, ground_truth),
        "in_wedge": fourier_correlation(pred, ground_truth, in_wedge),
        "measured": fourier_correlation(pred, ground_truth, sampled),
    }
