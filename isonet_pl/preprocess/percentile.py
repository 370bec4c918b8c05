"""Exact percentiles of large (dask) arrays, computed out of core.

:func:`dask.array.percentile` is approximate and 1-D only. IsoNet thresholds its mask
criteria at ``np.percentile(x, q)`` (numpy's default ``"linear"`` method), which is an
interpolation between two order statistics of the flattened array. This module finds
those order statistics exactly with a few streaming passes, each holding only one block
and a histogram in memory:

1. one pass for the minimum, the maximum and a NaN check;
2. one pass with a fine histogram (:data:`N_BINS` bins over ``[min, max]``) per order
   statistic, which tells the bin holding it and how many values lie below that bin;
3. one pass gathering only the values of those bins, then :func:`numpy.partition`.

A bin holding more than :data:`GATHER_LIMIT` values (heavily tied or heavy-tailed data)
is split again by another histogram pass restricted to it, until it is small enough or
all its values are equal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import dask
import dask.array as da
import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["exact_percentile", "exact_percentiles", "N_BINS", "GATHER_LIMIT"]

#: Histogram bins per pass.
N_BINS = 1 << 16
#: Largest number of values gathered into memory for one order statistic.
GATHER_LIMIT = 1 << 22
#: Histogram refinements before gathering whatever the bin holds.
_MAX_LEVELS = 8
#: Partial results merged per task in the hand-built tree reductions.
_FAN_IN = 8

# A selection is a chain of (lo, scale, n_bins, bin) filters: a value x is kept when, for
# every filter, clip(floor((x - lo) * scale), 0, n_bins - 1) == bin. The bin index is a
# non-decreasing function of x, so values in lower bins are never larger than values in
# higher bins, which is all the counting below relies on (values just outside a nominal
# range, from rounding, fall into the end bins and keep their order).
_Chain = tuple[tuple[float, float, int, int], ...]


def _bin_index(x: np.ndarray, lo: float, scale: float, n_bins: int) -> np.ndarray:
    idx = np.floor((x - lo) * scale)
    np.clip(idx, 0, n_bins - 1, out=idx)
    return idx.astype(np.intp)


def _scale(lo: float, hi: float) -> float:
    """Bins per unit value for ``N_BINS`` bins over ``[lo, hi]`` (inf when it cannot split)."""
    if not hi > lo:
        return math.inf
    width = hi - lo
    if math.isinf(width):  # e.g. [-1e308, 1e308] in float64
        return (N_BINS / 2) / (hi / 2 - lo / 2)
    return N_BINS / width


def _select(block: np.ndarray, chain: _Chain) -> np.ndarray:
    """Values of ``block`` (flattened, original dtype) that pass every filter of ``chain``."""
    values = block.ravel()
    for lo, scale, n_bins, b in chain:
        keep = _bin_index(values.astype(np.float64), lo, scale, n_bins) == b
        values = values[keep]
    return values


def _block_histograms(block, chains, ranges):
    """Per chain: histogram of the selected values over its range, their count, min, max."""
    out = []
    for chain, (lo, scale) in zip(chains, ranges, strict=True):
        values = _select(np.asarray(block), chain).astype(np.float64)
        hist = np.bincount(_bin_index(values, lo, scale, N_BINS), minlength=N_BINS).astype(np.int64)
        if values.size:
            out.append((hist, values.min(), values.max()))
        else:
            out.append((hist, math.inf, -math.inf))
    return out


def _merge_histograms(*parts):
    merged = []
    for per_chain in zip(*parts, strict=True):
        hist = per_chain[0][0].copy()
        for h, _, _ in per_chain[1:]:
            hist += h
        merged.append((hist, min(p[1] for p in per_chain), max(p[2] for p in per_chain)))
    return merged


def _tree_reduce(parts: list, merge):
    """Combine delayed partial results ``_FAN_IN`` at a time and compute the root."""
    if not parts:
        raise ValueError("no blocks")
    while len(parts) > 1:
        parts = [dask.delayed(merge)(*parts[i:i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)]
    return dask.compute(parts[0])[0]


def _histogram_pass(blocks: list, chains: list[_Chain], ranges: list[tuple[float, float]]):
    parts = [dask.delayed(_block_histograms)(b, chains, ranges) for b in blocks]
    if len(parts) == 1:
        return dask.compute(parts[0])[0]
    return _tree_reduce(parts, _merge_histograms)


def _gather_pass(blocks: list, chains: list[_Chain]) -> list[np.ndarray]:
    def gather(block, chains):
        return [_select(np.asarray(block), chain) for chain in chains]

    per_block = dask.compute(*[dask.delayed(gather)(b, chains) for b in blocks])
    return [np.concatenate([p[i] for p in per_block]) for i in range(len(chains))]


def _order_statistics(arr: da.Array, ranks: Sequence[int], vmin, vmax, lo: float, hi: float
                      ) -> dict[int, np.generic]:
    """The values of rank ``k`` (0-based, ascending) of the flattened array for each k.

    ``vmin``/``vmax`` are the array's extremes, ``[lo, hi]`` the range of the first histogram.
    """
    blocks = list(arr.to_delayed().ravel())
    dtype = arr.dtype
    found: dict[int, np.generic] = {}
    # pending: rank -> (chain, rank within the chain's selection, lo, hi)
    pending = {}
    for k in ranks:
        if k == 0:
            found[k] = vmin
        elif k == arr.size - 1:
            found[k] = vmax
        else:
            pending[k] = ((), k, lo, hi)
    to_gather: dict[int, tuple[_Chain, int]] = {}
    for level in range(_MAX_LEVELS):
        if not pending:
            break
        chains = sorted({chain for chain, _, _, _ in pending.values()})
        ranges = {}
        for chain in chains:
            lo, hi = next((p[2], p[3]) for p in pending.values() if p[0] == chain)
            scale = _scale(lo, hi)
            ranges[chain] = (lo, scale)
        if any(not math.isfinite(scale) for _, scale in ranges.values()):
            # The bin cannot be split further in float64: gather it as it is.
            for k, (chain, local, _, _) in list(pending.items()):
                if not math.isfinite(ranges[chain][1]):
                    to_gather[k] = (chain, local)
                    del pending[k]
            continue
        stats = _histogram_pass(blocks, chains, [ranges[c] for c in chains])
        logger.debug("percentile histogram pass %d for %d selection(s)", level, len(chains))
        by_chain = dict(zip(chains, stats, strict=True))
        for k, (chain, local, _, _) in list(pending.items()):
            hist, smin, smax = by_chain[chain]
            del pending[k]
            if smin == smax and (dtype.kind == "f" or abs(smin) < 2.0**53):
                # Every selected value is the same (exactly representable): that is it.
                found[k] = dtype.type(smin)
                continue
            lo, scale = ranges[chain]
            cum = np.cumsum(hist)
            b = int(np.searchsorted(cum, local, side="right"))
            below = int(cum[b - 1]) if b > 0 else 0
            new_chain = chain + ((lo, scale, N_BINS, b),)
            new_local = local - below
            if hist[b] <= GATHER_LIMIT or level == _MAX_LEVELS - 1:
                to_gather[k] = (new_chain, new_local)
            else:
                pending[k] = (new_chain, new_local, lo + b / scale, lo + (b + 1) / scale)
    for k, (chain, local, _, _) in pending.items():
        to_gather[k] = (chain, local)
    if to_gather:
        chains = sorted({chain for chain, _ in to_gather.values()})
        values = dict(zip(chains, _gather_pass(blocks, chains), strict=True))
        logger.debug("percentile gather pass: %s values", [v.size for v in values.values()])
        for k, (chain, local) in to_gather.items():
            found[k] = np.partition(values[chain], local)[local]
    return found


def _virtual_index(n: int, q: float) -> tuple[int, int, float]:
    """numpy's 'linear' method: the two neighbouring ranks and the weight between them."""
    # Mirrors numpy's arithmetic step by step (q / 100 in float64, times n - 1; the
    # clamped indices, -1 meaning the last, enter the weight) so that the interpolated
    # value is bit-identical to np.percentile's.
    virtual = (n - 1) * np.true_divide(q, 100)
    previous = float(np.floor(virtual))
    nxt = previous + 1
    if virtual >= n - 1:
        previous = nxt = -1.0
    if virtual < 0:
        previous = nxt = 0.0
    gamma = float(virtual - previous)
    return int(previous) % n, int(nxt) % n, gamma


