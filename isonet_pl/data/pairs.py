"""Training pairs of IsoNet's refinement, made on the fly: rotations, wedge re-imposition, noise.

Arrays are ZYX; the tilt axis is Y and the missing wedge lies in the (kz, kx) plane (see
:mod:`isonet_pl.data.wedge` for the sign convention).

For one subtomogram with original data A (normalised, protein bright) and the current
estimate B, the *filled* volume ``C = N(Wmiss(B) + Wmeas(A))`` keeps the measured Fourier
region of the data and takes the wedge from the estimate. A pair is then
``target = R(C)`` and ``input = Wmeas(R(C))`` (the wedge imposed again in the lab frame on
the rotated volume), both centre-cropped from the crop size p to the cube size c, plus noise
in the input only (SPEC §6.4).

A rotation R is either an index into IsoNet's 20 rotations by 90° (:data:`ROTATIONS`, exact: the voxels
are permuted) or a 3×3 rotation matrix drawn uniformly from all rotations (:func:`random_rotation`, as
DeepDeWedge), applied by cubic-spline interpolation about the centre of the cube.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import scipy.ndimage

from isonet_pl.data.wedge import _negated_index, apply_wedge, measured_directions, measured_region

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


Rotation = int | np.ndarray  # an index into ROTATIONS, or a (3, 3) rotation matrix acting on (z, y, x) offsets


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation drawn uniformly from all 3-D rotations (a normalised 4-D Gaussian quaternion), as a (3, 3)
    float64 matrix R that moves a voxel offset d (z, y, x) from the centre to R d (det R = +1)."""
    w, a, b, c = rng.standard_normal(4)
    n = np.sqrt(w * w + a * a + b * b + c * c)
    w, a, b, c = w / n, a / n, b / n, c / n
    return np.array([[1 - 2 * (b * b + c * c), 2 * (a * b - c * w), 2 * (a * c + b * w)],
                     [2 * (a * b + c * w), 1 - 2 * (a * a + c * c), 2 * (b * c - a * w)],
                     [2 * (a * c - b * w), 2 * (b * c + a * w), 1 - 2 * (a * a + b * b)]])


def draw_rotation(kind: str, rng: np.random.Generator) -> Rotation:
    """A random rotation of ``kind`` (refine --rotations): an index into :data:`ROTATIONS` for ``cube``
    (one integer drawn from ``rng``, as before continuous rotations existed), a matrix for ``continuous``."""
    if kind == "continuous":
        return random_rotation(rng)
    return int(rng.integers(len(ROTATIONS)))


