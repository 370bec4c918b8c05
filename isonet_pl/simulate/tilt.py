"""Tilt-series simulation: parallel-beam projection, weighted back-projection, noisy tomograms.

Geometry (the same as :mod:`isonet_pl.data.wedge`): arrays are ZYX, the tilt axis is Y, and at
tilt angle θ (degrees) the beam runs along (z, x) = (cos θ, sin θ). A voxel at centred
coordinates (z, x) — measured from the volume centre ``((nz−1)/2, (nx−1)/2)`` — lands on the
detector coordinate ``u = x·cos θ − z·sin θ``, measured from the detector centre
``(nu−1)/2``. The projection at θ therefore samples the Fourier coefficients whose direction
satisfies ``atan2(−k_z, k_x) = θ`` (mod 180°).

Both operators use linear interpolation along u with the same weights; :func:`project` splats
(sums voxels into the two nearest detector bins) and is the exact transpose of
:func:`backproject` with ``filter=None`` and unit angle weights (up to float rounding). Voxels
whose footprint falls off the detector are ignored by both. Everything is vectorised over Y.

:func:`simulate_tomogram` chains :func:`~isonet_pl.simulate.phantom.make_phantom`,
:func:`project`, an optional CTF (:func:`~isonet_pl.preprocess.ctf.apply_ctf`), Gaussian noise
on the projections and :func:`backproject`, so the reconstruction carries the missing wedge
(in signal and noise) like real data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from isonet_pl.preprocess.ctf import Microscope, apply_ctf
from isonet_pl.simulate.phantom import make_phantom

logger = logging.getLogger(__name__)

__all__ = [
    "tilt_angles",
    "detector_width",
    "angle_weights",
    "ramp_filter",
    "project",
    "backproject",
    "simulate_tomogram",
]


def tilt_angles(tilt_min: float, tilt_max: float, tilt_step: float) -> np.ndarray:
    """Tilt angles from ``tilt_min`` to ``tilt_max`` inclusive, in degrees.

    Parameters
    ----------
    tilt_min, tilt_max : float
        First and last tilt angle in degrees.
    tilt_step : float
        Increment in degrees (> 0).

    Returns
    -------
    ndarray, shape (n_angles,), float64
        E.g. 41 angles for −60…60 step 3.
    """
    if tilt_step <= 0:
        raise ValueError(f"tilt_step must be positive, got {tilt_step}")
    if tilt_max < tilt_min:
        raise ValueError(f"tilt_max ({tilt_max}) must not be smaller than tilt_min ({tilt_min})")
    n = int(np.floor((tilt_max - tilt_min) / tilt_step + 1e-9)) + 1
    return tilt_min + tilt_step * np.arange(n, dtype=np.float64)


def detector_width(shape_zyx: tuple[int, int, int], angles_deg: Sequence[float]) -> int:
    """Smallest odd detector width that sees every voxel at every angle.

    Parameters
    ----------
    shape_zyx : tuple of int
        Volume shape (nz, ny, nx).
    angles_deg : sequence of float
        Tilt angles in degrees.

    Returns
    -------
    int
        ``nu`` such that ``|u| + 1 <= (nu − 1)/2`` for all voxels and angles.
    """
    nz, _, nx = shape_zyx
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    half = np.max(0.5 * (nx - 1) * np.abs(np.cos(theta)) + 0.5 * (nz - 1) * np.abs(np.sin(theta)))
    return 2 * int(np.ceil(half + 1.0)) + 1


def angle_weights(angles_deg: Sequence[float]) -> np.ndarray:
    """Angular quadrature weights (radians) for weighted back-projection.

    Each angle gets half the distance to its two neighbours (in sorted order); the first and
    last get the full distance to their single neighbour, as for an evenly spaced series. For
    evenly spaced angles every weight equals the step. A single angle gets π.

    Parameters
    ----------
    angles_deg : sequence of float, length n_angles
        Tilt angles in degrees, any order.

    Returns
    -------
    ndarray, shape (n_angles,), float64
        Weights in the order of ``angles_deg``.
    """
    angles = np.asarray(angles_deg, dtype=np.float64)
    if angles.size == 1:
        return np.array([np.pi])
    order = np.argsort(angles)
    sorted_rad = np.deg2rad(angles[order])
    gaps = np.diff(sorted_rad)
    w_sorted = np.empty_like(sorted_rad)
    w_sorted[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    w_sorted[0] = gaps[0]
    w_sorted[-1] = gaps[-1]
    weights = np.empty_like(w_sorted)
    weights[order] = w_sorted
    return weights


def ramp_filter(projections: np.ndarray) -> np.ndarray:
    """Ram-Lak (ramp) filter along the detector axis.

    The kernel is the band-limited discrete ramp (``h[0] = 1/4``, ``h[n] = −1/(πn)²`` for odd
    n, 0 for even n ≠ 0), applied by FFT with zero padding to at least twice the width, so
    the DC term is handled correctly and there is no wrap-around.

    Parameters
    ----------
    projections : ndarray, shape (..., nu)
        Projections; the last axis is the detector coordinate u.

    Returns
    -------
    ndarray, shape (..., nu), float32
    """
    p = np.asarray(projections, dtype=np.float32)
    nu = p.shape[-1]
    n_pad = 1 << int(np.ceil(np.log2(max(2 * nu, 2))))
    n = np.fft.fftfreq(n_pad) * n_pad  # signed integer offsets 0, 1, ..., -1
    kernel = np.zeros(n_pad, dtype=np.float64)
    kernel[0] = 0.25
    odd = (np.abs(n) % 2) == 1
    kernel[odd] = -1.0 / (np.pi * n[odd]) ** 2
    response = np.real(np.fft.rfft(kernel)).astype(np.float32)
    spectrum = np.fft.rfft(p, n=n_pad, axis=-1)
    spectrum *= response
    return np.fft.irfft(spectrum, n=n_pad, axis=-1)[..., :nu].astype(np.float32, copy=False)


def _interpolation(
    nz: int, nx: int, theta_deg: float, nu: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear-interpolation footprint of all (z, x) voxels at one angle.

    Returns flat arrays over the nz·nx voxels (z-major): the left bin index in the detector
    padded by one bin on each side (valid range 0 … nu), the fractional weight of the right
    bin, and a flag for voxels entirely off the padded detector (routed to bin 0, weight 0).
    """
    theta = np.deg2rad(theta_deg)
    zc = np.arange(nz, dtype=np.float64) - 0.5 * (nz - 1)
    xc = np.arange(nx, dtype=np.float64) - 0.5 * (nx - 1)
    u = xc[None, :] * np.cos(theta) - zc[:, None] * np.sin(theta)
    t = (u + 0.5 * (nu - 1)).ravel() + 1.0  # +1: padded detector, bin 0 is u-index -1
    left = np.floor(t)
    frac = (t - left).astype(np.float32)
    left = left.astype(np.intp)
    outside = (left < 0) | (left > nu)
    if outside.any():
        # Footprint entirely off the padded detector: route it to bin 0 with zero weight.
        left[outside] = 0
        frac[outside] = 0.0
    return left, frac, outside


