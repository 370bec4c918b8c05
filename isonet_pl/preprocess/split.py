"""Two halves with independent noise from one tomogram: its planes across the tilt axis, split in two.

Weighted back-projection reconstructs each plane across the tilt axis (each Y plane of a ZYX tomogram) from its
own rows of the tilt series, so the noise of different Y planes is independent (where nothing interpolated along
Y: :func:`isonet_pl.preprocess.spectral.tilt_axis_noise` measures that). Splitting the planes into even and odd
ones, and filling each half's other planes with the mean of their two neighbours in that half, gives two full-size
volumes whose noise is independent of each other's at every voxel and whose signal differs only by that
interpolation (a second derivative along Y): even/odd halves for a Noise2Noise training, from one tomogram.

Arrays are ZYX; the tilt axis is Y.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

__all__ = ["split_planes", "plane_half", "MAX_PLANE_CORRELATION"]

#: the largest correlation of the noise of neighbouring Y planes (measured by the tilt-axis noise model,
#: :attr:`isonet_pl.preprocess.spectral.SpectralEstimate.plane_correlation`) for which a tomogram gets plane halves:
#: 0 after weighted back-projection, 0.5 after a half-voxel linear shift along Y
MAX_PLANE_CORRELATION = 0.2
#: Z slices per block of the lazy halves (each block spans the whole Y and X extent)
SLAB = 16


def split_planes(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The even-plane and odd-plane halves of ``volume`` along Y (see the module docstring).

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx), ny >= 2
        A tomogram (or a block spanning its whole Y extent).

    Returns
    -------
    (even, odd) : tuple of ndarray, each (nz, ny, nx) float32
        ``even`` keeps the planes ``y = 0, 2, 4, …`` and holds the mean of planes ``y − 1`` and ``y + 1`` at the
        odd ones (the one neighbour at a face); ``odd`` the reverse. ``(even + odd) / 2`` is the volume smoothed
        by [1/4, 1/2, 1/4] along Y.
    """
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3 or volume.shape[1] < 2:
        raise ValueError(f"needs a (nz, ny >= 2, nx) volume, got shape {volume.shape}")
    padded = np.concatenate([volume[:, 1:2], volume, volume[:, -2:-1]], axis=1)  # the one neighbour at a face
    neighbours = 0.5 * (padded[:, :-2] + padded[:, 2:])
    even, odd = neighbours.copy(), neighbours.copy()
    even[:, 0::2] = volume[:, 0::2]
    odd[:, 1::2] = volume[:, 1::2]
    return even, odd


def plane_half(volume, k: int) -> da.Array:
    """Half ``k`` (0: even planes, 1: odd) of :func:`split_planes`, lazily, block by block along Z.

    Parameters
    ----------
    volume : dask array or ndarray, shape (nz, ny, nx)
    k : int
        0 or 1.

    Returns
    -------
    dask.array.Array
        float32, shape (nz, ny, nx), in blocks of :data:`SLAB` slices (the whole Y and X extent each, so the
        planes' parity is the tomogram's).
    """
    if k not in (0, 1):
        raise ValueError(f"k must be 0 or 1, got {k}")
    arr = volume if isinstance(volume, da.Array) else da.from_array(volume)
    arr = arr.rechunk({0: SLAB, 1: -1, 2: -1})
    return arr.map_blocks(lambda block: split_planes(block)[k], dtype=np.float32)