def _lerp(a, b, gamma: float):
    """numpy's ``_lerp`` for one pair of scalars."""
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1 - gamma)
    return a + diff * gamma


def _exact_percentiles_and_range(arr, qs: Iterable[float]):
    """Percentiles plus the array's min and max (shared by the mask code)."""
    arr = da.asarray(arr)
    qs = [float(q) for q in qs]
    for q in qs:
        if not (0.0 <= q <= 100.0):
            raise ValueError(f"percentile must be in [0, 100], got {q}")
    if arr.size == 0:
        raise ValueError("cannot take a percentile of an empty array")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"percentiles need a real (integer or float) array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        vmin, vmax, has_nan = da.compute(arr.min(), arr.max(), da.isnan(arr).any())
        if has_nan:
            raise ValueError("array contains NaN; percentiles are undefined")
    else:
        vmin, vmax = da.compute(arr.min(), arr.max())
    vmin = arr.dtype.type(vmin)
    vmax = arr.dtype.type(vmax)
    lo, hi = float(vmin), float(vmax)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        # Histogram over the finite values; +-inf fall into the end bins.
        finite = da.where(da.isfinite(arr), arr, np.nan)
        lo, hi = (float(v) for v in da.compute(da.nanmin(finite), da.nanmax(finite)))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo, hi = -1.0, 1.0
    n = int(arr.size)
    plans = [_virtual_index(n, q) for q in qs]
    if vmin == vmax:
        stats = {k: vmin for p in plans for k in p[:2]}
    else:
        ranks = sorted({k for p in plans for k in p[:2]})
        stats = _order_statistics(arr, ranks, vmin, vmax, lo, hi)
    values = [_lerp(stats[prev], stats[nxt], gamma) for prev, nxt, gamma in plans]
    return values, vmin, vmax


