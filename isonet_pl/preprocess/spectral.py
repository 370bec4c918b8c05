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

__all__ = ["SpectralEstimate", "NoNoiseEstimate", "NoEmptyRegion", "refusals", "empty_slices", "estimate_spectra",
           "tilt_axis_noise", "power_ratio", "wiener_kernel", "wiener_denoise", "apply_kernel", "radial_psd",
           "EMPTY_SLICES", "TILT_AXIS"]

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
#: thickest boxes (voxels along Z) of the spectra
MAX_DEPTH = 32
#: the tilt-axis noise model is fitted where |k| is at least this (cycles/voxel; 0.75 of Nyquist): where the
#: specimen's power has decayed (bench/RESULTS.md, “Noise without empty slices”)
CORNER = 0.375
#: largest RMS log residual of the tilt-axis model, beyond the statistical scatter, for its estimate to be used
#: (bench/RESULTS.md, “Noise without empty slices”)
MAX_MISFIT = 0.12
#: the statistical scatter of a cell's log mean over m coefficients is about this / sqrt(m) (sine-windowed boxes;
#: measured on pure back-projection-like noise of four volume shapes: 1.02-1.14)
STATISTICAL = 1.15
#: alternating least-squares rounds of the model's fit
MODEL_ITERATIONS = 30


class NoNoiseEstimate(ValueError):
    """No reliable noise estimate: ``reason`` says why (the exception's message), ``fix`` what the user can do."""

    def __init__(self, reason: str, fix: str = ""):
        super().__init__(reason)
        self.fix = fix


def refusals(refused: list[tuple[str, NoNoiseEstimate]], total: int, what: str) -> str:
    """One message for the volumes of a command that no noise estimate could filter: ``"N of M <what> not
    denoised (<names>): no reliable noise estimate (<first name>: <its reason>). Remedy: <its fix>"``.

    ``refused``: (name, exception) per volume, in order; ``what``: how the volumes are called (plural)."""
    name, exc = refused[0]
    names = ", ".join(n for n, _ in refused)
    fix = exc.fix or "reconstruct the tomogram thicker than the specimen"
    return (f"{len(refused)} of {total} {what} not denoised ({names}): no reliable noise estimate ({name}: {exc}). "
            f"Remedy: {fix}")


class NoEmptyRegion(NoNoiseEstimate):
    """The tomogram has no empty (noise-only) slices above or below the specimen to measure noise on."""