def project(
    vol: np.ndarray, angles_deg: Sequence[float], n_detector: int | None = None
) -> np.ndarray:
    """Parallel-beam projections of a volume around the Y axis (a tilt series).

    Parameters
    ----------
    vol : ndarray, shape (nz, ny, nx)
        Volume (density per voxel).
    angles_deg : sequence of float, length n_angles
        Tilt angles in degrees (convention in the module docstring).
    n_detector : int, optional
        Detector width nu in pixels; default :func:`detector_width`, which holds the whole
        volume at every angle.

    Returns
    -------
    ndarray, shape (n_angles, ny, nu), float32
        Line integrals (sum of voxel values along the beam, pixel units).
    """
    vol = np.asarray(vol, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"vol must be 3-D (nz, ny, nx), got shape {vol.shape}")
    nz, ny, nx = vol.shape
    angles = np.atleast_1d(np.asarray(angles_deg, dtype=np.float64))
    nu = detector_width(vol.shape, angles) if n_detector is None else int(n_detector)
    # Rows = voxels (z, x), columns = y: every operation below is vectorised over y.
    rows = np.ascontiguousarray(vol.transpose(0, 2, 1)).reshape(nz * nx, ny)
    out = np.zeros((angles.size, nu + 2, ny), dtype=np.float32)
    for a, theta in enumerate(angles):
        left, frac, outside = _interpolation(nz, nx, theta, nu)
        order = np.argsort(left, kind="stable")
        left_sorted = left[order]
        values = rows[order]
        right_part = values * frac[order][:, None]
        left_part = values - right_part
        if outside.any():
            left_part[outside[order]] = 0.0
        starts = np.flatnonzero(np.r_[True, left_sorted[1:] != left_sorted[:-1]])
        bins = left_sorted[starts]
        out[a, bins] += np.add.reduceat(left_part, starts, axis=0)
        out[a, bins + 1] += np.add.reduceat(right_part, starts, axis=0)
    return np.ascontiguousarray(out[:, 1 : nu + 1].transpose(0, 2, 1))


