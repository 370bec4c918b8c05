"""Subtomogram centres drawn inside a mask (and a share anywhere: the background), out of core, and the crops
around them.

Arrays are ZYX. A centre ``c`` on an axis of length ``d`` is valid for a crop of edge ``p``
when the box ``[c - p//2, c - p//2 + p)`` lies inside the volume: ``p//2 <= c <= d - p + p//2``
(IsoNet 0.2's rule).
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np

logger = logging.getLogger(__name__)


def valid_box(shape: tuple[int, ...], crop: int) -> tuple[tuple[int, int], ...]:
    """Per axis, the half-open range of valid centres for a crop of edge ``crop``."""
    return tuple((crop // 2, d - crop + crop // 2 + 1) for d in shape)


def count_valid(mask: da.Array | None, shape: tuple[int, int, int], crop: int) -> int:
    """Number of valid centres: mask voxels (or all voxels) inside the valid box."""
    box = valid_box(shape, crop)
    if any(hi <= lo for lo, hi in box):
        return 0
    if mask is None:
        return int(np.prod([hi - lo for lo, hi in box]))
    inner = mask[tuple(slice(lo, hi) for lo, hi in box)]
    return int((inner != 0).sum().compute())


def sample_centres(mask: da.Array | None, shape: tuple[int, int, int], crop: int, n: int,
                   rng: np.random.Generator, background_share: float = 0.0) -> np.ndarray:
    """Draw ``n`` centres uniformly from the valid voxels, without replacement when there are enough; of them
    ``round(background_share * n)`` uniformly from the whole valid box instead (any voxel whose crop fits inside
    the volume, mask or not). Their crops are real data: mirrored content beyond the faces is never what
    predict sees there (it meets the faces with the network's own padding) and, for an asymmetric tilt range,
    mirroring along Z alone does not even keep the missing wedge's geometry (bench/RESULTS.md).

    Out of core: one pass counts the valid voxels per chunk, a second reads only the
    chunks that hold a chosen voxel.

    Parameters
    ----------
    mask : dask.array.Array or None
        Nonzero where centres may lie, shape ``shape``; None = everywhere.
    shape : tuple of int
        (nz, ny, nx) of the tomogram.
    crop : int
        Edge of the subtomograms (voxels).
    n : int
        Number of centres.
    rng : numpy.random.Generator
    background_share : float
        In [0, 1): the share of centres drawn anywhere in the valid box (the background above and below the
        specimen too), so that training sees what predict corrects there; 0: IsoNet 0.2's rule only.

    Returns
    -------
    numpy.ndarray
        int64, shape (n, 3), (z, y, x) voxel indices, sorted by their draw order.

    Raises
    ------
    ValueError
        If there is no valid centre.
    """
    anywhere = min(int(round(background_share * n)), n - 1, int(np.prod(shape)))
    if anywhere > 0:
        outside = sample_centres(None, shape, crop, anywhere, rng).astype(np.int64)
        inside = sample_centres(mask, shape, crop, n - anywhere, rng)
        return np.concatenate([outside, inside])[rng.permutation(n)]
    box = valid_box(shape, crop)
    if any(hi <= lo for lo, hi in box):
        raise ValueError(f"volume {shape} is smaller than the crop {crop} along an axis")
    if mask is None:
        sizes = [hi - lo for lo, hi in box]
        total = int(np.prod(sizes))
        flat = rng.choice(total, size=n, replace=total < n)
        return np.stack(np.unravel_index(flat, sizes), axis=1) + np.array([lo for lo, _ in box])
    inner = (mask[tuple(slice(lo, hi) for lo, hi in box)] != 0)
    counts = inner.map_blocks(lambda b: np.array(b.sum(), ndmin=3), dtype=np.int64,
                              chunks=tuple((1,) * len(c) for c in inner.chunks)).compute()
    total = int(counts.sum())
    if total == 0:
        raise ValueError("the mask leaves no valid centre")
    ranks = np.sort(rng.choice(total, size=n, replace=total < n))
    order = rng.permutation(n)  # the draw order, so that a prefix of the list is itself a random subset
    cum = np.cumsum(counts.ravel())
    block_of = np.searchsorted(cum, ranks, side="right")
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in inner.chunks]
    grid = counts.shape
    out = np.empty((n, 3), dtype=np.int64)
    for block in np.unique(block_of):
        bz, by, bx = np.unravel_index(block, grid)
        chunk = inner.blocks[bz, by, bx].compute()
        local = np.flatnonzero(chunk)
        first = cum[block] - counts.ravel()[block]
        picks = np.flatnonzero(block_of == block)
        coords = np.stack(np.unravel_index(local[ranks[picks] - first], chunk.shape), axis=1)
        out[picks] = coords + np.array([starts[0][bz], starts[1][by], starts[2][bx]]) + np.array(
            [lo for lo, _ in box])
    return out[order]


def read_reflected(source, lo: tuple[int, ...], hi: tuple[int, ...]) -> np.ndarray:
    """``source[lo:hi]`` (float32), indices beyond the edges mirrored with the edge voxel repeated.

    ``source`` is a numpy or Zarr array; the inside part is one contiguous read.
    """
    inner = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, source.shape, strict=False))
    block = np.asarray(source[inner], dtype=np.float32)
    pads = [(max(0, -a), max(0, b - n)) for a, b, n in zip(lo, hi, source.shape, strict=False)]
    return np.pad(block, pads, mode="symmetric") if any(p != (0, 0) for p in pads) else block


def crop_around(volume, centre: np.ndarray, crop: int) -> np.ndarray:
    """The ``crop``³ box around ``centre`` from a numpy or Zarr volume (float32), mirrored beyond the faces
    (:func:`read_reflected`; :func:`sample_centres` keeps every box inside)."""
    start = tuple(int(c) - crop // 2 for c in centre)
    return read_reflected(volume, start, tuple(s + crop for s in start))
