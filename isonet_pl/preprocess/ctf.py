"""Contrast transfer function and IsoNet's Wiener-like deconvolution curve.

Pure array maths, no file I/O. Conventions (SPEC §3):

* Spatial frequencies ``s`` are in Å⁻¹; the Nyquist frequency of a pixel size ``a`` (Å) is
  ``1 / (2 a)``.
* Defocus is in Å, **underfocus positive**. Voltage in kV, spherical aberration Cs in mm.
* Phase ``w(s) = (π/2)·Cs·λ³·s⁴ − π·λ·Δf·s² − φ`` and
  ``CTF(s) = −sqrt(1 − A²)·sin(w) + A·cos(w)``, so ``CTF(0) = +A`` and the first lobe is
  positive for underfocus. No envelope (B-factor 0), no phase flipping.

The 1-D deconvolution curve reproduces IsoNet 0.2 (a Warp-style filter): 2048 samples on the
normalised grid ``g_k = k/(n−1)`` (fraction of Nyquist), with the CTF sampled at
``s_k = k/(2·n·a)``; the two grids are paired by index, exactly as IsoNet does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "Microscope",
    "electron_wavelength",
    "ctf_1d",
    "wiener_filter_1d",
    "ctf_2d",
    "apply_ctf",
]


@dataclass(frozen=True)
class Microscope:
    """The microscope values that shape the CTF (one per tomogram: STAR columns or options).

    Attributes
    ----------
    voltage_kv : float
        Acceleration voltage in kV (``_rlnVoltage``, ``--voltage``).
    cs_mm : float
        Spherical aberration in mm (``_rlnSphericalAberration``, ``--cs``).
    amplitude_contrast : float
        Amplitude contrast fraction A in [0, 1) (``_rlnAmplitudeContrast``; IsoNet 0.2: fixed 0.07).
    phase_shift_deg : float
        Phase-plate phase shift φ in degrees (``_rlnPhaseShift``; IsoNet 0.2: fixed 0).

    Raises
    ------
    ValueError
        For a non-finite value, a voltage ≤ 0, a negative Cs or A outside [0, 1).
    """

    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    phase_shift_deg: float = 0.0

    def __post_init__(self) -> None:
        values = asdict(self)
        bad = [k for k, v in values.items() if not math.isfinite(float(v))]
        if bad:
            raise ValueError(f"{bad[0]} must be finite, got {values[bad[0]]}")
        if self.voltage_kv <= 0:
            raise ValueError(f"voltage_kv must be positive, got {self.voltage_kv}")
        if self.cs_mm < 0:
            raise ValueError(f"cs_mm must not be negative, got {self.cs_mm}")
        if not 0.0 <= self.amplitude_contrast < 1.0:
            raise ValueError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast}")

    def describe(self) -> str:
        """``300 kV, Cs 2.7 mm, amplitude contrast 0.07, phase shift 0°`` (for logs)."""
        return (f"{self.voltage_kv:g} kV, Cs {self.cs_mm:g} mm, amplitude contrast {self.amplitude_contrast:g}, "
                f"phase shift {self.phase_shift_deg:g}°")


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength.

    Parameters
    ----------
    voltage_kv : float
        Acceleration voltage in kV (e.g. 300).

    Returns
    -------
    float
        Wavelength λ in Å (about 0.019687 Å at 300 kV).
    """
    if voltage_kv <= 0:
        raise ValueError(f"voltage_kv must be positive, got {voltage_kv}")
    volts = float(voltage_kv) * 1e3
    return 12.2643247 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts))


def ctf_1d(
    freq_per_angstrom: np.ndarray,
    defocus_angstrom: float,
    microscope: Microscope = Microscope(),
) -> np.ndarray:
    """Evaluate the (envelope-free) CTF at given spatial frequencies.

    Parameters
    ----------
    freq_per_angstrom : ndarray
        Spatial frequencies ``s`` in Å⁻¹, any shape (only ``|s|`` matters).
    defocus_angstrom : float
        Defocus Δf in Å, underfocus positive.
    microscope : Microscope
        Voltage, Cs, amplitude contrast A and phase shift φ (default: 300 kV, 2.7 mm, 0.07, 0°).

    Returns
    -------
    ndarray
        CTF values, float64, same shape as ``freq_per_angstrom``; ``CTF(0) = A`` when φ = 0.
    """
    s2 = np.square(np.asarray(freq_per_angstrom, dtype=np.float64))
    lam = electron_wavelength(microscope.voltage_kv)
    cs_angstrom = microscope.cs_mm * 1e7
    phase = (
        0.5 * np.pi * cs_angstrom * lam**3 * s2 * s2
        - np.pi * lam * defocus_angstrom * s2
        - np.deg2rad(microscope.phase_shift_deg)
    )
    a = microscope.amplitude_contrast
    return -np.sqrt(1.0 - a * a) * np.sin(phase) + a * np.cos(phase)


