"""Lazy (dask) versions of the scipy filters that IsoNet's mask generation uses.

Every filter runs scipy (or plain numpy) on each chunk plus a halo through
:func:`dask.array.map_overlap` with ``boundary="none"``: dask pads nothing at the outer
faces of the array, so the chunks there are simply shorter and scipy's own ``mode``
handles the true array edge. The halo (``depth``) is the filter's half-width on each
axis, so the kernel of every kept voxel lies inside its chunk plus halo and the result
equals the scipy call on the whole array. Chunks smaller than the halo are merged by
dask (``allow_rechunk``) before the overlap is added.

Exactness:

* :func:`gaussian_filter`, :func:`maximum_filter`, :func:`local_std`, :func:`bin2` and
  :func:`upsample2` compute each output voxel from the same inputs in the same order
  whatever the chunking, so chunked and unchunked results are bit-identical.
* :func:`uniform_filter` uses scipy's running sum, whose rounding depends on where a
  line starts; it agrees with scipy to float rounding (about 1e-7 relative), not bit
  for bit.

All arrays are ZYX (any number of axes works for the filters); sizes, widths and
sigmas are in voxels of the array they act on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dask.array as da
import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

__all__ = [
    "gaussian_filter",
    "maximum_filter",
    "uniform_filter",
    "local_std",
    "bin2",
    "upsample2",
]

#: scipy boundary modes that only look at voxels near the edge they extend, so that a
#: chunk touching the array's face can apply them itself. ``wrap`` needs the opposite
#: face and is refused.
_LOCAL_MODES = ("reflect", "mirror", "nearest", "constant", "grid-constant", "grid-mirror")


def _per_axis(value, ndim: int, name: str) -> tuple:
    """Broadcast a scalar or a sequence to one value per axis."""
    if np.ndim(value) == 0:
        return (value,) * ndim
    values = tuple(value)
    if len(values) != ndim:
        raise ValueError(f"{name} needs one value or {ndim} values, got {len(values)}")
    return values


def _check_mode(mode: str) -> None:
    if mode not in _LOCAL_MODES:
        raise ValueError(f"mode {mode!r} is not supported blockwise; use one of {_LOCAL_MODES}")


def _overlap(arr: da.Array, func, depth: Sequence[int], dtype, **kwargs) -> da.Array:
    """``map_overlap`` with a per-axis halo and no padding at the array's faces."""
    depth = {axis: int(d) for axis, d in enumerate(depth)}
    if not any(depth.values()):
        return arr.map_blocks(func, dtype=dtype, **kwargs)
    boundary = {axis: "none" for axis in range(arr.ndim)}
    return arr.map_overlap(func, depth=depth, boundary=boundary, dtype=dtype, **kwargs)


def gaussian_filter(arr: da.Array, sigma, mode: str = "reflect", truncate: float = 4.0) -> da.Array:
    """Gaussian smoothing, equal to :func:`scipy.ndimage.gaussian_filter` on the whole array.

    Parameters
    ----------
    arr : dask.array.Array
        Input of any shape, e.g. a tomogram (Z, Y, X).
    sigma : float or sequence of float
        Standard deviation in voxels, one value or one per axis. Axes with sigma 0 are
        not filtered (as in scipy).
    mode : str, default "reflect"
        scipy's boundary mode at the true array edge (``wrap`` is not supported).
    truncate : float, default 4.0
        Kernel half-width in units of sigma.

    Returns
    -------
    dask.array.Array
        Same shape, chunks and dtype as ``arr`` (integer input is rounded by scipy).

    Notes
    -----
    The halo on each axis is scipy's kernel radius ``int(truncate * sigma + 0.5)``.
    """
    _check_mode(mode)
    sigmas = tuple(float(s) for s in _per_axis(sigma, arr.ndim, "sigma"))
    if any(s < 0 for s in sigmas):
        raise ValueError(f"sigma must be non-negative, got {sigmas}")
    depth = [int(truncate * s + 0.5) if s > 1e-15 else 0 for s in sigmas]
    return _overlap(arr, ndimage.gaussian_filter, depth, arr.dtype,
                    sigma=sigmas, mode=mode, truncate=truncate)


