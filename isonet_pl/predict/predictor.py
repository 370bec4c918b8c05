"""Overlap-tile prediction of a tomogram as a dask computation (crop and stitch).

Every chunk of the tomogram is predicted with ``halo`` voxels of context on each side where the
tomogram has them (at its faces the network's own padding takes over, as in one whole-volume
forward; a lazy dask input goes through ``map_overlap`` with mirrored edges instead) and cropped
back, so the result is streamed chunk by chunk and the whole tomogram is never in memory.
Normalisation uses fixed statistics (those the network was trained with), so tiles are
normalised alike and de-normalised back to the input's scale and contrast.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import dask.array as da
import numpy as np
import torch

from isonet_pl.data.extraction import read_reflected
from isonet_pl.normalization import Normalization
from isonet_pl.system import cache_dir, cpu_features, cpu_name, native_bf16

logger = logging.getLogger(__name__)

#: torch autocast dtype of each precision setting (refine --precision, predict --precision); None: float32.
AUTOCAST = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
#: Memory (bytes) the activations of one tile may take when predict's --cube_size is unset, by device type
#: (on a GPU at most half of its free memory): tiles as large as fit, so that the context around each core
#: costs little (bench/RESULTS.md).
TILE_MEMORY = {"cpu": 6 << 30, "cuda": 16 << 30}
#: Axes (of a ZYX block) of the flips that map a single-axis tilt series about Y onto itself for any tilt range:
#: none, Y (ky → −ky), Z with X ((kz, kx) → (−kz, −kx), the same line through the origin) and all three.
#: predict's --flips N averages the network's outputs over the first N.
FLIPS = ((), (1,), (0, 2), (0, 1, 2))
#: Largest and smallest default tile core edges (voxels).
TILE_CORE_RANGE = (64, 512)
#: Peak memory of a forward pass in bytes per voxel and per first-level channel (float32 activations of the
#: first level alive at once: a block's input and output, the skip, the concatenation): 32.5 measured for a
#: depth-3 network of 16 base channels on a 96³ block (peak RSS, this CPU).
BYTES_PER_VOXEL_CHANNEL = 33
#: Context on each side of a tile's core when --crop_size is unset, as a fraction of the network's receptive
#: radius (rounded up to its input multiple): chosen with bench/perf/tiles.py (bench/RESULTS.md).
CONTEXT_FRACTION = 0.25
#: File in the machine's cache folder that keeps precision auto's measured choices (:func:`fastest_precision`).
PRECISION_CACHE = "precision.json"
#: How much faster (fraction) one precision must run for the choice to be kept in the machine's cache.
CLEAR_MARGIN = 0.15


def tile_plan(net, device: str, cube_size: int | None = None, crop_size: int | None = None) -> tuple[int, int]:
    """(core, halo) of the prediction tiles for ``net`` (a UNet3D) on ``device``.

    The halo is :data:`CONTEXT_FRACTION` of the network's receptive radius, or ``(crop_size - core) // 2``
    when both sizes are given; the core is ``cube_size``, else ``crop_size`` minus the two halos when
    only ``crop_size`` is given (IsoNet's tile edge), else the largest whose tile's activations fit
    :data:`TILE_MEMORY` of the device (:func:`default_core`). Both are rounded to the network's input
    multiple, so every tile starts on the network's sampling grid.
    """
    multiple = net.min_input_multiple
    up = lambda n: -(-int(n) // multiple) * multiple  # noqa: E731
    halo = up(CONTEXT_FRACTION * net.receptive_radius)
    if cube_size:
        core = up(cube_size)
        halo = up(max(crop_size - core, 0) // 2) if crop_size else halo
    elif crop_size:
        core = up(max(crop_size - 2 * halo, multiple))
        halo = up(max(crop_size - core, 0) // 2)
    else:
        core = default_core(net, device, halo)
    return core, halo


def default_core(net, device: str, halo: int) -> int:
    """The largest tile core (a multiple of the network's input multiple, within :data:`TILE_CORE_RANGE`)
    whose tile, core + 2 × ``halo``, keeps the activations within the device's memory for one tile."""
    kind = torch.device(device).type
    budget = TILE_MEMORY.get(kind, TILE_MEMORY["cpu"])
    if kind == "cuda":
        budget = min(budget, torch.cuda.mem_get_info(torch.device(device))[0] // 2)
    edge = (budget / (BYTES_PER_VOXEL_CHANNEL * net.base_channels)) ** (1 / 3)
    multiple = net.min_input_multiple
    core = int(edge - 2 * halo) // multiple * multiple
    lo, hi = TILE_CORE_RANGE
    return min(max(core, lo), hi)


def _precision_key(module, device: str, edge: int) -> str:
    """What the speed of float32 against bf16 depends on: the CPU (model and features), torch and its threads,
    the network's layers (names and shapes of its weights) and the timed block's edge."""
    import hashlib

    layers = ";".join(f"{k}:{tuple(v.shape)}" for k, v in module.state_dict().items())
    net = hashlib.sha1(layers.encode()).hexdigest()[:16]
    return (f"{cpu_name()} [{cpu_features()}] | {torch.device(device).type} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads | net {net} | {edge}^3")


def _cached_precisions() -> tuple[Path | None, dict]:
    """The cache file of measured precision choices (None where there is no cache folder) and its entries
    ({} where missing or unreadable)."""
    import json

    folder = cache_dir()
    if folder is None:
        return None, {}
    path = folder / PRECISION_CACHE
    try:
        entries = json.loads(path.read_text())
        return path, entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return path, {}


def _remember_precision(key: str, entry: dict) -> None:
    """Add ``entry`` to the cache file (written to a unique temporary name, then renamed over it); skipped,
    logged, where there is no cache folder or it cannot be written."""
    import json
    import os
    import tempfile

    path, entries = _cached_precisions()
    if path is None:
        return
    entries[key] = entry
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        logger.debug("precision choice not cached (%s)", exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


@torch.no_grad()
def fastest_precision(module, device: str, edge: int = 48, repeats: int = 2, cache: bool = True) -> str:
    """``32`` or ``bf16-mixed``, whichever runs ``module`` faster on ``device``, logged.

    On a CPU without bf16 instructions (where bf16 is emulated, several times slower) float32 without timing;
    with them, both timed on an ``edge``³ block after two warm-up calls each (bf16 kernels are made on the
    first calls for a shape), the two alternating ``repeats`` times and the fastest call of each compared, so
    that a busy machine slows both alike (about a second in all). A clear choice (one at least
    :data:`CLEAR_MARGIN` faster) is kept in the machine's cache (:func:`isonet_pl.system.cache_dir`, file
    :data:`PRECISION_CACHE`) under the CPU, torch, its threads and the network's layers, so later commands with
    the same network skip the timing (unless not ``cache``; delete the file to time again); a close one is
    timed again next time. On a GPU ``bf16-mixed`` where supported, else ``16-mixed``.
    """
    import datetime
    import time

    if torch.device(device).type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if native_bf16() is False:
        logger.info("precision auto: 32 (this CPU has no bf16 instructions)")
        return "32"
    edge = -(-edge // module.net.min_input_multiple) * module.net.min_input_multiple
    key = _precision_key(module, device, edge)
    path, entries = _cached_precisions() if cache else (None, {})
    known = entries.get(key)
    if isinstance(known, dict) and known.get("precision") in ("32", "bf16-mixed"):
        logger.info("precision auto: %s (float32 %.2f s, bf16 %.2f s per %d³ block, measured %s; cached in %s)",
                    known["precision"], known.get("float32_s", math.nan), known.get("bf16_s", math.nan), edge,
                    known.get("measured", "earlier"), path)
        return known["precision"]
    block = np.random.default_rng(0).normal(size=(edge,) * 3).astype(np.float32)
    precisions = ("32", "bf16-mixed")
    for precision in precisions:
        for _ in range(2):
            predict_block(block, module, Normalization.unit(), device, precision)
    seconds = {p: float("inf") for p in precisions}
    for _ in range(repeats):
        for precision in precisions:
            t0 = time.perf_counter()
            predict_block(block, module, Normalization.unit(), device, precision)
            seconds[precision] = min(seconds[precision], time.perf_counter() - t0)
    best = min(seconds, key=seconds.get)
    logger.info("precision auto: %s (float32 %.2f s, bf16 %.2f s per %d³ block)", best, seconds["32"],
                seconds["bf16-mixed"], edge)
    if cache and max(seconds.values()) >= (1 + CLEAR_MARGIN) * min(seconds.values()):
        _remember_precision(key, {"precision": best, "float32_s": round(seconds["32"], 4),
                                  "bf16_s": round(seconds["bf16-mixed"], 4),
                                  "measured": datetime.date.today().isoformat()})
    return best


@torch.no_grad()
def run_network(module, batch: np.ndarray, device="cpu", precision: str = "32") -> np.ndarray:
    """The network on a batch of volumes in its own units (normalised), shape (b, z, y, x) → (b, z, y, x) float32.

    The one inference path of refine's refill and of predict: the batch is padded (edge replication, at the far
    side of each axis) to the network's input multiple, run under autocast for a mixed ``precision``, and
    cropped back. The module's mode (eval or train) is the caller's.
    """
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(device)
    shape = batch.shape[1:]
    multiple = module.net.min_input_multiple
    pads = [(-n) % multiple for n in shape]
    if any(pads):
        x = torch.nn.functional.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate")
    dtype = AUTOCAST[precision]
    with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
        return module(x)[:, 0, : shape[0], : shape[1], : shape[2]].float().cpu().numpy()


def run_flipped(module, block: np.ndarray, device="cpu", precision: str = "32", flips: int = 1) -> np.ndarray:
    """:func:`run_network` on one normalised block (shape (z, y, x)), averaged over the first ``flips`` of
    :data:`FLIPS` (test-time augmentation: each flip applied to the input and undone on the output)."""
    out = None
    for axes in FLIPS[:flips]:
        x = np.ascontiguousarray(np.flip(block, axes)) if axes else block
        y = run_network(module, x[None], device, precision)[0]
        y = np.flip(y, axes) if axes else y
        out = y if out is None else out + y
    return out if flips == 1 else np.ascontiguousarray(out / flips, dtype=np.float32)


def predict_block(block: np.ndarray, module, norm: Normalization, device: str = "cpu",
                  precision: str = "32", flips: int = 1) -> np.ndarray:
    """Predict one block (shape (z, y, x), stored contrast) and return it in the same units.

    The block is normalised as in training (``norm.apply``), run (:func:`run_flipped`) and mapped
    back (``norm.invert``).
    """
    return norm.invert(run_flipped(module, norm.apply(block), device, precision, flips))


class _Replicas:
    """One copy of the network per device, each used by one thread at a time (tiles go round-robin)."""

    def __init__(self, module, devices: list[str], precision: str = "32", flips: int = 1):
        import copy
        import threading

        self.precision = precision
        self.flips = flips
        self.devices = list(devices)
        self.modules = [module.to(d) if i == 0 else copy.deepcopy(module).to(d) for i, d in enumerate(self.devices)]
        self.locks = [threading.Lock() for _ in self.devices]

    def __reduce__(self):  # sent to dask.distributed workers: rebuilt there (locks are not picklable)
        return (_Replicas, (self.modules[0], self.devices, self.precision, self.flips))

    def run(self, index: int, block: np.ndarray, norm: Normalization) -> np.ndarray:
        """Predict one tile on its device; only the network call holds the device's lock, so with two threads per
        device the next tile is read and normalised (and the last one mapped back and written) meanwhile."""
        k = index % len(self.devices)
        x = norm.apply(block)
        with self.locks[k]:
            y = run_flipped(self.modules[k], x, self.devices[k], self.precision, self.flips)
        return norm.invert(y)


def tile_region(loc, halo: tuple[int, ...], shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(lo, hi) corners of the region a tile reads for the core ``loc`` ((start, stop) per axis): the core with
    ``halo`` voxels of context on each side where the volume of ``shape`` has them."""
    lo = tuple(max(a - h, 0) for (a, _), h in zip(loc, halo, strict=False))
    hi = tuple(min(b + h, n) for (_, b), h, n in zip(loc, halo, shape, strict=False))
    return lo, hi


def _predict_core(source, replicas: _Replicas, norm: Normalization, halo: tuple[int, ...],
                  block_info=None) -> np.ndarray:
    """One output block: its core read with ``halo`` voxels of context where the tomogram has them (at the
    tomogram's faces the network's own padding takes over, as in one whole-volume forward: no mirrored
    context to compute, which on a thin axis would cost as much as the core)."""
    loc = block_info[None]["array-location"]
    lo, hi = tile_region(loc, halo, source.shape)
    index = sum(block_info[None]["chunk-location"])
    out = replicas.run(index, read_reflected(source, lo, hi), norm)
    return out[tuple(slice(a - start, b - start) for (a, b), start in zip(loc, lo, strict=False))]


def predict_tomogram(arr, module, norm: Normalization, chunk: int = 64, halo: int = 16,
                     device: str | list[str] = "cpu", precision: str = "32", flips: int = 1) -> da.Array:
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
    norm : Normalization
        The tomogram's normalisation, in the mode the model was trained with.
    chunk : int
        Edge of the predicted core of each tile.
    halo : int
        Context on each side, discarded after prediction.
    device : str or list of str
        torch device(s); with several (e.g. ``["cuda:0", "cuda:1"]``) each holds a copy of the
        network and the tiles are shared among them (run with as many dask threads).
    precision : str
        ``32``, ``bf16-mixed`` or ``16-mixed`` (see :data:`AUTOCAST`).
    flips : int
        1, 2 or 4: the mean of the network's outputs over that many of :data:`FLIPS` (test-time augmentation).
    """
    if flips not in (1, 2, 4):
        raise ValueError(f"flips must be 1, 2 or 4, got {flips}")
    module.eval()
    if not isinstance(arr, da.Array):
        margins = tuple(min(halo, n - 1) for n in arr.shape)
        chunks = da.core.normalize_chunks(tuple(min(chunk, n) for n in arr.shape), arr.shape)
        replicas = _Replicas(module, [device] if isinstance(device, str) else device, precision, flips)
        return da.map_blocks(_predict_core, arr, replicas, norm, margins, dtype=np.float32,
                             chunks=chunks, meta=np.empty((0, 0, 0), np.float32))
    arr = arr.astype(np.float32).rechunk(tuple(min(chunk, n) for n in arr.shape))
    depth = {i: min(halo, n - 1) for i, n in enumerate(arr.shape)}
    device = device if isinstance(device, str) else device[0]
    return arr.map_overlap(predict_block, depth=depth, boundary="reflect", trim=True, dtype=np.float32,
                           module=module, norm=norm, device=device, precision=precision, flips=flips)