@dataclass(frozen=True)
class SpectralEstimate:
    """Noise and specimen spectra of one tomogram and the Wiener weights they give.

    Attributes
    ----------
    frequency : ndarray, shape (n_shells,)
        Shell centres, cycles/voxel.
    total, noise : ndarray, shape (n_shells,)
        PSD per voxel of the specimen slices (signal + noise) and of the noise (measured on the empty slices, or
        the tilt-axis model of the specimen slices: ``source``).
    weights : ndarray, shape (n_shells,)
        ``clip(1 − noise/total, 0, 1)``; 1 where a shell has no coefficient.
    empty : tuple of (int, int)
        Z ranges ``[start, stop)`` of the empty slices (empty when the tomogram has none).
    specimen : (int, int)
        Z range measured as specimen.
    noise_std : float
        Real-space standard deviation of the noise over the coefficients measured (the volume's units).
    specimen_std : float
        The same over the specimen slices (signal plus noise); ``empty_share`` is the squared ratio.
    wedge_weights, wedge_noise, wedge_total : ndarray, shape (n_shells,), optional
        The same inside the missing wedge of ``tilt_range`` (a corrected tomogram: the network's fill);
        ``weights`` etc. are then those of the measured region.
    source : str
        :data:`EMPTY_SLICES` or :data:`TILT_AXIS`.
    other_std : float
        ``noise_std`` by the other source where both exist (NaN otherwise), for the log.
    misfit : float
        RMS log residual of the tilt-axis model beyond the statistical scatter (:func:`tilt_axis_noise`): at most
        :data:`MAX_MISFIT` where the model describes the noise.
    plane_correlation : float
        Correlation of the noise of neighbouring Y planes that the tilt-axis model implies (measured region):
        about 0 where weighted back-projection left them independent, 0.5 after a half-voxel linear shift along Y.
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
    source: str = "empty slices"
    other_std: float = float("nan")
    misfit: float = float("nan")
    plane_correlation: float = float("nan")

    @property
    def empty_share(self) -> float:
        """Variance per voxel of the noise over that of the specimen's slices (each box's mean removed): for the
        empty-slice source that of the empty slices, near 1 for a raw tomogram (noise dominates both), near 0 for
        a denoised one."""
        return float((self.noise_std / self.specimen_std) ** 2) if self.specimen_std > 0 else float("nan")

    def describe(self) -> str:
        """One line for the log: where the noise was measured, how, and what the filter keeps."""
        half = np.interp(0.25, self.frequency, self.weights)
        cut = self.frequency[np.argmax(self.weights < 0.5)] if np.any(self.weights < 0.5) else 0.5
        specimen = f"specimen z {self.specimen[0]}-{self.specimen[1] - 1}"
        if self.source == EMPTY_SLICES:
            empty = ", ".join(f"{a}-{b - 1}" for a, b in self.empty)
            where = f"noise measured on empty slices z {empty} ({specimen})"
            other = f", the tilt-axis model gives {self.other_std:.3g}" if np.isfinite(self.other_std) else ""
            share = f"empty slices hold {100 * self.empty_share:.1f} % of the specimen's variance"
        else:
            where = (f"noise from the tilt-axis model of the {specimen} (no empty slices used; fit residual "
                     f"{self.misfit:.3f})")
            other = f", the empty slices give {self.other_std:.3g}" if np.isfinite(self.other_std) else ""
            share = f"noise is {100 * self.empty_share:.1f} % of the specimen's variance"
        return (f"{where}: std {self.noise_std:.3g}{other}; filter keeps half the amplitude up to {cut:.3f} "
                f"cycles/voxel ({half:.2f} at 0.25); {share}")


#: ``SpectralEstimate.source``: the noise measured on the empty slices above and below the specimen
EMPTY_SLICES = "empty slices"
#: ``SpectralEstimate.source``: the noise of the specimen slices from the tilt-axis model (:func:`tilt_axis_noise`)
TILT_AXIS = "tilt axis"


def _profile(volume) -> np.ndarray:
    """Per-Z variance of the 4×4 lateral block mean, shape (nz,) (one lazy pass over the volume)."""
    arr = volume if isinstance(volume, da.Array) else da.from_array(volume, chunks=(16, -1, -1))
    nz, ny, nx = arr.shape
    b = PROFILE_BIN if min(ny, nx) >= 8 * PROFILE_BIN else 1
    arr = arr[:, : ny - ny % b, : nx - nx % b].astype(np.float64)
    if b > 1:
        arr = da.coarsen(np.mean, arr, {1: b, 2: b})
    return np.asarray(arr.var(axis=(1, 2)).compute())


def _layout(volume) -> tuple[tuple[tuple[int, int], ...] | None, tuple[int, int], str]:
    """(empty ranges or None, specimen range, why there are no empty ranges) from the Z profile (see
    :func:`empty_slices`); without empty slices the specimen is every slice but the faces' when the profile shows
    no slab, else the slices at least half-way between floor and peak."""
    prof = _profile(volume)
    nz = prof.size
    prof = np.convolve(np.pad(prof, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    floor = float(np.mean(np.sort(prof)[: max(3, nz // 10)]))  # robust to the profile's own noise
    peak = float(np.max(prof))
    whole = (1, nz - 1) if nz > 2 else (0, nz)
    if not peak > MIN_CONTRAST * floor:
        return None, whole, f"the specimen does not stand out along Z (profile peak {peak:.3g}, floor {floor:.3g})"
    high = np.flatnonzero(prof >= floor + SPECIMEN_LEVEL * (peak - floor))
    specimen = (int(high[0]), int(high[-1]) + 1)
    low = prof <= floor + EMPTY_LEVEL * (peak - floor)
    top = int(np.argmin(low)) if not low.all() else nz  # run of empty slices from z = 0
    bottom = int(np.argmin(low[::-1])) if not low.all() else nz
    # ranges thinner than MIN_RANGE would make the boxes of both spectra that thin: left out
    ranges = [r for r in ((1, top - MARGIN), (nz - bottom + MARGIN, nz - 1)) if r[1] - r[0] >= MIN_RANGE]
    if sum(b - a for a, b in ranges) < MIN_EMPTY:
        return None, specimen, (f"too few empty slices above and below the specimen ({top} + {bottom} of {nz}; "
                                f"need {MIN_EMPTY + 2 * MARGIN + 2})")
    return tuple(ranges), specimen, ""


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
    empty, specimen, reason = _layout(volume)
    if empty is None:
        raise NoEmptyRegion(reason, "reconstruct the tomogram thicker than the specimen")
    return empty, specimen


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


@dataclass
class _Spectra:
    """Power of boxes of one shape per region: in shells of |k| and in cells of (in-plane |(kz, kx)|, |ky|).

    ``psd``: (n_regions, n_shells) mean |F|²/n_voxels per shell (NaN where empty); ``counts``: full-spectrum
    coefficients per shell / n_voxels; ``cell_psd``, ``cell_counts``: (n_regions, n_plane, n_ky) the same per cell
    (counts in coefficients); ``link``: (n_regions, n_shells, n_plane * n_ky) coefficients shared by a shell and a
    cell; ``plane``, ``ky``: the cells' frequencies (cycles/voxel)."""

    psd: np.ndarray
    counts: np.ndarray
    cell_psd: np.ndarray
    cell_counts: np.ndarray
    link: np.ndarray
    plane: np.ndarray
    ky: np.ndarray
    boxes: int = 1

    def to_shells(self, cells: np.ndarray) -> np.ndarray:
        """A spectrum per cell (n_regions, n_plane, n_ky) averaged onto the shells of |k|: (n_regions, n_shells)."""
        flat = np.nan_to_num(cells.reshape(cells.shape[0], -1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.einsum("rsc,rc->rs", self.link, flat) / self.link.sum(axis=2)
        out[self.link.sum(axis=2) == 0] = np.nan
        return out


def _spectra(boxes, regions=(None,)) -> _Spectra:
    """Accumulate the power of ``boxes`` (each mean-subtracted and sine-windowed) per region (see :class:`_Spectra`)."""
    total = cells = None
    number = 0
    for box in boxes:
        box = np.asarray(box, dtype=np.float64)
        if total is None:
            shape = box.shape
            index, n = _shells(shape)
            kz = np.fft.fftfreq(shape[0])[:, None, None]
            kx = np.fft.rfftfreq(shape[2])[None, None, :]
            n_plane = int(np.ceil(np.sqrt(0.5) / SHELL)) + 1
            plane = np.broadcast_to(np.minimum((np.sqrt(kz * kz + kx * kx) / SHELL).astype(int), n_plane - 1),
                                    index.shape)
            n_ky = shape[1] // 2 + 1
            ky = np.broadcast_to(np.abs(np.rint(np.fft.fftfreq(shape[1]) * shape[1])).astype(int)[None, :, None],
                                 index.shape)
            cell = plane * n_ky + ky
            mult = np.full(index.shape[-1], 2.0)  # the rfft half-spectrum stands for both halves
            mult[0] = 1.0
            if shape[2] % 2 == 0:
                mult[-1] = 1.0
            weight = np.broadcast_to(mult, index.shape)
            keeps = [(index >= 0) & (True if r is None else np.broadcast_to(r, index.shape)) for r in regions]
            window = _window(shape)
            total = np.zeros((len(regions), n))
            cells = np.zeros((len(regions), n_plane * n_ky))
        f = np.fft.rfftn((box - box.mean()) * window)
        power = (f.real**2 + f.imag**2) / box.size * weight
        for i, keep in enumerate(keeps):
            total[i] += np.bincount(index[keep], weights=power[keep], minlength=n)
            cells[i] += np.bincount(cell[keep], weights=power[keep], minlength=n_plane * n_ky)
        number += 1
    if total is None:
        raise ValueError("no boxes to measure a spectrum on")
    coeffs = np.stack([np.bincount(index[keep], weights=weight[keep], minlength=n) for keep in keeps])
    cell_coeffs = np.stack([np.bincount(cell[keep], weights=weight[keep], minlength=n_plane * n_ky) for keep in keeps])
    link = np.stack([np.bincount(index[keep] * (n_plane * n_ky) + cell[keep], weights=weight[keep],
                                 minlength=n * n_plane * n_ky).reshape(n, n_plane * n_ky) for keep in keeps])
    with np.errstate(invalid="ignore", divide="ignore"):
        psd = total / (number * coeffs)
        cell_psd = cells / (number * cell_coeffs)
    psd[coeffs == 0] = np.nan
    cell_psd[cell_coeffs == 0] = np.nan
    shape3 = (len(regions), n_plane, n_ky)
    return _Spectra(psd, coeffs / np.prod(shape), cell_psd.reshape(shape3), cell_coeffs.reshape(shape3), link,
                    (np.arange(n_plane) + 0.5) * SHELL, np.arange(n_ky) / shape[1], number)


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
    spectra = _spectra(boxes, regions)
    return spectra.psd, spectra.counts


def tilt_axis_noise(cell_psd: np.ndarray, cell_counts: np.ndarray, plane: np.ndarray,
                    ky: np.ndarray, boxes: int = 1) -> tuple[np.ndarray, float]:
    """The noise spectrum of a tomogram's specimen slices without empty slices: the tilt-axis model.

    Weighted back-projection reconstructs each plane across the tilt axis (Y) from its own rows of the tilt
    series, so the noise of different Y planes is independent: its power spectrum is a function ``A`` of the
    in-plane frequency ``r = |(kz, kx)|`` (the back-projection filter and the tilts' density), flat along
    ``ky`` — times ``T(ky)`` where a filter or interpolation along Y (binning, alignment) shaped it. The
    specimen's spectrum falls with ``|k|``. So ``A(r)·T(ky)`` is fitted (least squares on the logarithm) to
    the cells where ``|k|² = r² + ky² ≥ CORNER²``, which hold noise only, and extrapolated to the others: the
    high-``ky`` cells give ``A`` at every ``r``, the high-``r`` cells give ``T`` at every ``ky``.

    Parameters
    ----------
    cell_psd, cell_counts : ndarray, shape (n_plane, n_ky)
        Mean PSD per voxel and coefficients per cell (:class:`_Spectra`, one region).
    plane, ky : ndarray, shapes (n_plane,), (n_ky,)
        The cells' in-plane and |ky| frequencies, cycles/voxel.
    boxes : int
        Boxes the cells were averaged over (sets the statistical scatter of the fit).

    Returns
    -------
    noise : ndarray, shape (n_plane, n_ky)
        The model's noise PSD per cell (0 where the fit has no data).
    misfit : float
        RMS of the log residual over the cells fitted beyond the scatter their sizes give (a cell's mean over
        ``m`` coefficients scatters by about ``STATISTICAL / sqrt(m)`` in the log): about 0 for a back-projection's
        noise, larger where the noise is not of this form or the specimen has power up to Nyquist.
    """
    corner = (plane[:, None] ** 2 + ky[None, :] ** 2) >= CORNER**2
    use = corner & (cell_counts > 0) & np.isfinite(cell_psd) & (cell_psd > 0)
    w = np.where(use, cell_counts, 0.0)
    logp = np.log(np.where(use, cell_psd, 1.0))
    a = np.zeros(plane.size)
    t = np.zeros(ky.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(MODEL_ITERATIONS):  # alternating least squares of a rank-one fit in the log domain
            a = np.sum(w * (logp - t[None, :]), axis=1) / np.sum(w, axis=1)
            a = np.where(np.isfinite(a), a, 0.0)
            t = np.sum(w * (logp - a[:, None]), axis=0) / np.sum(w, axis=0)
            t = np.where(np.isfinite(t), t, 0.0)
    if not np.sum(w) > 0:
        return np.zeros_like(cell_psd, dtype=np.float64), float("inf")
    residual = (logp - a[:, None] - t[None, :]) * (w > 0)
    rms = np.sqrt(np.sum(w * residual**2) / np.sum(w))
    # a complex coefficient's power is exponentially distributed; the rfft half stands for both of each ±k pair
    scatter = STATISTICAL * np.sqrt(np.sum(w * 2.0 / (np.maximum(cell_counts, 1e-12) * boxes)) / np.sum(w))
    fitted = (np.sum(w, axis=1) > 0)[:, None] & (np.sum(w, axis=0) > 0)[None, :]
    return np.where(fitted, np.exp(a[:, None] + t[None, :]), 0.0), float(np.sqrt(max(rms**2 - scatter**2, 0.0)))


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
                     corrected: bool = False, source: str = "auto") -> SpectralEstimate:
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
    source : str
        Where the noise comes from: ``auto`` (the empty slices where the tomogram has them, else the tilt-axis
        model of its specimen slices, :func:`tilt_axis_noise`), ``empty`` or ``tilt_axis``. The estimate not
        used is computed too where it exists, for the log (``other_std``).

    Raises
    ------
    NoNoiseEstimate
        ``empty``: the tomogram has no empty slices (:class:`NoEmptyRegion`); otherwise: the tilt-axis model
        does not describe the specimen slices' spectrum (fit residual above :data:`MAX_MISFIT`) where there
        are no empty slices to fall back on (the exception says why and what to do).
    """
    if source not in ("auto", "empty", "tilt_axis"):
        raise ValueError(f"source must be auto, empty or tilt_axis, got {source!r}")
    empty, specimen, reason = _layout(volume)
    if empty is None and source == "empty":
        raise NoEmptyRegion(reason, "reconstruct the tomogram thicker than the specimen")
    thickness = specimen[1] - specimen[0]
    depth = min(min(b - a for a, b in empty) if empty else MAX_DEPTH, MAX_DEPTH, thickness)
    by, bx = min(BOX, volume.shape[1]), min(BOX, volume.shape[2])
    regions: list = [None]
    if tilt_range is not None:
        measured = measured_region((depth, by, bx), *tilt_range, rfft=True)
        regions = [measured, ~measured] if corrected else [measured]
    spectra = _spectra(_boxes(volume, [specimen], depth, MAX_BOXES, seed=1), regions)
    total, counts = spectra.psd, spectra.counts
    model, misfits = [], []
    for i in range(len(regions)):
        cells, misfit = tilt_axis_noise(spectra.cell_psd[i], spectra.cell_counts[i], spectra.plane, spectra.ky,
                                        spectra.boxes)
        model.append(cells)
        misfits.append(misfit)
    axis_noise = spectra.to_shells(np.stack(model))
    misfit = float(max(misfits))
    weight = model[0] * spectra.cell_counts[0]
    plane_correlation = float(np.sum(weight * np.cos(2 * np.pi * spectra.ky)[None, :]) / np.sum(weight)) \
        if np.sum(weight) > 0 else float("nan")
    empty_noise = radial_psd(_boxes(volume, empty, depth, MAX_BOXES), regions)[0] if empty else None
    if empty_noise is not None and source != "tilt_axis":
        noise, used, other = empty_noise, EMPTY_SLICES, axis_noise if misfit <= MAX_MISFIT else None
    else:
        if misfit > MAX_MISFIT:
            raise NoNoiseEstimate(
                (f"{reason or 'not asked to use the empty slices'}, and the tilt-axis noise model does not fit the "
                 f"specimen slices (residual {misfit:.2f}, at most {MAX_MISFIT} expected): the noise is not that of a "
                 "weighted back-projection along the tilt axis Y (a filtered or processed tomogram?), or the "
                 "specimen has power up to Nyquist"),
                "reconstruct the tomogram thicker than the specimen (empty slices above and below it), from the "
                "raw tilt series with the tilt axis along Y")
        noise, used, other = axis_noise, TILT_AXIS, empty_noise
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = np.clip(1.0 - noise / total, 0.0, 1.0)
    weights[~np.isfinite(weights)] = 1.0
    weights = np.stack([_regularize(w) for w in weights])
    frequency = (np.arange(weights.shape[1]) + 0.5) * SHELL
    wedge = weights[1] if len(regions) == 2 else None
    noise_std = float(np.sqrt(np.nansum(noise * counts)))
    other_std = float(np.sqrt(np.nansum(other * counts))) if other is not None else float("nan")
    specimen_std = float(np.sqrt(np.nansum(total * counts)))
    return SpectralEstimate(frequency, total[0], noise[0], weights[0], empty or (), specimen, noise_std, specimen_std,
                            wedge_weights=wedge, tilt_range=tilt_range if wedge is not None else None,
                            wedge_noise=noise[1] if wedge is not None else None,
                            wedge_total=total[1] if wedge is not None else None, source=used, other_std=other_std,
                            misfit=misfit, plane_correlation=plane_correlation)


def power_ratio(volume, reference, tilt_range: tuple[float, float] | None = None,
                band: tuple[float, float] = (0.25, 0.5)) -> float:
    """The power of ``volume`` over that of ``reference`` in a band of |k| (cycles/voxel), over the measured region
    of ``tilt_range`` (all coefficients without one), in the same boxes of the reference's specimen slices.

    Where the specimen has little power (the default band: 0.5–1 of Nyquist) this compares the noise: above 1, a
    corrected tomogram (``volume``) is noisier than its input (``reference``). Both (nz, ny, nx), the same shape.
    """
    _, specimen, _ = _layout(reference)
    depth = min(MAX_DEPTH, specimen[1] - specimen[0])
    by, bx = min(BOX, reference.shape[1]), min(BOX, reference.shape[2])
    regions = [None] if tilt_range is None else [measured_region((depth, by, bx), *tilt_range, rfft=True)]
    psd = [radial_psd(_boxes(v, [specimen], depth, MAX_BOXES, seed=1), regions) for v in (volume, reference)]
    shells = (np.arange(psd[0][0].shape[1]) + 0.5) * SHELL
    keep = (shells >= band[0]) & (shells < band[1])
    power = [float(np.nansum(p[0][0][keep] * p[1][0][keep])) for p in psd]
    return power[0] / power[1] if power[1] > 0 else float("inf")


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
                   chunks: int = 128, source: str = "auto") -> tuple[da.Array, SpectralEstimate]:
    """Filter ``volume`` (nz, ny, nx) with the Wiener weights of its own noise estimate (lazy;
    :func:`estimate_spectra`, ``source`` there).

    Returns the filtered volume (dask, float32) and the estimate (log ``estimate.describe()``).
    Raises :class:`NoNoiseEstimate` when no estimate of the kind asked for is reliable.
    """
    estimate = estimate_spectra(volume, tilt_range, corrected, source)
    return apply_kernel(volume, wiener_kernel(estimate), chunks), estimate