def maximum_filter(arr: da.Array, size, mode: str = "reflect") -> da.Array:
    """Running maximum over a box, equal to :func:`scipy.ndimage.maximum_filter`.

    Parameters
    ----------
    arr : dask.array.Array
        Input of any shape.
    size : int or sequence of int
        Box edge in voxels (one value or one per axis), centred as in scipy.
    mode : str, default "reflect"
        scipy's boundary mode at the true array edge.

    Returns
    -------
    dask.array.Array
        Same shape, chunks and dtype as ``arr``.

    Notes
    -----
    Halo per axis: ``size // 2`` (IsoNet's window ``2·side + 1`` gives ``side``).
    """
    _check_mode(mode)
    sizes = tuple(int(s) for s in _per_axis(size, arr.ndim, "size"))
    if any(s < 1 for s in sizes):
        raise ValueError(f"size must be >= 1, got {sizes}")
    depth = [s // 2 for s in sizes]
    return _overlap(arr, ndimage.maximum_filter, depth, arr.dtype, size=sizes, mode=mode)


def uniform_filter(arr: da.Array, size, mode: str = "constant", cval: float = 0.0) -> da.Array:
    """Box mean, equal (to float rounding) to :func:`scipy.ndimage.uniform_filter`.

    Parameters
    ----------
    arr : dask.array.Array
        Input of any shape.
    size : int or sequence of int
        Box edge in voxels (one value or one per axis).
    mode : str, default "constant"
        scipy's boundary mode at the true array edge.
    cval : float, default 0.0
        Fill value for ``mode="constant"``.

    Returns
    -------
    dask.array.Array
        Same shape, chunks and dtype as ``arr``.

    Notes
    -----
    Halo per axis: ``size // 2``. scipy sums with a running total along each line,
    so values differ from the whole-array call by float rounding only.
    """
    _check_mode(mode)
    sizes = tuple(int(s) for s in _per_axis(size, arr.ndim, "size"))
    if any(s < 1 for s in sizes):
        raise ValueError(f"size must be >= 1, got {sizes}")
    depth = [s // 2 for s in sizes]
    return _overlap(arr, ndimage.uniform_filter, depth, arr.dtype, size=sizes, mode=mode, cval=cval)


def _box_sum(x: np.ndarray, half: int, axis: int) -> np.ndarray:
    """Sum over ``[i - half, i + half]`` along one axis with zeros beyond the block.

    The terms are added in a fixed order (offset −half … +half), so a voxel's sum does not
    depend on where the block starts: this keeps :func:`local_std` chunk-invariant.
    """
    if half == 0:
        return x.copy()
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    padded = np.pad(x, pad)
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, n)
    out = padded[tuple(index)].copy()
    for k in range(1, 2 * half + 1):
        index[axis] = slice(k, k + n)
        out += padded[tuple(index)]
    return out


def _local_std_block(block: np.ndarray, half: tuple[int, ...]) -> np.ndarray:
    """Local std of one block (with halo); float64 inside, float32 out."""
    x = block.astype(np.float64)
    s1 = x
    s2 = x * x
    for axis, h in enumerate(half):
        s1 = _box_sum(s1, h, axis)
        s2 = _box_sum(s2, h, axis)
    # Count of in-bounds voxels: separable, a product of 1-D counts. Inside a block the
    # zero padding is wrong only in the halo, which map_overlap trims; at the array's
    # faces there is no halo and the count is IsoNet's.
    count = np.ones((1,) * x.ndim)
    for axis, h in enumerate(half):
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        ones = np.ones(x.shape[axis])
        count = count * _box_sum(ones, h, 0).reshape(shape)
    var = (s2 - s1 * s1 / count) / count
    np.maximum(var, 0.0, out=var)
    return np.sqrt(var).astype(np.float32)


def local_std(arr: da.Array, size) -> da.Array:
    """Local standard deviation over a box, as IsoNet's mask generation computes it.

    With ``S = Σx``, ``S2 = Σx²`` and ``n`` the number of voxels of the box that lie
    inside the array (the sums use zero padding, so ``n`` is smaller near the faces):
    ``var = (S2 − S²/n) / n``, clipped at 0, and ``std = sqrt(var)``.

    Parameters
    ----------
    arr : dask.array.Array
        Input volume, e.g. the smoothed binned tomogram (Z, Y, X), any real dtype.
    size : int or sequence of int
        Box edge in voxels, odd (IsoNet: ``2·side + 1``).

    Returns
    -------
    dask.array.Array
        float32, same shape and chunks as ``arr``, in the units of ``arr``.

    Notes
    -----
    Sums are formed in float64 inside each block with a fixed summation order, so the
    result does not depend on the chunking. Halo per axis: ``size // 2``.
    """
    sizes = tuple(int(s) for s in _per_axis(size, arr.ndim, "size"))
    if any(s < 1 or s % 2 == 0 for s in sizes):
        raise ValueError(f"size must be odd and >= 1, got {sizes}")
    half = tuple(s // 2 for s in sizes)
    return _overlap(arr, _local_std_block, half, np.float32, half=half)


def _even_chunks(chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk sizes along an even-length axis with every boundary moved up to an even index."""
    bounds = np.cumsum(chunks)
    bounds = np.unique(2 * ((bounds + 1) // 2))
    return tuple(int(c) for c in np.diff(np.concatenate(([0], bounds))) if c > 0)


def _pair_mean_block(block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Mean of neighbouring voxel pairs (2i, 2i+1) along each of ``axes``, in float64."""
    out = block.astype(np.float64)
    for axis in axes:
        even = [slice(None)] * out.ndim
        odd = [slice(None)] * out.ndim
        even[axis] = slice(0, None, 2)
        odd[axis] = slice(1, None, 2)
        out = (out[tuple(even)] + out[tuple(odd)]) * 0.5
    return out


def _resample_axis_linear(arr: da.Array, axis: int, n_out: int) -> da.Array:
    """Linear interpolation along ``axis`` at skimage's resize coordinates (float64)."""
    n_in = arr.shape[axis]
    factor = n_in / n_out
    coords = (np.arange(n_out) + 0.5) * factor - 0.5
    lower = np.floor(coords).astype(np.intp)
    upper = np.minimum(lower + 1, n_in - 1)
    weight = coords - lower
    shape = [1] * arr.ndim
    shape[axis] = n_out
    weight = weight.reshape(shape)
    a = da.take(arr, lower, axis=axis)
    b = da.take(arr, upper, axis=axis)
    return a * (1.0 - weight) + b * weight


def bin2(arr: da.Array) -> da.Array:
    """Bin a volume 2× as IsoNet does with skimage's ``resize(T, shape // 2, anti_aliasing=True)``.

    Parameters
    ----------
    arr : dask.array.Array
        Volume (Z, Y, X), every axis at least 2 voxels long; cast to float32.

    Returns
    -------
    dask.array.Array
        float32 of shape ``arr.shape // 2`` (in binned voxels, each 2× the input voxel).

    Notes
    -----
    What skimage's resize does with order 1, ``mode="reflect"`` and anti-aliasing, for
    an axis of ``n`` input and ``m = n // 2`` output voxels (factor ``f = n / m``):

    1. Gaussian smoothing with ``sigma = (f − 1) / 2`` (0.5 for even ``n``), scipy mode
       ``"mirror"`` (numpy's/skimage's ``"reflect"``), truncate 4, result in float32.
    2. Linear interpolation at input coordinates ``(o + 0.5)·f − 0.5``: for even ``n``
       this is ``2o + 0.5``, the mean of voxels ``2o`` and ``2o + 1``.

    Here step 2 is done axis by axis in float64 and rounded to float32 once. For even
    sizes every weight is 1/2 and the result equals skimage's to float rounding
    (identical in practice); for odd sizes the same coordinates and weights are used,
    and the result can differ from skimage by the last bit. skimage's final clip to the
    input's range is omitted: smoothing and interpolation with non-negative weights that
    sum to one never leave that range.
    """
    if arr.ndim < 1 or any(s < 2 for s in arr.shape):
        raise ValueError(f"bin2 needs every axis >= 2 voxels, got shape {arr.shape}")
    arr = arr.astype(np.float32)
    n_out = tuple(s // 2 for s in arr.shape)
    sigmas = tuple(max(0.0, (n / m - 1.0) / 2.0) for n, m in zip(arr.shape, n_out, strict=True))
    smooth = gaussian_filter(arr, sigmas, mode="mirror", truncate=4.0).astype(np.float64)
    for axis, (n, m) in enumerate(zip(arr.shape, n_out, strict=True)):
        if n % 2:
            smooth = _resample_axis_linear(smooth, axis, m)
    even_axes = tuple(axis for axis, n in enumerate(arr.shape) if n % 2 == 0)
    if even_axes:
        smooth = smooth.rechunk({axis: _even_chunks(smooth.chunks[axis]) for axis in even_axes})
        chunks = tuple(
            tuple(c // 2 for c in smooth.chunks[axis]) if axis in even_axes else smooth.chunks[axis]
            for axis in range(smooth.ndim)
        )
        smooth = smooth.map_blocks(_pair_mean_block, axes=even_axes, chunks=chunks,
                                   dtype=np.float64)
    return smooth.astype(np.float32)


def upsample2(arr: da.Array, shape: Sequence[int]) -> da.Array:
    """Nearest-neighbour 2× upsampling into ``shape``, as IsoNet returns masks to full size.

    Binned voxel ``(a, b, c)`` fills full-resolution voxels ``{2a, 2a+1} × {2b, 2b+1} ×
    {2c, 2c+1}``. Along an axis of odd full size the last slice is left 0 (IsoNet's
    behaviour, SPEC §4.1 step 8).

    Parameters
    ----------
    arr : dask.array.Array
        Binned array, e.g. a mask (Z, Y, X).
    shape : sequence of int
        Full-resolution shape; each entry must be ``2·m`` or ``2·m + 1`` for the binned
        size ``m`` on that axis.

    Returns
    -------
    dask.array.Array
        Array of ``shape`` with the dtype of ``arr``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != arr.ndim or any(s // 2 != m for s, m in zip(shape, arr.shape, strict=True)):
        raise ValueError(f"shape {shape} is not a 2x upsampling of {arr.shape}")
    out = arr
    for axis, size in enumerate(shape):
        out = da.repeat(out, 2, axis=axis)
        if size % 2:
            pad_shape = list(out.shape)
            pad_shape[axis] = 1
            pad_chunks = list(out.chunks)
            pad_chunks[axis] = (1,)
            zeros = da.zeros(tuple(pad_shape), dtype=out.dtype, chunks=tuple(pad_chunks))
            out = da.concatenate([out, zeros], axis=axis)
    return out
