"""Batch-norm statistics measured at the size of predict's tiles (test-time recalibration).

A batch norm's running statistics are averages of its input's per-channel mean and variance. Refine measures
them on training cubes (32³ by default), whose deepest level is a few voxels all next to the zero padding;
predict runs the network on tiles several times larger, where the same channels have other statistics. On two
even/odd runs of bench/RESULTS.md the checkpoint scored 0.01-0.03 higher through tiles of the training cube's
size, and as high at predict's large tiles once the statistics were measured again, from the halves, on inputs
of the tiles' size. :func:`adapt_batch_norm` does that: it runs the network over tiles laid out as predict's
(core + context, the network's own padding at the tomogram's faces) with every batch norm normalising with the
tile's own statistics and averaging them into its running statistics.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from isonet_pl.model.batchnorm import batch_norms, collecting_batch_norm
from isonet_pl.normalization import Normalization
from isonet_pl.predict.predictor import read_reflected, run_network, tile_region

logger = logging.getLogger(__name__)

#: Tiles of each source (e.g. each half) the statistics are averaged over, spread evenly over the tomogram
#: (all of its tiles when it has fewer). Each tile holds millions of voxels per channel, so a few give the
#: means and variances closely; the cost is that of predicting this many tiles per source.
ADAPT_TILES = 8


def tile_boxes(shape: tuple[int, int, int], core: int, halo: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(lo, hi) zyx corners of the region each of predict's tiles reads from a (nz, ny, nx) tomogram, in the
    order of its blocks (z slowest): cores of edge ``core`` (the last one of an axis shorter), with ``halo``
    voxels of context where the tomogram has them (:func:`isonet_pl.predict.predictor.tile_region`)."""
    margins = tuple(min(halo, n - 1) for n in shape)
    starts = [range(0, n, min(core, n)) for n in shape]
    boxes = []
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                loc = [(a, min(a + min(core, n), n)) for a, n in zip((z, y, x), shape, strict=True)]
                boxes.append(tile_region(loc, margins, shape))
    return boxes


def spread(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices evenly spread over ``range(n)`` (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


@torch.no_grad()
def adapt_batch_norm(module, sources: list, norm: Normalization, core: int, halo: int, device: str = "cpu",
                     precision: str = "32", tiles: int = ADAPT_TILES) -> int:
    """Set the running statistics of ``module``'s batch norms to their average over tiles of ``sources``.

    Parameters
    ----------
    module : IsoNetModule
        The trained network, on ``device``; its weights do not change, its batch norms' buffers do.
    sources : list of numpy.ndarray or zarr.Array
        Volumes of the tomogram's shape (nz, ny, nx), stored contrast (e.g. its even and odd halves).
    norm : Normalization
        The normalisation predict applies to the tomogram (applied to every source alike).
    core, halo : int
        Predict's tile plan (voxels), :func:`isonet_pl.predict.predictor.tile_plan`.
    tiles : int
        Tiles per source, spread evenly over the tomogram (:data:`ADAPT_TILES`).

    Returns
    -------
    int
        The number of tiles the statistics were averaged over (0: the module has no batch norm, nothing done).
    """
    if not batch_norms(module) or not sources:
        return 0
    boxes = tile_boxes(tuple(sources[0].shape), core, halo)
    chosen = [boxes[k] for k in spread(len(boxes), tiles)]
    with collecting_batch_norm(module):
        for source in sources:
            for lo, hi in chosen:
                run_network(module, norm.apply(read_reflected(source, lo, hi))[None], device, precision)
    return len(chosen) * len(sources)