def wiener_filter_1d(
    pixel_size_angstrom: float,
    defocus_angstrom: float,
    snrfalloff: float,
    deconvstrength: float,
    highpassnyquist: float = 0.02,
    microscope: Microscope = Microscope(),
    n_samples: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """IsoNet 0.2's Wiener-like CTF deconvolution curve (SPEC §3.2).

    Parameters
    ----------
    pixel_size_angstrom : float
        Pixel size ``a`` in Å.
    defocus_angstrom : float
        Defocus in Å, underfocus positive (STAR ``rlnDefocus``).
    snrfalloff : float
        How fast the assumed SNR falls with frequency: ``exp(−100·snrfalloff·g/a)``.
    deconvstrength : float
        Overall SNR scale, ``10**deconvstrength``.
    highpassnyquist : float, default 0.02
        Width ``h`` of the cosine high-pass, as a fraction of Nyquist.
    microscope : Microscope
        See :func:`ctf_1d`.
    n_samples : int, default 2048
        Number of samples of the curve.

    Returns
    -------
    g : ndarray, shape (n_samples,)
        Normalised frequency ``k/(n_samples−1)``, from 0 to 1 (1 = Nyquist).
    wiener : ndarray, shape (n_samples,)
        Filter ``W = CTF / (CTF² + 1/SNR)``, float64, with
        ``SNR = exp(−100·snrfalloff·g/a)·10**deconvstrength·H(g) + 1e−6`` and
        ``H(g) = 1 − cos(π·min(1, g/h))`` (rises to 2, not 1). The CTF of sample ``k`` is
        evaluated at ``s_k = k/(2·n_samples·a)`` Å⁻¹ (IsoNet pairs the two grids by index).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2, got {n_samples}")
    if pixel_size_angstrom <= 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")
    if highpassnyquist <= 0:
        raise ValueError(f"highpassnyquist must be positive, got {highpassnyquist}")
    k = np.arange(n_samples, dtype=np.float64)
    g = k / (n_samples - 1)
    highpass = 1.0 - np.cos(np.pi * np.minimum(1.0, g / highpassnyquist))
    snr = (
        np.exp(-100.0 * snrfalloff * g / pixel_size_angstrom)
        * 10.0**deconvstrength
        * highpass
        + 1e-6
    )
    s = k / (2.0 * n_samples * pixel_size_angstrom)
    ctf = ctf_1d(s, defocus_angstrom, microscope)
    wiener = ctf / (ctf * ctf + 1.0 / snr)
    return g, wiener


def _radial_frequency_2d(shape_yx: tuple[int, int], pixel_size_angstrom: float) -> np.ndarray:
    """|s| in Å⁻¹ on the rfft2 grid of an image of shape (ny, nx); shape (ny, nx//2+1)."""
    ny, nx = (int(n) for n in shape_yx)
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    return np.sqrt(fy * fy + fx * fx) / pixel_size_angstrom


def ctf_2d(
    shape_yx: tuple[int, int],
    pixel_size_angstrom: float,
    defocus_angstrom: float,
    microscope: Microscope = Microscope(),
) -> np.ndarray:
    """Radially symmetric (astigmatism-free) CTF on the ``numpy.fft.rfft2`` grid.

    Parameters
    ----------
    shape_yx : tuple of int
        Image shape (ny, nx) in pixels.
    pixel_size_angstrom : float
        Pixel size in Å.
    defocus_angstrom : float
        Defocus in Å, underfocus positive.
    microscope : Microscope
        See :func:`ctf_1d`.

    Returns
    -------
    ndarray, shape (ny, nx//2 + 1)
        CTF in unshifted rfft2 order (zero frequency at ``[0, 0]``), float64.
    """
    return ctf_1d(_radial_frequency_2d(shape_yx, pixel_size_angstrom), defocus_angstrom, microscope)


def apply_ctf(
    images: np.ndarray,
    pixel_size_angstrom: float,
    defocus_angstrom: float,
    microscope: Microscope = Microscope(),
) -> np.ndarray:
    """Convolve images with the CTF (multiply their 2-D spectra by :func:`ctf_2d`).

    The image is treated as periodic (no padding); the CTF's point-spread function is only a
    few pixels wide at typical tomography pixel sizes, so wrap-around is negligible.

    Parameters
    ----------
    images : ndarray, shape (..., ny, nx)
        One image or a stack (e.g. a tilt series (n_tilts, ny, nx)).
    pixel_size_angstrom, defocus_angstrom : float
        See :func:`ctf_2d`.
    microscope : Microscope
        See :func:`ctf_1d`.

    Returns
    -------
    ndarray, shape (..., ny, nx), float32
        CTF-modulated images. The mean is scaled by ``CTF(0) = A`` (0.07 by default).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim < 2:
        raise ValueError(f"images must have at least 2 dimensions, got shape {images.shape}")
    ny, nx = images.shape[-2:]
    ctf = ctf_2d((ny, nx), pixel_size_angstrom, defocus_angstrom, microscope).astype(np.float32)
    spectrum = np.fft.rfft2(images, axes=(-2, -1))
    out = np.fft.irfft2(spectrum * ctf, s=(ny, nx), axes=(-2, -1))
    return out.astype(np.float32, copy=False)
