"""Tomograms as chunked, compressed OME-Zarr stores, read lazily with dask.

Layout of a store ``<name>.zarr`` (Zarr format 3, OME-NGFF 0.5):

- arrays ``0``, ``1``, ... : the tomogram (ZYX) at full resolution and binned 2x, 4x, ...
  (mean of 2x2x2 voxels, float32), so napari and other OME-Zarr readers open it;
- attribute ``ome``: the NGFF ``multiscales`` metadata (axes z, y, x in angstrom, a scale
  per level from the voxel size, and a translation from the MRC origin);
- attribute ``isonet_pl``: voxel size and origin (ZYX, Å), and the source file's path,
  size and modification time, which key the conversion cache.

Conversion from MRC is streamed: blocks of one chunk depth and a bounded number of
rows are read with positional file reads and written chunk-aligned, so peak memory is
set by the chunk shape and the tomogram's width, never by its size.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from isonet_pl.errors import InputError, IsoNetError
from isonet_pl.io.mrc import MrcWriter, iter_blocks, read_mrc_info
from isonet_pl.io.paths import atomic_path

logger = logging.getLogger(__name__)

#: Default chunk shape (ZYX); chosen with bench/perf/io.py (see bench/RESULTS.md).
DEFAULT_CHUNKS = (64, 64, 64)
#: Zstandard level: level 1 costs little time and still shrinks real tomograms.
DEFAULT_COMPRESSION_LEVEL = 1
#: Stop adding pyramid levels once the smallest edge would fall below this.
MIN_LEVEL_EDGE = 32
#: Largest coarsest level read whole to compute the ``omero`` window (voxels).
OMERO_SAMPLE_VOXELS = 32 << 20
#: Upper bound on the bytes of one MRC block read during conversion.
BLOCK_BYTES = 64 << 20

#: 2: stores record the statistics of their values (``isonet_pl.stats``), checked on every read.
FORMAT_VERSION = 2


class NonFiniteError(IsoNetError):
    """A computed volume holds NaN or infinite values (nothing was written)."""


@dataclass(frozen=True)
class TomogramStore:
    """An opened tomogram store.

    Attributes
    ----------
    path : Path
        The ``.zarr`` folder.
    voxel_size : tuple of float
        (z, y, x) in Å.
    origin : tuple of float
        (z, y, x) in Å.
    levels : int
        Number of resolution levels.
    """

    path: Path
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    levels: int

    def zarr_array(self, level: int = 0) -> zarr.Array:
        """The Zarr array of one resolution level."""
        return zarr.open_array(self.path / str(level), mode="r")

    def dask(self, level: int = 0) -> da.Array:
        """The tomogram at ``level`` as a lazy dask array (z, y, x), one task per chunk."""
        arr = self.zarr_array(level)
        return da.from_zarr(arr, chunks=arr.chunks)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx) at full resolution."""
        return tuple(self.zarr_array(0).shape)  # type: ignore[return-value]

    def value_stats(self) -> dict:
        """``{"min", "max", "finite"}`` of the full-resolution values: as recorded when the store was
        written, else computed once (streamed) and recorded."""
        def compute() -> dict:
            stats = VolumeStats()
            stats.add(self.dask().map_blocks(_block_stats, dtype=np.float64, chunks=(1, 1, 1, 5),
                                             new_axis=3).compute())
            return stats.as_dict()

        return self.recorded("stats", compute)

    def recorded(self, key: str, compute):
        """A value derived from the store's data (plain JSON types): as recorded in its attributes under
        ``key``, else ``compute()``, recorded (where the store is writable) and returned. A store is written
        whole, never in place, so a recorded value cannot outlive the data it was computed from."""
        meta = dict(zarr.open_group(self.path, mode="r").attrs["isonet_pl"])
        if key not in meta:
            meta[key] = compute()
            try:
                zarr.open_group(self.path, mode="r+").attrs["isonet_pl"] = meta
            except Exception:  # a read-only store: computed again next time
                pass
        return meta[key]