def backproject(
    projections: np.ndarray,
    angles_deg: Sequence[float],
    shape_zyx: tuple[int, int, int],
    filter: str | None = "ramp",
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """(Weighted) back-projection of a tilt series into a volume.

    With ``filter="ramp"`` and the default angle weights this is filtered back-projection
    (WBP): for a tilt range covering 180° it reconstructs the volume in the same units as the
    input of :func:`project`; for a limited range it reconstructs the measured Fourier region
    and leaves the missing wedge (nearly) empty.

    Parameters
    ----------
    projections : ndarray, shape (n_angles, ny, nu)
        Tilt series, detector centre at ``(nu − 1)/2``.
    angles_deg : sequence of float, length n_angles
        Tilt angles in degrees.
    shape_zyx : tuple of int
        Output shape (nz, ny, nx); ny must match the projections.
    filter : {"ramp", None}, default "ramp"
        Ramp-filter the projections first (:func:`ramp_filter`), or not (plain back-projection).
    weights : sequence of float, optional
        Per-angle weights; default :func:`angle_weights` when filtering, all ones otherwise
        (then the operator is the exact transpose of :func:`project`).

    Returns
    -------
    ndarray, shape (nz, ny, nx), float32
    """
    p = np.asarray(projections, dtype=np.float32)
    angles = np.atleast_1d(np.asarray(angles_deg, dtype=np.float64))
    if p.ndim != 3 or p.shape[0] != angles.size:
        raise ValueError(
            f"projections must have shape (n_angles={angles.size}, ny, nu), got {p.shape}"
        )
    nz, ny, nx = (int(n) for n in shape_zyx)
    if p.shape[1] != ny:
        raise ValueError(f"projections have ny = {p.shape[1]}, volume shape asks for {ny}")
    if filter not in ("ramp", None, "none"):
        raise ValueError(f"filter must be 'ramp' or None, got {filter!r}")
    use_ramp = filter == "ramp"
    if weights is None:
        w = angle_weights(angles) if use_ramp else np.ones(angles.size)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != angles.shape:
            raise ValueError(f"weights must have shape {angles.shape}, got {w.shape}")
    if use_ramp:
        p = ramp_filter(p)
    nu = p.shape[2]
    acc = np.zeros((nz * nx, ny), dtype=np.float32)
    padded = np.zeros((nu + 2, ny), dtype=np.float32)
    for a, theta in enumerate(angles):
        left, frac, _ = _interpolation(nz, nx, theta, nu)
        padded[1 : nu + 1] = p[a].T * np.float32(w[a])
        g0 = padded[left]
        g1 = padded[left + 1]
        g1 -= g0
        g1 *= frac[:, None]
        g0 += g1
        acc += g0
    return np.ascontiguousarray(acc.reshape(nz, nx, ny).transpose(0, 2, 1))


def simulate_tomogram(
    shape_zyx: tuple[int, int, int] = (96, 256, 256),
    tilt_min: float = -60.0,
    tilt_max: float = 60.0,
    tilt_step: float = 3.0,
    pixel_size: float = 10.0,
    snr: float | None = 0.3,
    defocus_angstrom: float = 0.0,
    microscope: Microscope = Microscope(),
    halves: bool = False,
    seed: int | None = 0,
    slab_fraction: float = 0.6,
    n_membranes: int | None = None,
    membrane_tilt: float = 10.0,
    phantom: np.ndarray | None = None,
) -> dict[str, np.ndarray | float]:
    """Simulate a noisy, missing-wedge-affected cryo-ET reconstruction of a phantom.

    Steps: phantom (density, protein positive) → tilt series by :func:`project` → optional CTF
    on every projection → additive white Gaussian noise on the projections → WBP
    (:func:`backproject`, ramp filter) → negate (protein dark, as in real tomograms).

    Parameters
    ----------
    shape_zyx : tuple of int, default (96, 256, 256)
        Tomogram shape (nz, ny, nx); Y is the tilt axis.
    tilt_min, tilt_max, tilt_step : float, default −60, 60, 3
        Tilt range and increment in degrees (41 tilts by default). Asymmetric ranges are fine.
    pixel_size : float, default 10.0
        Voxel size in Å (sets the physical size of phantom objects and of the CTF).
    snr : float or None, default 0.3
        Signal-to-noise ratio **per projection**, as recorded: the variance of the noise-free
        projections (after the CTF when there is one; over all tilts and the central nx
        detector columns) divided by the variance of the white Gaussian noise added to every
        detector pixel. ``None`` (or ``inf``) adds no noise. At 0.3 single slices of the
        ramp-filtered reconstruction are dominated by high-frequency noise, vesicles and
        filaments are visible and proteins faint, much as in an unfiltered real tomogram.
    defocus_angstrom : float, default 0
        Defocus in Å, underfocus positive; 0 means no CTF at all.
    microscope : Microscope
        Voltage, Cs, amplitude contrast for the CTF (see :func:`isonet_pl.preprocess.ctf.ctf_1d`).
    halves : bool, default False
        Also return ``"even"`` and ``"odd"``: reconstructions of the same projections with
        independent noise of twice the variance each (half the dose), and then
        ``tomogram = (even + odd) / 2``, which has the same noise level as without halves.
    seed : int or None, default 0
        Seed of the one generator used for the phantom and then the noise.
    slab_fraction : float, default 0.6
        Ice thickness as a fraction of nz (passed to :func:`make_phantom`).
    n_membranes : int, optional
        Number of flat membrane sheets (passed to :func:`make_phantom`; default scaled to the area).
    membrane_tilt : float, default 10.0
        Largest tilt of the sheets from the XY plane, degrees (passed to :func:`make_phantom`).
    phantom : ndarray, shape (nz, ny, nx), optional
        Use this density instead of a random phantom (``shape_zyx`` is then ignored).

    Returns
    -------
    dict
        ``"ground_truth"`` : (nz, ny, nx) float32, ``−phantom`` (tomogram contrast).
        ``"tomogram"`` : (nz, ny, nx) float32, ``−WBP`` of the noisy projections.
        ``"even"``, ``"odd"`` : (nz, ny, nx) float32, only when ``halves`` is True.
        ``"angles"`` : (n_tilts,) float32, tilt angles in degrees.
        ``"noise_sigma"`` : float, standard deviation of the noise added to each projection
        pixel (per half when ``halves``: ``sqrt(2)`` times this).
    """
    rng = np.random.default_rng(seed)
    if phantom is None:
        density = make_phantom(shape_zyx, rng, slab_fraction=slab_fraction, n_membranes=n_membranes,
                               pixel_size=pixel_size, membrane_tilt=membrane_tilt)
    else:
        density = np.asarray(phantom, dtype=np.float32)
        if density.ndim != 3:
            raise ValueError(f"phantom must be 3-D (nz, ny, nx), got shape {density.shape}")
    shape = density.shape
    nz, ny, nx = shape
    angles = tilt_angles(tilt_min, tilt_max, tilt_step)
    projections = project(density, angles)
    if defocus_angstrom:
        projections = apply_ctf(projections, pixel_size, defocus_angstrom, microscope)
    nu = projections.shape[-1]
    first = (nu - nx) // 2
    signal_var = float(np.var(projections[:, :, first : first + nx], dtype=np.float64))
    if snr is None or np.isinf(snr):
        sigma = 0.0
    elif snr <= 0:
        raise ValueError(f"snr must be positive (or None for no noise), got {snr}")
    else:
        sigma = float(np.sqrt(signal_var / snr))
    logger.info(
        "simulating %s tomogram: %d tilts %.1f..%.1f, snr %s (noise sigma %.3g), defocus %.0f Å",
        shape,
        angles.size,
        angles[0],
        angles[-1],
        snr,
        sigma,
        defocus_angstrom,
    )

    def reconstruct(noise_sigma: float) -> np.ndarray:
        noisy = projections
        if noise_sigma > 0:
            noise = rng.standard_normal(projections.shape, dtype=np.float32)
            noisy = projections + np.float32(noise_sigma) * noise
        return -backproject(noisy, angles, shape, filter="ramp")

    result: dict[str, np.ndarray | float] = {
        "ground_truth": -density,
        "angles": angles.astype(np.float32),
        "noise_sigma": sigma,
    }
    if halves:
        even = reconstruct(np.sqrt(2.0) * sigma)
        odd = reconstruct(np.sqrt(2.0) * sigma)
        result["even"] = even
        result["odd"] = odd
        result["tomogram"] = (0.5 * (even + odd)).astype(np.float32)
    else:
        result["tomogram"] = reconstruct(sigma)
    return result
