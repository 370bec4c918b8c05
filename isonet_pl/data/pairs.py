"""Training pairs of IsoNet's refinement, made on the fly: rotations, wedge re-imposition, noise.

Arrays are ZYX; the tilt axis is Y and the missing wedge lies in the (kz, kx) plane (see
:mod:`isonet_pl.data.wedge` for the sign convention).

For one subtomogram with original data A (normalised, protein bright) and the current
estimate B, the *filled* volume ``C = N(Wmiss(B) + Wmeas(A))`` keeps the measured Fourier
region of the data and takes the wedge from the estimate. A pair is then
``target = R(C)`` and ``input = Wmeas(R(C))`` (the wedge imposed again in the lab frame on
the rotated volume), both centre-cropped from the crop size p to the cube size c, plus noise
in the input only (SPEC §6.4).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from isonet_pl.data.wedge import apply_wedge, measured_region

#: IsoNet 0.2's 20 rotations (SPEC §6.4.1): each a pair of ``np.rot90`` steps (k, axes), applied in
#: order. All 24 proper 90° rotations of the cube except the 4 that leave the wedge in place.
ROTATIONS: tuple[tuple[tuple[int, tuple[int, int]], tuple[int, tuple[int, int]]], ...] = (
    ((1, (0, 1)), (0, (1, 2))), ((1, (0, 1)), (1, (1, 2))), ((1, (0, 2)), (0, (1, 2))), ((1, (0, 2)), (1, (1, 2))),
    ((1, (0, 1)), (2, (1, 2))), ((1, (0, 1)), (3, (1, 2))), ((1, (0, 2)), (2, (1, 2))), ((1, (0, 2)), (3, (1, 2))),
    ((3, (0, 1)), (0, (1, 2))), ((3, (0, 1)), (1, (1, 2))), ((3, (0, 2)), (0, (1, 2))), ((3, (0, 2)), (1, (1, 2))),
    ((3, (0, 1)), (2, (1, 2))), ((3, (0, 1)), (3, (1, 2))), ((3, (0, 2)), (2, (1, 2))), ((3, (0, 2)), (3, (1, 2))),
    ((1, (1, 2)), (0, (0, 2))), ((1, (1, 2)), (2, (0, 2))), ((3, (1, 2)), (0, (0, 2))), ((3, (1, 2)), (2, (0, 2))),
)

NoiseMode = str  # "noFilter" (IsoNet's default: unfiltered back-projection), "ramp" or "hamming"


def rotate(vol: np.ndarray, index: int) -> np.ndarray:
    """Apply rotation ``index`` (0..19) of :data:`ROTATIONS` to a cubic volume (a view when possible)."""
    for k, axes in ROTATIONS[index]:
        vol = np.rot90(vol, k, axes)
    return vol


@functools.lru_cache(maxsize=32)
def wedge_mask(size: int, tilt_min: float, tilt_max: float) -> np.ndarray:
    """Measured region of a ``size``³ cube in rfft layout (float32, shape (size, 1, size//2+1))."""
    return measured_region((size, size, size), tilt_min, tilt_max, rfft=True).astype(np.float32)


@functools.lru_cache(maxsize=32)
def noise_filter(size: int, tilt_min: float, tilt_max: float, mode: NoiseMode) -> np.ndarray:
    """Amplitude filter (rfft layout) of back-projected noise: the wedge and the filter's |k| response.

    Back-projecting independent white noise per Y plane from the tilts in the range gives a
    spectrum confined to the measured region, flat along ky, with power ~ F(r)² / r in the
    (kz, kx) plane (r = radial frequency there, F = the back-projection filter: 1 for
    IsoNet's ``noFilter``, r for ``ramp``, r·Hamming for ``hamming``), as IsoNet's 1000
    pre-computed volumes have (SPEC §6.7), made here per pair in one FFT.
    """
    kz = np.fft.fftfreq(size)[:, None, None]
    kx = np.fft.rfftfreq(size)[None, None, :]
    r = np.sqrt(kz**2 + kx**2)
    r[0, 0, 0] = 1.0 / size
    if mode == "ramp":
        power = r
    elif mode == "hamming":
        power = r * (0.54 + 0.46 * np.cos(np.pi * np.minimum(r / 0.5, 1.0))) ** 2
    else:
        power = 1.0 / r
    amp = np.sqrt(power) * wedge_mask(size, tilt_min, tilt_max)
    return np.broadcast_to(amp, (size, size, size // 2 + 1)).astype(np.float32)


def wedge_noise(size: int, tilt_min: float, tilt_max: float, mode: NoiseMode, rng: np.random.Generator) -> np.ndarray:
    """A ``size``³ noise cube with the tomogram's wedge and back-projection texture, unit std."""
    white = rng.standard_normal((size, size, size), dtype=np.float32)
    spectrum = scipy.fft.rfftn(white)
    spectrum *= noise_filter(size, tilt_min, tilt_max, mode)
    noise = scipy.fft.irfftn(spectrum, s=(size,) * 3).astype(np.float32, copy=False)
    return noise / np.float32(noise.std() + 1e-12)


def centre_crop(vol: np.ndarray, size: int) -> np.ndarray:
    """The central ``size``³ of a cube (IsoNet: start p//2 - c//2)."""
    start = vol.shape[0] // 2 - size // 2
    return vol[start:start + size, start:start + size, start:start + size]


def make_pair(filled: np.ndarray, rotation: int, tilt_range: tuple[float, float], cube: int, noise_level: float,
              noise_mode: NoiseMode, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training pair from a filled subtomogram (SPEC §6.4 steps 4–6).

    Parameters
    ----------
    filled : numpy.ndarray
        (p, p, p) float32, the filled volume C.
    rotation : int
        Index into :data:`ROTATIONS`.
    tilt_range : tuple of float
        The tomogram's (tilt_min, tilt_max), degrees.
    cube : int
        Edge c of the training cubes.
    noise_level : float
        Std of the added noise in normalised units (0 = none).
    noise_mode : str
        ``noFilter``, ``ramp`` or ``hamming``.
    rng : numpy.random.Generator

    Returns
    -------
    (input, target) : tuple of numpy.ndarray
        Each (c, c, c) float32.
    """
    target_full = np.ascontiguousarray(rotate(filled, rotation))
    inp = centre_crop(apply_wedge(target_full, wedge_mask(filled.shape[0], *tilt_range)), cube)
    target = centre_crop(target_full, cube)
    if noise_level > 1e-7:
        inp = inp + np.float32(noise_level) * wedge_noise(cube, *tilt_range, noise_mode, rng)
    return np.ascontiguousarray(inp, dtype=np.float32), np.ascontiguousarray(target, dtype=np.float32)


def noise_schedule(iterations: int, levels: tuple[float, ...], starts: tuple[int, ...]) -> np.ndarray:
    """IsoNet's noise level per iteration (index = iteration number, 0 unused), SPEC §6.8."""
    schedule = np.zeros(iterations + 1)
    for i, (level, start) in enumerate(zip(levels, starts, strict=False)):
        end = starts[i + 1] if i + 1 < len(starts) else iterations + 1
        schedule[start:end] = level
    return schedule


@functools.lru_cache(maxsize=32)
def rotation_matrix(index: int) -> np.ndarray:
    """The signed permutation P of rotation ``index``: a voxel offset d (z, y, x) from the centre moves to P d."""
    n = 5
    columns = []
    for axis in range(3):
        vol = np.zeros((n, n, n))
        pos = [2, 2, 2]
        pos[axis] = 4
        vol[tuple(pos)] = 1
        columns.append((np.argwhere(rotate(vol, index))[0] - 2) // 2)
    return np.stack(columns, axis=1).astype(int)


@functools.lru_cache(maxsize=256)
def split_regions(size: int, tilt_min: float, tilt_max: float, rotation: int) -> np.ndarray:
    """The two loss regions of an even/odd pair, rfft layout, float32 of shape (2, size, size, size//2+1).

    The input is measured in the lab-frame region M; the target (the other half, rotated) is
    measured in R(M) (the spectrum rotates with the volume: R(M)(k) = M(P^T k)). Region 0 is
    measured in both (M and R(M)); region 1 only in the target (R(M) outside M: the input's
    wedge, which the network has to fill). The target's own wedge is in neither.
    """
    lab = np.broadcast_to(measured_region((size,) * 3, tilt_min, tilt_max), (size,) * 3)
    m = np.fft.fftfreq(size, 1.0 / size).round().astype(int)  # signed frequency indices
    grid = np.stack(np.meshgrid(m, m, m, indexing="ij"))  # (3, size, size, size): k' (z, y, x)
    source = np.tensordot(rotation_matrix(rotation).T, grid, axes=(1, 0)) % size  # P^T k', as indices
    rotated = lab[source[0], source[1], source[2]]
    half = size // 2 + 1
    both = (lab & rotated)[..., :half]
    target_only = (rotated & ~lab)[..., :half]
    return np.stack([both, target_only]).astype(np.float32)


def make_n2n_pair(filled_halves: np.ndarray, rotation: int, swap: bool, tilt_range: tuple[float, float],
                  cube: int, wedge_target: str = "half") -> tuple[np.ndarray, ...]:
    """An even/odd training pair: input = one half (wedge imposed again after the rotation), target = the other.

    Parameters
    ----------
    filled_halves : numpy.ndarray
        (2, p, p, p) float32, both halves with their wedges filled by the current estimate.
    rotation : int
        Index into :data:`ROTATIONS` (applied to both halves).
    swap : bool
        Use the odd half as input and the even one as target.
    tilt_range : tuple of float
        Degrees.
    cube : int
        Edge of the training cubes.
    wedge_target : str
        ``half``: the other half is the target everywhere. ``average``: also return the average of
        both halves as the target of the input's wedge (region 1). The input holds none of those
        Fourier coefficients of its own half, so the average's noise there is independent of the
        input (up to the crop's leakage) and has half the variance of one half's.

    Returns
    -------
    (input, target, regions) or (input, target, regions, wedge target)
        (c, c, c), (c, c, c), the (2, c, c, c//2+1) loss regions of :func:`split_regions`, and for
        ``wedge_target="average"`` the (c, c, c) average.
    """
    a, b = (filled_halves[1], filled_halves[0]) if swap else (filled_halves[0], filled_halves[1])
    rot_a = np.ascontiguousarray(rotate(a, rotation))
    inp = centre_crop(apply_wedge(rot_a, wedge_mask(a.shape[0], *tilt_range)), cube)
    rot_b = rotate(b, rotation)
    target = centre_crop(rot_b, cube)
    out = (np.ascontiguousarray(inp, dtype=np.float32), np.ascontiguousarray(target, dtype=np.float32),
           split_regions(cube, float(tilt_range[0]), float(tilt_range[1]), rotation))
    if wedge_target == "average":
        out += (np.ascontiguousarray(0.5 * (centre_crop(rot_a, cube) + target), dtype=np.float32),)
    return out
