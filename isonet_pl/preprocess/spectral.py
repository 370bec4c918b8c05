"""Noise measured from the data, and the radial Wiener filter it gives (single-tomogram denoising).

A tomogram is specimen (a slab along Z) plus noise that is stationary over the whole volume (weighted
back-projection spreads each projection's noise evenly along its rays), and most tomograms are
reconstructed thicker than the specimen: the slices above and below it hold noise only. So:

* :func:`empty_slices` finds those slices from a Z profile of the low-passed variance (a 4×4 lateral
  block mean keeps the specimen's contrast and averages the noise away);
* :func:`estimate_spectra` measures the power spectral density (PSD, per voxel, radially averaged in
  shells of |k|, cycles/voxel) of the empty slices (the noise, N(k)) and of the specimen slices
  (signal plus noise, P(k)), in boxes of one shape so both lie on one frequency grid; optionally
  only over the Fourier coefficients a tilt range measured (a raw tomogram has no power in its
  missing wedge, neither signal nor noise);
* the Wiener weights ``W(k) = max(0, 1 − N(k)/P(k))`` are, for Gaussian signal and noise, the
  minimum-mean-square-error linear estimate of the signal (exact: tested on Gaussian fields of known
  spectra); they are smoothed over neighbouring shells and kept non-increasing beyond their peak;
* :func:`wiener_kernel` turns them into a small radial real-space kernel and :func:`apply_kernel`
  convolves a dask array with it block by block (equal to the in-memory convolution of the
  symmetrically padded volume, to float rounding), so tomograms larger than memory are filtered
  lazily.

Applied to the network's output (whose empty slices hold what noise the network left), this is the
denoising half of the single-tomogram method: the network fills the wedge, the data say how much of
each frequency band is noise.

All arrays are ZYX; frequencies are in cycles per voxel (Nyquist 0.5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dask.array as da
import numpy as np
from scipy import signal

from isonet_pl.data.wedge import measured_region

logger = logging.getLogger(__name__)

__all__ = ["SpectralEstimate", "NoEmptyRegion", "empty_slices", "estimate_spectra", "wiener_kernel", "wiener_denoise",
           "apply_kernel", "radial_psd"]

#: lateral block-mean size of the Z profile (voxels)
PROFILE_BIN = 4
#: a slice is empty when its profile value is within this fraction of the (peak − floor) range of the floor
EMPTY_LEVEL = 0.15
#: specimen slices: at least this fraction of the range above the floor
SPECIMEN_LEVEL = 0.5
#: slices left out next to the specimen (the missing wedge smears it along Z); one is left out at each face
MARGIN = 2
#: fewest empty slices (both sides together) for a noise estimate, and fewest on one side to use that side
MIN_EMPTY = 6
MIN_RANGE = 4
#: the specimen must stand out: profile peak at least this many times the floor
MIN_CONTRAST = 1.5
#: lateral box size of the spectra (voxels) and most boxes read per region
BOX = 64
MAX_BOXES = 48
#: radial shells (cycles/voxel): width
SHELL = 1.0 / 48
#: real-space radius of the filter kernel (voxels)
KERNEL_RADIUS = 10


class NoEmptyRegion(ValueError):
    """The tomogram has no empty (noise-only) slices above or below the specimen to measure noise on."""


@dataclass(frozen=True)
class SpectralEstimate:
    """Noise and specimen spectra of one tomogram and the Wiener weights they give.

    Attributes
    ----------
    frequency : ndarray, shape (n_shells,)
        Shell centres, cycles/voxel.
    total, noise : ndarray, shape (n_shells,)
        PSD per voxel of the specimen slices (signal + noise) and of the empty slices (noise).
    weights : ndarray, shape (n_shells,)
        ``clip(1 − noise/total, 0, 1)``; 1 where a shell has no coefficient.
    empty : tuple of (int, int)
        Z ranges ``[start, stop)`` measured as noise.
    specimen : (int, int)
        Z range measured as specimen.
    noise_std : float
        Real-space standard deviation of the noise over the coefficients measured (the volume's units).
    specimen_std : float
        The same over the specimen slices (signal plus noise); ``empty_share`` is the squared ratio.
    wedge_weights, wedge_noise, wedge_total : ndarray, shape (n_shells,), optional
        The same inside the missing wedge of ``tilt_range`` (a corrected tomogram: the network's fill);
        ``weights`` etc. are then those of the measured region.
    """

    frequency: np.ndarray
    total: np.ndarray
    noise: np.ndarray
    weights: np.ndarray
    empty: tuple[tuple[int, int], ...]
    specimen: tuple[int, int]
    noise_std: float
    specimen_std: float = float("nan")
    wedge_weights: np.ndarray | None = None
    tilt_range: tuple[float, float] | None = None
    wedge_noise: np.ndarray | None = None
    wedge_total: np.ndarray | None = None

    @property
    def empty_share(self) -> float:
        """Variance per voxel of the empty slices over that of the specimen's (each box's mean removed): near 1
        for a raw tomogram (noise dominates both), near 0 for a denoised one."""
        return float((self.noise_std / self.specimen_std) ** 2) if self.specimen_std > 0 else float("nan")

    def describe(self) -> str:
        """One line for the log: where the noise was measured and what the filter keeps."""
        half = np.interp(0.25, self.frequency, self.weights)
        cut = self.frequency[np.argmax(self.weights < 0.5)] if np.any(self.weights < 0.5) else 0.5
        empty = ", ".join(f"{a}-{b - 1}" for a, b in self.empty)
        return (f"noise measured on empty slices z {empty} (specimen z {self.specimen[0]}-{self.specimen[1] - 1}):"
                f" std {self.noise_std:.3g}; filter keeps half the amplitude up to {cut:.3f} cycles/voxel"
                f" ({half:.2f} at 0.25); empty slices hold {100 * self.empty_share:.1f} % of the specimen's variance")


def _profile(volume) -> np.ndarray:
    """Per-Z variance of the 4×4 lateral block mean, shape (nz,) (one lazy pass over the volume)."""
    arr = volume if isinstance(volume, da.Array) else da.from_array(volume, chunks=(16, -1, -1))
    nz, ny, nx = arr.shape
    b = PROFILE_BIN if min(ny, nx) >= 8 * PROFILE_BIN else 1
    arr = arr[:, : ny - ny % b, : nx - nx % b].astype(np.float64)
    if b > 1:
        arr = da.coarsen(np.mean, arr, {1: b, 2: b})
    return np.asarray(arr.var(axis=(1, 2)).compute())


def empty_slices(volume) -> tuple[tuple[tuple[int, int], ...], tuple[int, int]]:
    """The noise-only Z ranges above and below the specimen, and the specimen's Z range.

    Parameters
    ----------
    volume : ndarray or dask array, shape (nz, ny, nx)

    Returns
    -------
    empty : tuple of (start, stop)
        One or two Z ranges touching the faces (margins removed), together at least ``MIN_EMPTY`` slices.
    specimen : (start, stop)
        The slices whose profile is at least half-way between floor and peak.

    Raises
    ------
    NoEmptyRegion
        No contrast between specimen and empty slices, or too few empty slices.
    """
    prof = _profile(volume)
    nz = prof.size
    prof = np.convolve(np.pad(prof, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    floor = float(np.mean(np.sort(prof)[: max(3, nz // 10)]))  # robust to the profile's own noise
    peak = float(np.max(prof))
    if not peak > MIN_CONTRAST * floor:
        raise NoEmptyRegion(f"the specimen does not stand out along Z (profile peak {peak:.3g}, floor {floor:.3g})")
    low = prof <= floor + EMPTY_LEVEL * (peak - floor)
    top = int(np.argmin(low)) if not low.all() else nz  # run of empty slices from z = 0
    bottom = int(np.argmin(low[::-1])) if not low.all() else nz
    # ranges thinner than MIN_RANGE would make the boxes of both spectra that thin: left out
    ranges = [r for r in ((1, top - MARGIN), (nz - bottom + MARGIN, nz - 1)) if r[1] - r[0] >= MIN_RANGE]
    if sum(b - a for a, b in ranges) < MIN_EMPTY:
        raise NoEmptyRegion(f"too few empty slices above and below the specimen ({top} + {bottom} of {nz}; "
                            f"need {MIN_EMPTY + 2 * MARGIN + 2})")
    high = np.flatnonzero(prof >= floor + SPECIMEN_LEVEL * (peak - floor))
    return tuple(ranges), (int(high[0]), int(high[-1]) + 1)


def _window(shape) -> np.ndarray:
    """Separable Hann-like (sine) window of ``shape``, normalised to mean square 1."""
    w = np.ones(shape)
    for axis, n in enumerate(shape):
        line = np.sin(np.pi * (np.arange(n) + 0.5) / n)
        w = w * line.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return w / np.sqrt(np.mean(w * w))


def _shells(shape) -> tuple[np.ndarray, int]:
    """Shell index of every rfft coefficient of ``shape`` (−1 at DC), and the number of shells."""
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    ky = np.fft.fftfreq(shape[1])[None, :, None]
    kx = np.fft.rfftfreq(shape[2])[None, None, :]
    k = np.sqrt(kz * kz + ky * ky + kx * kx)
    n = int(np.ceil(0.5 / SHELL))
    index = np.minimum((k / SHELL).astype(int), n - 1)
    index[0, 0, 0] = -1  # DC: the mean, not a spectrum
    return index, n


def radial_psd(boxes, regions=(None,)) -> tuple[np.ndarray, np.ndarray]:
    """Power spectral density per voxel, averaged in shells of |k|, over boxes of one shape.

    Parameters
    ----------
    boxes : iterable of ndarray, each (bz, by, bx)
        Each is mean-subtracted and windowed (sine window, mean square 1).
    regions : sequence of (ndarray of bool or None)
        Coefficients to count, one spectrum per entry, each broadcastable to the rfft half-spectrum of a box
        (e.g. a tilt range's measured region and its complement); None counts all.

    Returns
    -------
    psd : ndarray, shape (n_regions, n_shells)
        Mean |F|²/n_voxels per shell (NaN where a shell has no coefficient).
    counts : ndarray, shape (n_regions, n_shells)
        Full-spectrum coefficients per shell divided by n_voxels (so ``sum(psd * counts)`` is the variance).
    """
    total = None
    number = 0
    for box in boxes:
        box = np.asarray(box, dtype=np.float64)
        if total is None:
            shape = box.shape
            index, n = _shells(shape)
            mult = np.full(index.shape[-1], 2.0)  # the rfft half-spectrum stands for both halves
            mult[0] = 1.0
            if shape[2] % 2 == 0:
                mult[-1] = 1.0
            weight = np.broadcast_to(mult, index.shape)
            keeps = [(index >= 0) & (True if r is None else np.broadcast_to(r, index.shape)) for r in regions]
            window = _window(shape)
            total = np.zeros((len(regions), n))
        f = np.fft.rfftn((box - box.mean()) * window)
        power = (f.real**2 + f.imag**2) / box.size * weight
        for i, keep in enumerate(keeps):
            total[i] += np.bincount(index[keep], weights=power[keep], minlength=n)
        number += 1
    if total is None:
        raise ValueError("no boxes to measure a spectrum on")
    coeffs = np.stack([np.bincount(index[keep], weights=weight[keep], minlength=n) for keep in keeps])
    with np.errstate(invalid="ignore", divide="ignore"):
        psd = total / (number * coeffs)
    psd[coeffs == 0] = np.nan
    return psd, coeffs / np.prod(shape)


def _boxes(volume, z_ranges, depth: int, limit: int, seed: int = 0):
    """Up to ``limit`` boxes (depth, BOX, BOX) from ``z_ranges`` of ``volume``, spread evenly over Y and X."""
    _, ny, nx = volume.shape
    by, bx = min(BOX, ny), min(BOX, nx)
    corners = [(z, y, x)
               for a, b in z_ranges for z in range(a, b - depth + 1, depth)
               for y in range(0, ny - by + 1, by) for x in range(0, nx - bx + 1, bx)]
    rng = np.random.default_rng(seed)
    if len(corners) > limit:
        corners = [corners[i] for i in sorted(rng.choice(len(corners), limit, replace=False))]
    for z, y, x in corners:
        yield np.asarray(volume[z:z + depth, y:y + by, x:x + bx])


def _regularize(weights: np.ndarray) -> np.ndarray:
    """Weights smoothed over neighbouring shells ([1, 2, 1] / 4) and made non-increasing beyond their peak: the
    signal-to-noise ratio of a tomogram falls with frequency, and where both spectra are tiny (a clean network
    output) single shells scatter."""
    padded = np.pad(weights, 1, mode="edge")
    smooth = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    peak = int(np.argmax(smooth))
    smooth[peak:] = np.minimum.accumulate(smooth[peak:])
    return smooth


def estimate_spectra(volume, tilt_range: tuple[float, float] | None = None,
                     corrected: bool = False) -> SpectralEstimate:
    """Noise and specimen spectra of ``volume`` and the Wiener weights (see the module docstring).

    Parameters
    ----------
    volume : ndarray, dask array or zarr array, shape (nz, ny, nx)
        Read box by box (at most ``2 × MAX_BOXES`` boxes of up to BOX² lateral size) after one profile pass.
    tilt_range : (float, float), optional
        The tilt range the tomogram was measured with. A raw tomogram (``corrected`` False) is measured
        only over the coefficients the range sampled (its missing wedge holds neither signal nor noise);
        a wedge-corrected one gets a second set of weights for the filled wedge, whose signal-to-noise
        ratio differs. None: one set of weights over all coefficients.
    corrected : bool
        See ``tilt_range``.

    Raises
    ------
    NoEmptyRegion
        See :func:`empty_slices`.
    """
    empty, specimen = empty_slices(volume)
    depth = min(min(b - a for a, b in empty), 32, specimen[1] - specimen[0])
    by, bx = min(BOX, volume.shape[1]), min(BOX, volume.shape[2])
    regions: list = [None]
    if tilt_range is not None:
        measured = measured_region((depth, by, bx), *tilt_range, rfft=True)
        regions = [measured, ~measured] if corrected else [measured]
    noise, counts = radial_psd(_boxes(volume, empty, depth, MAX_BOXES), regions)
    total, _ = radial_psd(_boxes(volume, [specimen], depth, MAX_BOXES, seed=1), regions)
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = np.clip(1.0 - noise / total, 0.0, 1.0)
    weights[~np.isfinite(weights)] = 1.0
    weights = np.stack([_regularize(w) for w in weights])
    frequency = (np.arange(weights.shape[1]) + 0.5) * SHELL
    wedge = weights[1] if len(regions) == 2 else None
    noise_std = float(np.sqrt(np.nansum(noise * counts)))
    specimen_std = float(np.sqrt(np.nansum(total * counts)))
    return SpectralEstimate(frequency, total[0], noise[0], weights[0], empty, specimen, noise_std, specimen_std,
                            wedge_weights=wedge, tilt_range=tilt_range if wedge is not None else None,
                            wedge_noise=noise[1] if wedge is not None else None,
                            wedge_total=total[1] if wedge is not None else None)


def wiener_kernel(estimate: SpectralEstimate, radius: int = KERNEL_RADIUS) -> np.ndarray:
    """Real-space kernel of the weights, shape (2r+1,)*3, summing to 1 (keeps the mean).

    The weights are interpolated onto the kernel's frequency grid (the wedge's own weights inside the
    missing wedge when the estimate has them), transformed, and cut off with a window of the given
    radius (flat to half of it, then a raised cosine), which also softens the wedge's edges.
    """
    n = 2 * radius + 1
    k = np.sqrt(sum(g * g for g in np.meshgrid(*[np.fft.fftfreq(n)] * 3, indexing="ij")))
    response = np.interp(k, estimate.frequency, estimate.weights, left=1.0)
    if estimate.wedge_weights is not None:
        measured = np.broadcast_to(measured_region((n, n, n), *estimate.tilt_range), k.shape)
        response = np.where(measured, response, np.interp(k, estimate.frequency, estimate.wedge_weights, left=1.0))
    kernel = np.fft.fftshift(np.real(np.fft.ifftn(response)))
    r = np.sqrt(sum(g * g for g in np.meshgrid(*[np.arange(n) - radius] * 3, indexing="ij")))
    taper = np.clip((r - radius / 2) / (radius / 2 + 1), 0.0, 1.0)  # flat to r/2, raised cosine to r
    kernel *= np.where(r <= radius, 0.5 + 0.5 * np.cos(np.pi * taper), 0.0)
    return (kernel / kernel.sum()).astype(np.float32)


def _convolve_block(block: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return signal.fftconvolve(block.astype(np.float32), kernel, mode="same").astype(np.float32)


def apply_kernel(volume, kernel: np.ndarray, chunks: int = 128) -> da.Array:
    """Convolve ``volume`` (nz, ny, nx) with ``kernel`` (odd cube) lazily, symmetric padding at the faces.

    Equals ``fftconvolve(np.pad(volume, r, mode="symmetric"), kernel, mode="valid")`` to float rounding.
    """
    arr = volume.rechunk(chunks) if isinstance(volume, da.Array) else da.from_array(volume, chunks=chunks)
    r = kernel.shape[0] // 2
    if min(arr.shape) <= r:  # an axis thinner than the kernel's radius: in memory (such volumes are small)
        vol = np.pad(np.asarray(arr, dtype=np.float32), r, mode="symmetric")
        return da.from_array(signal.fftconvolve(vol, kernel, mode="valid").astype(np.float32), chunks=chunks)
    return arr.map_overlap(_convolve_block, depth=r, boundary="reflect", dtype=np.float32, kernel=kernel)


def wiener_denoise(volume, tilt_range: tuple[float, float] | None, corrected: bool = True,
                   chunks: int = 128) -> tuple[da.Array, SpectralEstimate]:
    """Filter ``volume`` (nz, ny, nx) with the Wiener weights measured on its own empty slices (lazy).

    Returns the filtered volume (dask, float32) and the estimate (log ``estimate.describe()``).
    Raises :class:`NoEmptyRegion` when the volume has no empty slices to measure the noise on.
    """
    estimate = estimate_spectra(volume, tilt_range, corrected)
    return apply_kernel(volume, wiener_kernel(estimate), chunks), estimate
