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

__all__ = ["correlation", "z_profile_correlation", "fourier_correlation", "wedge_correlations", "shell_correlations",
           "SHELL_EDGES"]

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


def z_profile_correlation(a, b) -> float:
    """Pearson correlation of the Z profiles of two volumes: the mean of each XY slice, i.e. the specimen's slab
    profile along the beam (the Fourier line k_x = k_y = 0, inside every missing wedge).

    Needs no ground truth when ``b`` is the input of a correction: weighted back-projection of a finite slab
    leaks its profile into the tomogram (0.95-0.97 correlation with the truth's on bench/quality/quality.py's phantoms),
    so a corrected tomogram whose profile disagrees with its input's has lost or bent the slab.

    Parameters
    ----------
    a, b : array-like, shape (nz, ny, nx)
        numpy or dask arrays of the same Z size (dask ones are reduced lazily, one pass each).

    Returns
    -------
    float
        Correlation in [−1, 1]; 0 when either profile is constant.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"Z sizes differ: {a.shape} vs {b.shape}")
    profiles = [np.asarray(v.mean(axis=(1, 2), dtype=np.float64)) for v in (a, b)]
    return correlation(*profiles)


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


#: default shell edges of :func:`shell_correlations`, as fractions of Nyquist (the last one holds the corners)
SHELL_EDGES = (0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.8)


def shell_correlations(
    pred: np.ndarray,
    ground_truth: np.ndarray,
    tilt_min: float = -60.0,
    tilt_max: float = 60.0,
    edges: tuple[float, ...] = SHELL_EDGES,
) -> list[dict[str, float | str]]:
    """Where the overall correlation is won or lost: per shell of |k| and region (wedge / measured).

    The real-space Pearson correlation ``overall`` of :func:`wedge_correlations` is a sum over Fourier
    coefficients, ``Re Σ P·conj(T) / sqrt(Σ|P|² · Σ|T|²)`` (DC excluded, which is what subtracting the
    means does), so it splits exactly into one term per shell and region: ``contribution``. The rows'
    contributions add up to ``overall``; a shell that holds much of the ground truth's power and is
    reproduced poorly is where a correction loses most.

    Parameters
    ----------
    pred, ground_truth : ndarray, shape (nz, ny, nx)
        Prediction and ground truth in the same contrast.
    tilt_min, tilt_max : float
        Tilt range (degrees) that defines the measured region (:func:`measured_region`).
    edges : tuple of float
        Increasing shell edges as fractions of Nyquist (|k| over all three axes, Nyquist 0.5 cycles/voxel);
        coefficients at or beyond the last edge are left out (the default's 1.8 includes the corners, √3).

    Returns
    -------
    list of dict
        One row per shell and region, in order of ``edges`` (``"wedge"`` first), with keys ``low``,
        ``high`` (fractions of Nyquist), ``region``, ``truth_power`` and ``pred_power`` (fractions of each
        volume's total non-DC power), ``correlation`` (of the coefficients in the row; 0 where either volume
        has none) and ``contribution`` (the row's share of ``overall``). Rows without coefficients are
        left out.
    """
    pred = np.asarray(pred, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    if pred.shape != ground_truth.shape or pred.ndim != 3:
        raise ValueError(f"pred and ground_truth must be 3-D volumes of one shape, got {pred.shape} "
                         f"and {ground_truth.shape}")
    if any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True)) or len(edges) < 2 or edges[0] < 0:
        raise ValueError(f"edges must be at least two increasing non-negative numbers, got {edges}")
    fp, ft = np.fft.rfftn(pred), np.fft.rfftn(ground_truth)
    mult = np.broadcast_to(_rfft_multiplicity(pred.shape), fp.shape).copy()
    mult[0, 0, 0] = 0.0  # DC excluded
    nz, ny, nx = pred.shape
    k = np.sqrt(np.fft.fftfreq(nz)[:, None, None] ** 2 + np.fft.fftfreq(ny)[None, :, None] ** 2
                + np.fft.rfftfreq(nx)[None, None, :] ** 2) / 0.5
    measured = np.broadcast_to(measured_region(pred.shape, tilt_min, tilt_max, rfft=True), fp.shape)
    pp, pt, cross = mult * np.abs(fp) ** 2, mult * np.abs(ft) ** 2, mult * np.real(fp * np.conj(ft))
    total_p, total_t = pp.sum(), pt.sum()
    norm = np.sqrt(total_p * total_t)
    rows = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        shell = (k >= low) & (k < high) & (k > 0)
        for name, region in (("wedge", shell & ~measured), ("measured", shell & measured)):
            if not region.any():
                continue
            sp, st, sc = pp[region].sum(), pt[region].sum(), cross[region].sum()
            rows.append({"low": float(low), "high": float(high), "region": name,
                         "truth_power": float(st / total_t) if total_t > 0 else 0.0,
                         "pred_power": float(sp / total_p) if total_p > 0 else 0.0,
                         "correlation": float(sc / np.sqrt(sp * st)) if sp > 0 and st > 0 else 0.0,
                         "contribution": float(sc / norm) if norm > 0 else 0.0})
    return rows
