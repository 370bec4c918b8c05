"""Overlap-tile prediction of a tomogram as a dask computation (crop and stitch).

Every chunk of the tomogram is predicted with ``halo`` voxels of context on each side
(``map_overlap``, ``boundary="reflect"``: the edge voxel is repeated, numpy's "symmetric",
IsoNet's padding) and cropped back, so the result is streamed chunk by chunk and the whole
tomogram is never in memory. Normalisation uses fixed statistics (those the network was
trained with), so tiles are normalised alike and de-normalised back to the input's scale
and contrast.
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import torch

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_block(block: np.ndarray, module, offset: float, scale: float, device: str = "cpu") -> np.ndarray:
    """Predict one block (shape (z, y, x), stored contrast) and return it in the same units.

    The block is normalised as in training, ``(-x - offset) / scale``, padded (edge
    replication) to the network's input multiple, run, cropped and mapped back with
    ``-(y * scale + offset)``.
    """
    x = torch.from_numpy(np.ascontiguousarray(-block, dtype=np.float32))
    x = (x - offset) / scale
    multiple = module.net.min_input_multiple
    pads = [(-n) % multiple for n in x.shape]
    x = x[None, None].to(device)
    if any(pads):
        x = torch.nn.functional.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate")
    y = module(x)[0, 0, : block.shape[0], : block.shape[1], : block.shape[2]].float().cpu().numpy()
    return -(y * np.float32(scale) + np.float32(offset))


def read_reflected(source, lo: tuple[int, ...], hi: tuple[int, ...]) -> np.ndarray:
    """``source[lo:hi]`` (float32), indices beyond the edges mirrored with the edge voxel repeated.

    ``source`` is a numpy or Zarr array; the inside part is one contiguous read.
    """
    inner = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, source.shape))
    block = np.asarray(source[inner], dtype=np.float32)
    pads = [(max(0, -a), max(0, b - n)) for a, b, n in zip(lo, hi, source.shape)]
    return np.pad(block, pads, mode="symmetric") if any(p != (0, 0) for p in pads) else block


def _predict_core(source, module, offset: float, scale: float, halo: tuple[int, ...], device: str,
                  block_info=None) -> np.ndarray:
    loc = block_info[None]["array-location"]
    lo = tuple(a - h for (a, _), h in zip(loc, halo))
    hi = tuple(b + h for (_, b), h in zip(loc, halo))
    out = predict_block(read_reflected(source, lo, hi), module, offset, scale, device)
    return out[tuple(slice(h, h + b - a) for (a, b), h in zip(loc, halo))]


def predict_tomogram(arr, module, offset: float, scale: float, chunk: int = 64, halo: int = 16,
                     device: str = "cpu") -> da.Array:
    """Lazily predict a whole tomogram (shape (nz, ny, nx)) with ``module`` in eval mode.

    For a numpy or Zarr array every output block is an independent task that reads its own
    haloed region (memory stays at a few blocks whatever the tomogram's size); a dask array
    (e.g. a lazy result) goes through ``map_overlap``.

    Parameters
    ----------
    arr : numpy.ndarray, zarr.Array or dask.array.Array
        The tomogram, stored contrast.
    module : IsoNetModule
        The trained network (put in eval mode here).
    offset, scale : float
        Normalisation of ``-x`` used in training.
    chunk : int
        Edge of the predicted core of each tile.
    halo : int
        Context on each side, discarded after prediction.
    device : str
        torch device of the network.
    """
    module.eval()
    if not isinstance(arr, da.Array):
        margins = tuple(min(halo, n - 1) for n in arr.shape)
        chunks = da.core.normalize_chunks(tuple(min(chunk, n) for n in arr.shape), arr.shape)
        return da.map_blocks(_predict_core, arr, module, offset, scale, margins, device, dtype=np.float32,
                             chunks=chunks, meta=np.empty((0, 0, 0), np.float32))
    arr = arr.astype(np.float32).rechunk(tuple(min(chunk, n) for n in arr.shape))
    depth = {i: min(halo, n - 1) for i, n in enumerate(arr.shape)}
    return arr.map_overlap(predict_block, depth=depth, boundary="reflect", trim=True, dtype=np.float32,
                           module=module, offset=offset, scale=scale, device=device)