def rotate(vol: np.ndarray, rotation: Rotation, crop: int | None = None) -> np.ndarray:
    """Rotate a cubic volume about its centre: by rotation ``index`` (0..19) of :data:`ROTATIONS` (a view when
    possible), or by a (3, 3) rotation matrix R (cubic spline; out(x) = vol(Rᵀ(x − c) + c), values beyond
    the faces mirrored; float32). With ``crop``: only the central ``crop``³ of the result
    (:func:`centre_crop`), which for a matrix is all that is interpolated."""
    if not isinstance(rotation, np.ndarray):
        for k, axes in ROTATIONS[rotation]:
            vol = np.rot90(vol, k, axes)
        return vol if crop is None else centre_crop(vol, crop)
    size = vol.shape[0] if crop is None else crop
    centre = (np.asarray(vol.shape, dtype=np.float64) - 1) / 2
    start = np.full(3, vol.shape[0] // 2 - size // 2, dtype=np.float64)
    back = rotation.T
    offset = centre + back @ (start - centre)
    return scipy.ndimage.affine_transform(np.asarray(vol, dtype=np.float32), back, offset=offset,
                                          output_shape=(size,) * 3, order=3, mode="reflect", output=np.float32)


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
    return crop_at(vol, size)


def make_pair(filled: np.ndarray, rotation: Rotation, tilt_range: tuple[float, float], cube: int, noise_level: float,
              noise_mode: NoiseMode, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training pair from a filled subtomogram (SPEC §6.4 steps 4–6).

    Parameters
    ----------
    filled : numpy.ndarray
        (p, p, p) float32, the filled volume C.
    rotation : int or numpy.ndarray
        Index into :data:`ROTATIONS`, or a rotation matrix (:func:`rotate`).
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


def loss_regions(size: int, tilt_min: float, tilt_max: float, rotation: Rotation) -> np.ndarray:
    """:func:`split_regions` for an index into :data:`ROTATIONS` (cached), :func:`split_regions_rotated` for a
    rotation matrix."""
    if isinstance(rotation, np.ndarray):
        return split_regions_rotated(size, tilt_min, tilt_max, rotation)
    return split_regions(size, tilt_min, tilt_max, int(rotation))


def split_regions_rotated(size: int, tilt_min: float, tilt_max: float, rotation: np.ndarray) -> np.ndarray:
    """The two loss regions of :func:`split_regions` for any rotation matrix R: the target is measured where
    M(Rᵀk) (the wedge's rule evaluated at the rotated, off-grid frequency; a coefficient counts only if its
    conjugate −k does too, so the self-conjugate planes stay consistent), the input where M(k).
    float32 of shape (2, size, size, size//2+1)."""
    lab = measured_region((size,) * 3, tilt_min, tilt_max, rfft=True)
    k = np.fft.fftfreq(size)
    grid = np.stack(np.meshgrid(k, k, k, indexing="ij"))  # (3, size, size, size), full layout
    source = np.tensordot(rotation.T, grid, axes=(1, 0))  # Rᵀ k
    rotated = measured_directions(source[0], source[2], tilt_min, tilt_max)
    rotated &= _negated_index(rotated, axes=(0, 1, 2))  # and at −k
    rotated = rotated[..., : size // 2 + 1]
    return np.stack([lab & rotated, rotated & ~lab]).astype(np.float32)


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


def crop_at(vol: np.ndarray, size: int, offset: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """The ``size``³ of a cube whose start is :func:`centre_crop`'s moved by ``offset`` (voxels, z, y, x).

    Raises
    ------
    ValueError
        When the window would reach beyond the cube.
    """
    start = [vol.shape[0] // 2 - size // 2 + int(o) for o in offset]
    if min(start) < 0 or max(start) + size > vol.shape[0]:
        raise ValueError(f"a {size}³ window at offset {tuple(offset)} does not fit in a {vol.shape[0]}³ cube")
    return vol[start[0]:start[0] + size, start[1]:start[1] + size, start[2]:start[2] + size]


def make_n2n_pair(filled_halves: np.ndarray, rotation: Rotation, swap: bool, tilt_range: tuple[float, float],
                  cube: int, wedge_target: str = "half",
                  offset: tuple[int, int, int] = (0, 0, 0), alpha: float = 1.0) -> tuple[np.ndarray, ...]:
    """An even/odd training pair: input = one half (wedge imposed again after the rotation), target = the other.

    Parameters
    ----------
    filled_halves : numpy.ndarray
        (2, p, p, p) float32, both halves with their wedges filled by the current estimate.
    rotation : int or numpy.ndarray
        Index into :data:`ROTATIONS`, or a rotation matrix (:func:`rotate`); applied to both halves.
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
    alpha : float
        In (0, 1]: recorrupt the pair (Pang et al. 2021, "Recorrupted-to-Recorrupted") so the input's noise
        is below one half's. With the average m = (a + b)/2 and the difference d = (a − b)/2 (whose noise
        is independent of m's for halves of equal, independent noise of variance σ²), the input is
        m + α d (noise variance σ²(1 + α²)/2) and the target m − d/α (σ²(1 + 1/α²)/2); their noises are
        uncorrelated. 1: the halves themselves. The wedge target (region 1, coefficients the input lacks)
        stays the other half (``half``) or the average, and is then always returned.

    Returns
    -------
    (input, target, regions) or (input, target, regions, wedge target)
        (c, c, c), (c, c, c), the (2, c, c, c//2+1) loss regions of :func:`split_regions`, and for
        ``wedge_target="average"`` or ``alpha < 1`` the (c, c, c) target of region 1.
    """
    a, b = (filled_halves[1], filled_halves[0]) if swap else (filled_halves[0], filled_halves[1])
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    if alpha < 1:
        mean, diff = 0.5 * (a + b), 0.5 * (a - b)
        wedge_goal = b if wedge_target == "half" else mean
        a, b = mean + alpha * diff, mean - diff / alpha
        rot_goal = rotate(wedge_goal, rotation, cube) if not any(offset) else \
            crop_at(np.asarray(rotate(wedge_goal, rotation)), cube, offset)
    rot_a = np.ascontiguousarray(rotate(a, rotation))
    inp = crop_at(apply_wedge(rot_a, wedge_mask(a.shape[0], *tilt_range)), cube, offset)
    target = rotate(b, rotation, cube) if not any(offset) else crop_at(np.asarray(rotate(b, rotation)), cube, offset)
    out = (np.ascontiguousarray(inp, dtype=np.float32), np.ascontiguousarray(target, dtype=np.float32),
           loss_regions(cube, float(tilt_range[0]), float(tilt_range[1]), rotation))
    if alpha < 1:
        out += (np.ascontiguousarray(rot_goal, dtype=np.float32),)
    elif wedge_target == "average":
        out += (np.ascontiguousarray(0.5 * (crop_at(rot_a, cube, offset) + target), dtype=np.float32),)
    return out