def check_values(store: TomogramStore, source: str | Path, what: str = "tomogram") -> None:
    """Refuse a volume that holds NaN or infinite values, or is constant.

    Raises
    ------
    InputError
        Naming ``source`` (the file the user knows).
    """
    stats = store.value_stats()
    if not stats["finite"]:
        raise InputError(f"{what} contains NaN or infinite values", source, "fix or re-reconstruct it")
    if stats["min"] == stats["max"]:
        raise InputError(f"{what} is constant (every voxel {stats['min']:g})", source, "check the reconstruction")


def open_tomogram(path: str | Path) -> TomogramStore:
    """Open a store written by :func:`mrc_to_zarr` or :func:`write_tomogram`."""
    path = Path(path)
    try:
        group = zarr.open_group(path, mode="r")
        meta = dict(group.attrs["isonet_pl"])
    except Exception:
        raise InputError("not an isonet-pl Zarr tomogram", path, "convert the MRC file again") from None
    return TomogramStore(path=path, voxel_size=tuple(meta["voxel_size"]), origin=tuple(meta["origin"]),
                         levels=int(meta["levels"]))


def _level_shapes(shape: tuple[int, ...], max_levels: int) -> list[tuple[int, ...]]:
    shapes = [tuple(shape)]
    while len(shapes) < max_levels:
        nxt = tuple(s // 2 for s in shapes[-1])
        if min(nxt) < MIN_LEVEL_EDGE:
            break
        shapes.append(nxt)
    return shapes


def _ngff_metadata(name: str, n_levels: int, voxel_size, origin) -> dict:
    datasets = []
    for level in range(n_levels):
        f = 2**level
        scale = [float(v) * f for v in voxel_size]
        # a binned voxel's centre sits half an original voxel further in
        shift = [float(o) + 0.5 * (f - 1) * float(v) for o, v in zip(origin, voxel_size, strict=False)]
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": scale}, {"type": "translation", "translation": shift}]})
    axes = [{"name": ax, "type": "space", "unit": "angstrom"} for ax in "zyx"]
    return {"version": "0.5", "multiscales": [{"name": name, "axes": axes, "datasets": datasets}]}


class _StoreBuilder:
    """Creates the arrays of a store and fills the pyramid from full-resolution blocks."""

    def __init__(self, path: Path, shape, dtype, chunks, voxel_size, origin, levels: int,
                 compression_level: int, extra: dict | None = None, name: str | None = None):
        self.group = zarr.open_group(path, mode="w", zarr_format=3)
        self.shapes = _level_shapes(shape, levels)
        compressors = [ZstdCodec(level=compression_level)]
        self.arrays = []
        for level, lshape in enumerate(self.shapes):
            ldtype = np.dtype(dtype) if level == 0 else np.dtype(np.float32)
            lchunks = tuple(min(c, s) for c, s in zip(chunks, lshape, strict=False))
            self.arrays.append(self.group.create_array(
                str(level), shape=lshape, chunks=lchunks, dtype=ldtype, compressors=compressors,
                fill_value=0, dimension_names=("z", "y", "x")))
        meta = {"voxel_size": [float(v) for v in voxel_size], "origin": [float(o) for o in origin],
                "levels": len(self.shapes), "format": FORMAT_VERSION}
        meta.update(extra or {})
        # the multiscale's name: the final store's (``path`` may be a temporary name)
        self.group.attrs.update({"ome": _ngff_metadata(name or path.stem, len(self.shapes), voxel_size, origin),
                                 "isonet_pl": meta})

    def record_stats(self, stats: VolumeStats) -> None:
        """Record the statistics of the values (see :meth:`TomogramStore.value_stats`) and, for viewers, an
        OME ``omero`` grey-level window: the 1st/99th percentiles of the coarsest level (when it is small)."""
        meta = dict(self.group.attrs["isonet_pl"])
        meta["stats"] = stats.as_dict()
        self.group.attrs["isonet_pl"] = meta
        coarsest = self.arrays[-1]
        if not stats.finite or int(np.prod(coarsest.shape)) > OMERO_SAMPLE_VOXELS:
            return
        low, high = (float(v) for v in np.percentile(np.asarray(coarsest[...], dtype=np.float32), [1, 99]))
        ome = dict(self.group.attrs["ome"])
        ome["omero"] = {"channels": [{"label": "density", "color": "FFFFFF", "active": True, "window": {
            "min": float(stats.min), "max": float(stats.max), "start": low, "end": high}}],
            "rdefs": {"model": "greyscale"}}
        self.group.attrs["ome"] = ome

    def write(self, block: np.ndarray, z0: int, y0: int) -> None:
        """Write a full-width block at (z0, y0) to level 0 and its binned versions."""
        dz, dy, _ = block.shape
        self.arrays[0][z0:z0 + dz, y0:y0 + dy, :] = block
        current = block.astype(np.float32, copy=False)
        for level in range(1, len(self.shapes)):
            f = 2**level
            if z0 % f or y0 % f:
                raise ValueError("blocks must start on multiples of 2**levels")
            current = _bin2(current)
            lz, ly, lx = self.shapes[level]
            bz0, by0 = z0 // f, y0 // f
            part = current[:max(0, min(current.shape[0], lz - bz0)), :max(0, min(current.shape[1], ly - by0)), :lx]
            if part.size:
                self.arrays[level][bz0:bz0 + part.shape[0], by0:by0 + part.shape[1], :part.shape[2]] = part


def _bin2(block: np.ndarray) -> np.ndarray:
    """Mean of 2x2x2 voxels as float32; an odd trailing slice is dropped (``coarsen(trim_excess=True)``).

    Pairwise sums along each axis: about 10x faster than a mean over a 6-D reshape.
    """
    z, y, x = (s // 2 * 2 for s in block.shape)
    b = block[:z, :y, :x].astype(np.float32, copy=False)
    s = b[0::2] + b[1::2]
    s = s[:, 0::2] + s[:, 1::2]
    s = s[:, :, 0::2] + s[:, :, 1::2]
    s *= 0.125
    return s


def _block_rows(chunks, nx: int, itemsize: int, levels: int) -> int:
    """Rows per conversion block: chunk-aligned, a multiple of 2**levels, within BLOCK_BYTES."""
    cz, cy, _ = chunks
    per_row = cz * nx * itemsize
    rows = max(cy, (BLOCK_BYTES // max(per_row, 1)) // cy * cy)
    return max(rows, 2**levels)


def mrc_to_zarr(mrc_path: str | Path, zarr_path: str | Path, chunks: tuple[int, int, int] = DEFAULT_CHUNKS,
                levels: int = 3, compression_level: int = DEFAULT_COMPRESSION_LEVEL) -> TomogramStore:
    """Convert an MRC tomogram to an OME-Zarr store, streamed block by block.

    Parameters
    ----------
    mrc_path : str or Path
        3-D MRC file (any MRC mode); its dtype is kept at level 0, bit for bit.
    zarr_path : str or Path
        Output ``.zarr`` folder, written under a temporary name and renamed when complete.
    chunks : tuple of int
        Chunk shape (z, y, x) in voxels.
    levels : int
        Maximum number of resolution levels (1 = full resolution only).
    compression_level : int
        Zstandard level.

    Returns
    -------
    TomogramStore
    """
    info = read_mrc_info(mrc_path)
    zarr_path = Path(zarr_path)
    chunks = tuple(int(c) for c in chunks)
    n_levels = len(_level_shapes(info.shape, levels))
    # block depth: one chunk, rounded up to a multiple of the coarsest binning
    depth = -(-chunks[0] // 2 ** (n_levels - 1)) * 2 ** (n_levels - 1)
    rows = _block_rows((depth, chunks[1], chunks[2]), info.shape[2], info.dtype.itemsize, n_levels - 1)
    rows = -(-rows // 2 ** (n_levels - 1)) * 2 ** (n_levels - 1)
    stats = VolumeStats()
    with atomic_path(zarr_path) as tmp:
        builder = _StoreBuilder(tmp, info.shape, info.dtype.newbyteorder("="), chunks, info.voxel_size,
                                info.origin, levels, compression_level, extra={"source": source_key(info.path)},
                                name=f"{info.path.parent.name}/{info.path.stem}".lstrip("/"))
        for (z0, _), (y0, _), block in iter_blocks(info, depth, rows):
            builder.write(block, z0, y0)
            with np.errstate(invalid="ignore"):  # min/max only: NaN and infinities show in them
                stats.add(np.array([block.min(), block.max(), 0.0, 0.0, block.size], dtype=np.float64))
        builder.record_stats(stats)
    logger.debug("converted %s -> %s (%d levels)", info.path, zarr_path, n_levels)
    return open_tomogram(zarr_path)


def source_key(path: str | Path) -> dict:
    """What identifies a source file's content cheaply: absolute path, size, mtime (ns)."""
    path = Path(path).resolve()
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cached_zarr_path(mrc_path: str | Path, cache_dir: str | Path) -> Path:
    """Where :func:`ensure_zarr` keeps the store of ``mrc_path``, readable and unique per file.

    A file in the project (the cache folder's parent, links not followed) gets the same relative path under the
    cache, ``.mrc`` replaced by ``.zarr`` (other suffixes kept: ``x.rec`` → ``x.rec.zarr``), e.g.
    ``zarr/tomos/TS_01.zarr``, ``zarr/deconv/TS_01.zarr``, ``zarr/corrected_tomos/TS_01_corrected.zarr``;
    a file elsewhere gets ``_outside/<stem>_<hash of its path>.zarr``.
    """
    mrc_path = Path(os.path.abspath(mrc_path))
    cache_dir = Path(os.path.abspath(cache_dir))
    try:
        relative = mrc_path.relative_to(cache_dir.parent)
    except ValueError:
        relative = None
    if relative is not None and relative.parts and relative.parts[0] != cache_dir.name:
        name = relative.stem if relative.suffix.lower() == ".mrc" else relative.name
        return cache_dir / relative.parent / f"{name}.zarr"
    digest = hashlib.sha1(str(mrc_path).encode()).hexdigest()[:8]
    return cache_dir / "_outside" / f"{mrc_path.stem}_{digest}.zarr"


def cached_store(mrc_path: str | Path, cache_dir: str | Path) -> TomogramStore | None:
    """The up-to-date Zarr store of ``mrc_path`` in ``cache_dir`` if there is one (nothing is written)."""
    target = cached_zarr_path(mrc_path, cache_dir)
    if not target.exists():
        return None
    try:
        meta = dict(zarr.open_group(target, mode="r").attrs["isonet_pl"])
        if meta.get("source") == source_key(mrc_path) and meta.get("format") == FORMAT_VERSION:
            return open_tomogram(target)
    except Exception:  # an unreadable cache entry counts as none (ensure_zarr rebuilds it)
        pass
    return None


def ensure_zarr(mrc_path: str | Path, cache_dir: str | Path, chunks: tuple[int, int, int] = DEFAULT_CHUNKS,
                levels: int = 3, compression_level: int = DEFAULT_COMPRESSION_LEVEL) -> TomogramStore:
    """Return the Zarr store of an MRC tomogram, converting it only if needed.

    A store is reused when its recorded source path, size and modification time match
    the file's; a changed source file is converted again.
    """
    target = cached_zarr_path(mrc_path, cache_dir)
    store = cached_store(mrc_path, cache_dir)
    if store is not None:
        logger.debug("reusing %s for %s", target, mrc_path)
        return store
    if target.exists():
        logger.info("%s changed since its conversion; converting it again", mrc_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("converting %s to Zarr (%s)", mrc_path, target)
    return mrc_to_zarr(mrc_path, target, chunks=chunks, levels=levels, compression_level=compression_level)


class VolumeStats:
    """Min, max, mean and standard deviation of a volume, gathered from per-block partial sums."""

    def __init__(self) -> None:
        self.min, self.max, self._sum, self._sum_sq, self.count = np.inf, -np.inf, 0.0, 0.0, 0
        self.finite = True

    def add(self, partials: np.ndarray) -> None:
        """Add rows of (min, max, sum, sum of squares, count); a NaN or infinity clears :attr:`finite`."""
        partials = np.asarray(partials, dtype=np.float64).reshape(-1, 5)
        with np.errstate(invalid="ignore", over="ignore"):
            self.finite = self.finite and bool(np.isfinite(partials[:, :2]).all())
        self.min = min(self.min, float(partials[:, 0].min()))
        self.max = max(self.max, float(partials[:, 1].max()))
        self._sum += float(partials[:, 2].sum())
        self._sum_sq += float(partials[:, 3].sum())
        self.count += int(partials[:, 4].sum())

    @property
    def mean(self) -> float:
        """Mean of all values."""
        return self._sum / max(self.count, 1)

    @property
    def std(self) -> float:
        """Standard deviation of all values."""
        return float(np.sqrt(max(self._sum_sq / max(self.count, 1) - self.mean**2, 0.0)))

    def as_dict(self) -> dict:
        """``{"min", "max", "finite"}`` as plain numbers (for a store's attributes)."""
        finite = self.finite and bool(np.isfinite([self.min, self.max]).all())
        return {"min": float(self.min) if finite else None, "max": float(self.max) if finite else None,
                "finite": finite}


def _block_stats(block: np.ndarray, block_info=None) -> np.ndarray:
    """(min, max, sum, sum of squares, count) of a block, shape (1, 1, 1, 5); min/max are NaN or ±inf
    when the block holds such values."""
    with np.errstate(invalid="ignore", over="ignore"):
        sum_sq = sum(float(np.square(plane, dtype=np.float64).sum()) for plane in block)  # no float64 copy
        return np.array([block.min(), block.max(), block.sum(dtype=np.float64), sum_sq, block.size],
                        dtype=np.float64).reshape(1, 1, 1, 5)


def _store_block(block: np.ndarray, target, block_info=None) -> np.ndarray:
    """Write one block into ``target`` at its place; return its partial statistics (shape (1, 1, 1, 5))."""
    where = tuple(slice(lo, hi) for lo, hi in block_info[0]["array-location"])
    target[where] = block
    return _block_stats(block)


def _store_with_stats(arr: da.Array, target, stats: VolumeStats) -> None:
    """Compute ``arr`` into ``target`` (aligned chunks), each chunk once, gathering its statistics."""
    partials = arr.map_blocks(_store_block, target, dtype=np.float64, chunks=(1, 1, 1, 5), new_axis=3)
    stats.add(partials.compute())


def _aligned(arr: da.Array, chunks: tuple[int, ...]) -> da.Array:
    """``arr`` rechunked, if needed, so every dask chunk is a whole number of Zarr chunks."""
    ok = all(all(c % z == 0 for c in axis[:-1]) for axis, z in zip(arr.chunks, chunks, strict=False))
    if ok:
        return arr
    return arr.rechunk(tuple(max(z, axis[0] // z * z) for axis, z in zip(arr.chunks, chunks, strict=False)))


def write_tomogram(arr: da.Array | np.ndarray, zarr_path: str | Path, voxel_size, origin=(0.0, 0.0, 0.0),
                   chunks: tuple[int, int, int] | None = None, levels: int = 1,
                   compression_level: int = DEFAULT_COMPRESSION_LEVEL, extra: dict | None = None,
                   stats: VolumeStats | None = None, require_finite: bool = False) -> TomogramStore:
    """Compute a (lazy) volume and store it as an OME-Zarr tomogram, each dask chunk computed once.

    Parameters
    ----------
    arr : dask.array.Array or numpy.ndarray
        Shape (nz, ny, nx).
    zarr_path : str or Path
        Output ``.zarr`` folder (written under a temporary name, renamed when complete).
    voxel_size, origin : tuple of float
        (z, y, x) in Å.
    chunks : tuple of int, optional
        Zarr chunks (default :data:`DEFAULT_CHUNKS`); dask chunks are aligned to them.
    levels : int
        Maximum number of resolution levels; the coarser ones are binned from level 0 afterwards.
    extra : dict, optional
        More entries for the store's ``isonet_pl`` attributes.
    stats : VolumeStats, optional
        Accumulates the statistics of the values as they are written (they are also recorded in
        the store).
    require_finite : bool
        Raise :class:`NonFiniteError` (and write nothing) when a value is NaN or infinite.
    """
    chunks = tuple(chunks or DEFAULT_CHUNKS)
    arr = arr if isinstance(arr, da.Array) else da.from_array(arr, chunks=tuple(4 * c for c in chunks))
    zarr_path = Path(zarr_path)
    with atomic_path(zarr_path) as tmp:
        builder = _StoreBuilder(tmp, arr.shape, arr.dtype, chunks, voxel_size, origin, levels,
                                compression_level, extra=extra, name=zarr_path.stem)
        stats = VolumeStats() if stats is None else stats
        _store_with_stats(_aligned(arr, chunks), builder.arrays[0], stats)
        if require_finite and not stats.finite:
            raise NonFiniteError(f"{zarr_path.name}: the computed volume holds NaN or infinite values")
        for level in range(1, len(builder.shapes)):
            prev = builder.arrays[level - 1]
            even = tuple(s // 2 * 2 for s in prev.shape)
            src = da.from_zarr(prev).rechunk(tuple(2 * c for c in builder.arrays[level].chunks))
            binned = src[: even[0], : even[1], : even[2]].map_blocks(
                _bin2, dtype=np.float32, chunks=tuple(tuple(c // 2 for c in axis) for axis in src[
                    : even[0], : even[1], : even[2]].chunks))
            da.store(binned, builder.arrays[level], lock=False)
        builder.record_stats(stats)
    return open_tomogram(zarr_path)


def stamp_source(zarr_path: str | Path, mrc_path: str | Path) -> None:
    """Record ``mrc_path`` as the source of a store, so :func:`ensure_zarr` reuses it for that file."""
    group = zarr.open_group(zarr_path, mode="r+")
    meta = dict(group.attrs["isonet_pl"])
    meta["source"] = source_key(mrc_path)
    group.attrs["isonet_pl"] = meta


def dask_to_mrc(arr: da.Array, mrc_path: str | Path, voxel_size, origin=(0.0, 0.0, 0.0),
                dtype=None, rows: int | None = None) -> Path:
    """Stream a lazy volume (shape (nz, ny, nx)) into an MRC file, one block of rows at a time.

    The array is computed in full-width blocks of one z-chunk by ``rows`` rows (default:
    the array's own y-chunk), each written with positional writes; the file appears under
    its final name only when complete.
    """
    dtype = np.dtype(dtype or arr.dtype)
    nz, ny, nx = arr.shape
    depth = arr.chunks[0][0]
    rows = rows or arr.chunks[1][0]
    with MrcWriter(mrc_path, arr.shape, dtype, voxel_size, origin) as writer:
        for z0 in range(0, nz, depth):
            for y0 in range(0, ny, rows):
                block = np.asarray(arr[z0:z0 + depth, y0:y0 + rows, :].compute())
                writer.write(block.astype(dtype, copy=False), z0, y0)
    return Path(mrc_path)


def zarr_to_mrc(zarr_path: str | Path, mrc_path: str | Path, level: int = 0) -> Path:
    """Write one level of a tomogram store back to MRC, streamed, with its voxel size and origin."""
    store = open_tomogram(zarr_path)
    f = 2**level
    vs = tuple(v * f for v in store.voxel_size)
    return dask_to_mrc(store.dask(level), mrc_path, vs, store.origin)


#: How viewers colour a mask label (RGBA, 0-255): the specimen in translucent orange.
LABEL_COLOURS = [{"label-value": 1, "rgba": [255, 140, 0, 128]}]
LABEL_PROPERTIES = [{"label-value": 1, "name": "specimen"}]


def _max_bin(block: np.ndarray, f: int) -> np.ndarray:
    """The largest value of each f×f×f block (a coarse voxel is labelled when any of its voxels is); the
    trailing voxels that do not fill a block are dropped, as the image's levels drop them."""
    z, y, x = (s // f for s in block.shape)
    return block[:z * f, :y * f, :x * f].reshape(z, f, y, f, x, f).max(axis=(1, 3, 5))


def add_label(image: TomogramStore, name: str, label: TomogramStore,
              compression_level: int = DEFAULT_COMPRESSION_LEVEL) -> None:
    """Store ``label``'s full-resolution volume as the OME-Zarr label image ``labels/<name>`` of ``image``.

    NGFF 0.5 labels: viewers that read OME-Zarr (napari-ome-zarr) show the mask over its tomogram. The label has
    the image's resolution levels (each the maximum over 2^level voxels, so a coarse level keeps thin parts of
    the mask) and colours (:data:`LABEL_COLOURS`). Copied slab by slab (never whole in memory); a label of that
    name is replaced.
    """
    source = label.zarr_array(0)
    if tuple(source.shape) != tuple(image.shape):
        raise ValueError(f"label shape {source.shape} differs from the image's {image.shape}")
    group = zarr.open_group(image.path, mode="r+")
    labels = group.require_group("labels")
    if name in labels:
        del labels[name]
    target = labels.create_group(name)
    shapes = [tuple(image.zarr_array(level).shape) for level in range(image.levels)]
    arrays = [target.create_array(str(level), shape=shape, chunks=tuple(min(c, s) for c, s in zip(
        source.chunks, shape, strict=True)), dtype=source.dtype, compressors=[ZstdCodec(level=compression_level)],
        fill_value=0, dimension_names=("z", "y", "x")) for level, shape in enumerate(shapes)]
    coarsest = 2 ** (len(shapes) - 1)
    step = -(-source.chunks[0] // coarsest) * coarsest  # slabs that bin evenly at every level
    for z in range(0, source.shape[0], step):
        slab = np.asarray(source[z:z + step])
        for level, array in enumerate(arrays):
            f = 2 ** level
            part = slab if level == 0 else _max_bin(slab, f)
            z0 = z // f
            part = part[:max(0, min(part.shape[0], shapes[level][0] - z0))]
            if part.size:
                array[z0:z0 + part.shape[0], :part.shape[1], :part.shape[2]] = part
    ome = _ngff_metadata(name, len(shapes), image.voxel_size, image.origin)
    ome["image-label"] = {"version": "0.5", "source": {"image": "../../"}, "colors": LABEL_COLOURS,
                          "properties": LABEL_PROPERTIES}
    target.attrs["ome"] = ome
    names = list(dict(labels.attrs.get("ome", {})).get("labels", []))
    labels.attrs["ome"] = {"version": "0.5", "labels": sorted({*names, name})}


__all__ = ["NonFiniteError", "add_label", "check_values", "DEFAULT_CHUNKS", "VolumeStats", "stamp_source",
           "TomogramStore",
           "open_tomogram", "mrc_to_zarr", "ensure_zarr", "cached_zarr_path",
           "write_tomogram", "dask_to_mrc", "zarr_to_mrc", "source_key"]