def exact_percentiles(arr: da.Array | np.ndarray, qs: Iterable[float]) -> list:
    """Exact percentiles of all elements of an array, for several ``q`` in shared passes.

    Parameters
    ----------
    arr : dask.array.Array or ndarray
        Real-valued array of any shape and chunking; NaN is not allowed.
    qs : iterable of float
        Percentiles in [0, 100].

    Returns
    -------
    list of numpy scalars
        One value per ``q``, each equal to ``np.percentile(np.asarray(arr), q)`` with a
        Python float ``q`` (numpy's ``"linear"`` method; float32 input gives float32,
        integer input float64).

    Raises
    ------
    ValueError
        If ``arr`` is empty or contains NaN, or a ``q`` is outside [0, 100].
    TypeError
        If ``arr`` is complex or not numeric.

    Notes
    -----
    Three streaming passes over ``arr`` in the usual case (min/max, histogram, gather);
    see the module docstring. Persist or store ``arr`` first if it is expensive to
    compute.
    """
    return _exact_percentiles_and_range(arr, qs)[0]


def exact_percentile(arr: da.Array | np.ndarray, q: float):
    """Exact percentile of all elements of an array, computed out of core.

    Parameters
    ----------
    arr : dask.array.Array or ndarray
        Real-valued array of any shape and chunking; NaN is not allowed.
    q : float
        Percentile in [0, 100].

    Returns
    -------
    numpy scalar
        ``np.percentile(np.asarray(arr), q)`` (numpy's ``"linear"`` method), bit for bit.

    Raises
    ------
    ValueError
        If ``arr`` is empty or contains NaN, or ``q`` is outside [0, 100].
    """
    return exact_percentiles(arr, [q])[0]
