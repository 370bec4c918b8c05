"""Missing-wedge geometry in Fourier space for any (also asymmetric) tilt range.

Conventions
-----------
* Arrays are ZYX. Z is the beam direction at 0° tilt, **Y is the tilt axis**, X the other
  in-plane axis. Masks therefore depend on (k_z, k_x) only and are constant along k_y.
* Sign of the tilt angle: at tilt angle θ the beam runs along (z, x) = (cos θ, sin θ), i.e. a
  voxel at (z, x) (centred coordinates) projects onto detector coordinate
  ``u = x·cos θ − z·sin θ``. By the Fourier-slice theorem the projection at θ measures the
  coefficients along the line ``(k_x, k_z) ∝ (cos θ, −sin θ)``, i.e. those whose direction
  angle ``atan2(−k_z, k_x)`` equals θ modulo 180° (a direction and its negative are the same
  line). Coefficients whose direction lies in ``[tilt_min, tilt_max]`` (mod 180°) are
  *measured*; all the others form the *missing wedge*. The ``k_z = k_x = 0`` line (the k_y
  axis, including DC) is always measured.
* Frequencies are ``numpy.fft.fftfreq`` values in cycles/voxel, so the wedge angles are
  physical angles also for non-cubic volumes (voxels are assumed isotropic).
* Masks are returned in unshifted FFT order (zero frequency at index 0), with shape
  ``(nz, 1, nx)`` for ``numpy.fft.fftn`` layout or ``(nz, 1, nx//2 + 1)`` for
  ``numpy.fft.rfftn`` layout, so they broadcast against a 3-D spectrum. The full-layout mask
  is exactly symmetric under k → −k (on even grids the ambiguous Nyquist coefficients count as
  measured only when both of their interpretations are), so filtering keeps real data real.

With this convention a tilt range of −50°…+65° is the mirror image (x → −x) of −65°…+50°.
IsoNet 0.2's own fixed ±60° mask (SPEC §6.1) is available as :func:`isonet_wedge_mask`.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft

logger = logging.getLogger(__name__)

__all__ = [
    "measured_region",
    "measured_directions",
    "isonet_wedge_mask",
    "apply_wedge",
    "fill_wedge",
]

# Tolerance (degrees) so that directions lying exactly on a tilt-range boundary (only 0°, 45°
# and 90° can be hit exactly on a grid) count as measured despite rounding in atan2.
_ANGLE_TOL_DEG = 1e-6


def _negated_index(arr: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Return ``arr[-k]`` on an unshifted FFT grid (index i -> (-i) mod n) along ``axes``."""
    out = np.flip(arr, axis=axes)
    return np.roll(out, 1, axis=axes)


def measured_directions(kz: np.ndarray, kx: np.ndarray, tilt_min: float, tilt_max: float) -> np.ndarray:
    """Whether Fourier coefficients at (any, also off-grid) frequencies ``(kz, kx)`` are measured: their
    direction in the (k_z, k_x) plane lies in the tilt range (module docstring); the k_y axis
    (``kz = kx = 0``) is measured. Arrays broadcast; frequencies in any common unit."""
    span = float(tilt_max) - float(tilt_min)
    if span >= 180.0:
        return np.ones(np.broadcast_shapes(np.shape(kz), np.shape(kx)), dtype=bool)
    direction = np.rad2deg(np.arctan2(-kz, kx))  # (-180, 180]
    offset = np.mod(direction - float(tilt_min), 180.0)  # [0, 180)
    return (offset <= span + _ANGLE_TOL_DEG) | (offset >= 180.0 - _ANGLE_TOL_DEG) | ((kz == 0) & (kx == 0))


def measured_region(
    shape_zyx: tuple[int, int, int],
    tilt_min: float,
    tilt_max: float,
    rfft: bool = False,
) -> np.ndarray:
    """Fourier coefficients sampled by a single-axis tilt series (tilt axis Y).

    Parameters
    ----------
    shape_zyx : tuple of int
        Volume shape (nz, ny, nx). Only nz and nx matter.
    tilt_min, tilt_max : float
        Tilt range in degrees, ``tilt_min <= tilt_max`` (e.g. −60, 60 or −50, 65).
        A range of 180° or more measures everything.
    rfft : bool, default False
        If True return the half spectrum of ``numpy.fft.rfftn`` (last axis nx//2 + 1).

    Returns
    -------
    ndarray of bool, shape (nz, 1, nx) or (nz, 1, nx//2 + 1)
        True where the (k_z, k_x) direction lies within the tilt range (see the module
        docstring for the sign convention), unshifted FFT order.
    """
    nz, _, nx = (int(n) for n in shape_zyx)
    if tilt_max < tilt_min:
        raise ValueError(f"tilt_max ({tilt_max}) must not be smaller than tilt_min ({tilt_min})")
    span = float(tilt_max) - float(tilt_min)
    if span >= 180.0:
        mask = np.ones((nz, nx), dtype=bool)
    else:
        mask = measured_directions(np.fft.fftfreq(nz)[:, None], np.fft.fftfreq(nx)[None, :], tilt_min, tilt_max)
        # Exact Hermitian symmetry (matters only for the self-conjugate Nyquist rows/columns).
        mask &= _negated_index(mask, axes=(0, 1))
    if rfft:
        mask = mask[:, : nx // 2 + 1]
    return np.ascontiguousarray(mask[:, None, :])


def isonet_wedge_mask(n: int) -> np.ndarray:
    """IsoNet 0.2's fixed ±60° missing-wedge mask ``M(u, v)`` (SPEC §6.1), for parity.

    Parameters
    ----------
    n : int
        Edge of the cubic volume (use an even size; IsoNet is off by half a pixel for odd n).

    Returns
    -------
    ndarray of float32, shape (n, n)
        Axes (k_Z, k_X) in **centred** (fftshift) order: index ``n//2`` is zero frequency.
        Use ``np.fft.ifftshift(m)[:, None, :]`` to obtain a mask for :func:`apply_wedge`.
        Rules, in order, with ``u = i − n/2`` and ``v = j − n/2``: ``int(u) == 0`` → 1 (the
        whole row); ``v == 0`` → 0; ``u² + v² ≤ (n/2)²`` and ``atan(|u|/|v|) < 60°`` → 1;
        otherwise 0 (the corners outside the disk count as missing).
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    half = n / 2.0
    u = np.arange(n, dtype=np.float64)[:, None] - half
    v = np.arange(n, dtype=np.float64)[None, :] - half
    u, v = np.broadcast_arrays(u, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.rad2deg(np.arctan(np.abs(u) / np.abs(v)))
    inside = (u * u + v * v <= half * half) & (angle < 60.0)
    mask = np.where(v == 0, False, inside)
    mask = np.where(np.trunc(u) == 0, True, mask)
    return mask.astype(np.float32)


def _rfft_weight(weight: np.ndarray, shape_zyx: tuple[int, ...]) -> np.ndarray:
    """Bring a Fourier weight in full fftn or rfftn layout to rfftn layout (float32).

    A full-layout weight ``M`` is replaced by its Hermitian part ``(M(k) + M(−k)) / 2``, which
    gives exactly ``Re(ifftn(fftn(x)·M))`` for real ``x``.
    """
    nz, ny, nx = shape_zyx[-3:]
    weight = np.asarray(weight)
    if weight.ndim < 3:
        raise ValueError(f"weight must broadcast as (nz, ny|1, nx|nx//2+1), got {weight.shape}")
    last = weight.shape[-1]
    if last == nx // 2 + 1:
        return weight.astype(np.float32, copy=False)
    if last != nx:
        raise ValueError(
            f"weight last axis {last} matches neither nx = {nx} nor nx//2+1 = {nx // 2 + 1}"
        )
    w = weight.astype(np.float32)
    axes = tuple(ax for ax in (-3, -2, -1) if w.shape[ax] > 1)
    if axes:
        w = 0.5 * (w + _negated_index(w, axes=axes))
    return np.ascontiguousarray(w[..., : nx // 2 + 1])


def apply_wedge(vol: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Keep only the measured Fourier region of a volume (IsoNet's ``Wmeas``).

    Parameters
    ----------
    vol : ndarray, shape (..., nz, ny, nx)
        Real volume(s); leading batch axes are allowed.
    measured : ndarray, shape (nz, 1 | ny, nx) or (nz, 1 | ny, nx//2 + 1)
        Fourier weight in unshifted fftn or rfftn layout (e.g. from :func:`measured_region`);
        bool or float. Pass ``1 − measured`` (or ``~measured``) to keep the wedge instead.

    Returns
    -------
    ndarray, shape (..., nz, ny, nx), float32
        ``Re(IFFT(FFT(vol) · measured))``.
    """
    vol = np.asarray(vol, dtype=np.float32)
    if vol.ndim < 3:
        raise ValueError(f"vol must be at least 3-D (..., nz, ny, nx), got shape {vol.shape}")
    weight = _rfft_weight(measured, vol.shape)
    axes = (-3, -2, -1)
    spectrum = scipy.fft.rfftn(vol, axes=axes)  # single precision for float32, as everywhere in training
    spectrum *= weight
    out = scipy.fft.irfftn(spectrum, s=vol.shape[-3:], axes=axes)
    return out.astype(np.float32, copy=False)


def fill_wedge(
    measured_data: np.ndarray, estimate: np.ndarray, measured: np.ndarray
) -> np.ndarray:
    """Combine the measured region of the data with the missing region of an estimate.

    Computes ``Wmeas(measured_data) + Wmiss(estimate)`` (SPEC §6.2 step b) in one FFT pass.

    Parameters
    ----------
    measured_data : ndarray, shape (..., nz, ny, nx)
        The original (wedge-affected) volume(s).
    estimate : ndarray, shape (..., nz, ny, nx)
        The network's prediction, same shape.
    measured : ndarray
        Fourier weight as in :func:`apply_wedge` (1 = measured).

    Returns
    -------
    ndarray, shape (..., nz, ny, nx), float32
    """
    data = np.asarray(measured_data, dtype=np.float32)
    est = np.asarray(estimate, dtype=np.float32)
    if data.shape != est.shape:
        raise ValueError(f"shapes differ: measured_data {data.shape}, estimate {est.shape}")
    if data.ndim < 3:
        raise ValueError(f"volumes must be at least 3-D (..., nz, ny, nx), got {data.shape}")
    weight = _rfft_weight(measured, data.shape)
    axes = (-3, -2, -1)
    spec_data = scipy.fft.rfftn(data, axes=axes)
    spectrum = scipy.fft.rfftn(est, axes=axes)
    spectrum += weight * (spec_data - spectrum)
    out = scipy.fft.irfftn(spectrum, s=data.shape[-3:], axes=axes)
    return out.astype(np.float32, copy=False)
