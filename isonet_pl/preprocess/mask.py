"""IsoNet's sampling mask, computed lazily with dask (SPEC §4).

The mask marks where subtomogram centres may be drawn: voxels near dense material
(local maximum of the inverted, smoothed density) with high local standard deviation,
optionally inside a polygon boundary and away from the top and bottom of the volume.
Everything except the two global percentile thresholds is a local filter, so the
tomogram is streamed chunk by chunk; see :func:`make_mask` for the passes and memory.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

from isonet_pl.errors import InputError
from isonet_pl.preprocess.boundary import _boundary_parts, read_boundary_points
from isonet_pl.preprocess.filters import bin2, gaussian_filter, local_std, maximum_filter, upsample2
from isonet_pl.preprocess.percentile import _exact_percentiles_and_range

logger = logging.getLogger(__name__)

__all__ = ["make_mask", "DISABLE_ABOVE"]

#: A density or std percentage above this disables that criterion (IsoNet's rule).
DISABLE_ABOVE = 99.8


def _regular_chunks(arr: da.Array) -> da.Array:
    """Rechunk to one chunk size per axis (the largest), as a Zarr array needs."""
    return arr.rechunk(tuple(max(c) for c in arr.chunks))


def _persist(arrays: dict[str, da.Array], extra: list[da.Array], workdir: Path):
    """Write ``arrays`` to uncompressed Zarr arrays in ``workdir``, computing ``extra`` alongside.

    One graph, so inputs shared by the arrays and the reductions in ``extra`` are
    computed once. Returns the stored arrays (read back lazily, same keys) and the
    values of ``extra``.
    """
    names = list(arrays)
    targets, sources = [], []
    for name in names:
        arr = _regular_chunks(arrays[name])
        target = zarr.create_array(
            str(workdir / f"{name}.zarr"), shape=arr.shape, chunks=tuple(c[0] for c in arr.chunks),
            dtype=arr.dtype, compressors=None, overwrite=True,
        )
        sources.append(arr)
        targets.append(target)
    # One z-row of chunks at a time: a single da.store over the whole graph lets the threaded
    # scheduler read input chunks far ahead of the filters (bench/perf/preprocess.py: 1.5 GiB peak for a
    # 2 GiB tomogram); slabs keep the memory at a few rows of chunks.
    for arr, target in zip(sources, targets, strict=True):
        z0 = 0
        for cz in arr.chunks[0]:
            da.store(arr[z0:z0 + cz], target, regions=(slice(z0, z0 + cz),), lock=False)
            z0 += cz
    values = dask.compute(*extra) if extra else []
    stored = {name: da.from_zarr(t) for name, t in zip(names, targets, strict=True)}
    return stored, list(values)


def _persist_in_memory(arrays: dict[str, da.Array], extra: list[da.Array]):
    """Like :func:`_persist`, holding the arrays in memory."""
    names = list(arrays)
    out = dask.persist(*[arrays[n] for n in names], *extra)
    stored = dict(zip(names, out[:len(names)], strict=True))
    values = [np.asarray(v.compute()) if isinstance(v, da.Array) else v for v in out[len(names):]]
    return stored, values


def make_mask(
    tomogram: da.Array | np.ndarray,
    patch_size: int = 4,
    density_percentage: float = 50,
    std_percentage: float = 50,
    z_crop: float | None = None,
    boundary_points: np.ndarray | str | Path | None = None,
    tmp_dir: str | Path | None = None,
) -> da.Array:
    """Sampling mask of a tomogram, as IsoNet 0.2's ``make_mask`` computes it.

    Steps (SPEC §4.1), with ``side = patch_size``, all on the 2×-binned grid:

    1. ``B = bin2(T)`` (skimage-style anti-aliased 2× resize, see
       :func:`~isonet_pl.preprocess.filters.bin2`).
    2. ``G = gaussian_filter(B, side / 2)`` (reflect, truncate 4).
    3. Density criterion (unless ``density_percentage > 99.8``):
       ``Mx = maximum_filter(−G, 2·side + 1)``, kept where
       ``Mx > percentile(Mx, 100 − density_percentage)``.
    4. Std criterion (unless ``std_percentage > 99.8``):
       ``S = local_std(G, 2·side + 1)``, kept where
       ``S > percentile(S, 100 − std_percentage)``.
    5. Intersection of the criteria, times the boundary polygon mask (SPEC §4.3).
    6. ``z_crop = f < 1``: binned slices ``[0, int(f·nZb))`` and
       ``[int((1 − f)·nZb), nZb)`` are zeroed.
    7. Nearest-neighbour 2× upsampling to the tomogram's shape (the last slice of an
       odd axis stays 0), ``> 0.5``, uint8.

    Parameters
    ----------
    tomogram : dask.array.Array or ndarray
        Tomogram (Z, Y, X), any real dtype (computed in float32), every axis ≥ 2.
    patch_size : int, default 4
        IsoNet's ``side``, in binned voxels: Gaussian sigma ``side / 2`` and windows of
        ``2·side + 1``.
    density_percentage : float, default 50
        Approximate percentage of voxels kept by the density criterion; > 99.8
        disables it.
    std_percentage : float, default 50
        Same for the local standard deviation criterion.
    z_crop : float, optional
        Fraction ``f`` of the binned Z size zeroed at the top and at the bottom; ignored
        when ``f >= 1`` (IsoNet's rule).
    boundary_points : ndarray of shape (n, 3), str or Path, optional
        Boundary points ``(x, y, z)`` in full-resolution pixels, or a file that
        :func:`~isonet_pl.preprocess.boundary.read_boundary_points` reads.
    tmp_dir : str or Path, optional
        Folder for temporary Zarr arrays. Without it, intermediate arrays stay in memory.

    Returns
    -------
    dask.array.Array
        uint8 mask (0/1) of the tomogram's shape, chunked like ``tomogram``. It is lazy,
        but only reads the stored binned mask: computing it costs one cheap pass.

    Raises
    ------
    InputError
        If the tomogram is constant (std is zero), the mask comes out empty, or a
        parameter or the boundary is invalid.

    Notes
    -----
    Passes and memory. The filter chain (bin, smooth, max filter, local std) runs once:
    its two binned criterion arrays (float32, 1/8 of the tomogram's voxels each, e.g.
    256 MiB each for a 2 GiB float32 tomogram) are stored first, then each exact
    percentile (:mod:`~isonet_pl.preprocess.percentile`) streams its stored array three
    times (min/max, histogram, gather) instead of recomputing the filters. The binned
    0/1 mask (uint8, 1/32 of the tomogram's bytes) is stored as well, and the returned
    array reads from it.

    * With ``tmp_dir``: the arrays are uncompressed Zarr arrays in a new folder
      ``tmp_dir/isonet_mask_*``; the criteria are deleted before returning and the
      binned mask stays there, since the returned array reads it: remove ``tmp_dir``
      only after computing the result. Memory stays at a few chunks (plus halos).
    * Without ``tmp_dir``: the same arrays are held in memory (2/8 of the tomogram's
      float32 size for the criteria while thresholds are computed).

    Disabling both criteria skips every pass, and then no constant-tomogram check is
    made. The criteria are float32 (IsoNet keeps the local std in float64), so voxels
    whose std lies within float32 rounding of the threshold can differ from IsoNet.
    """
    tomo = da.asarray(tomogram)
    if tomo.ndim != 3:
        raise InputError(f"a tomogram must be 3-D (Z, Y, X), got shape {tomo.shape}")
    if min(tomo.shape) < 2:
        raise InputError(f"tomogram of shape {tomo.shape} is too small for a 2x-binned mask")
    if tomo.dtype.kind not in "iuf":
        raise InputError(f"tomogram must be real-valued, got dtype {tomo.dtype}")
    side = int(patch_size)
    if side != patch_size or side < 1:
        raise InputError(f"patch_size must be a positive integer, got {patch_size}")
    for name, value in (("density_percentage", density_percentage),
                        ("std_percentage", std_percentage)):
        if not value >= 0:
            raise InputError(f"{name} must be >= 0, got {value}")
    if z_crop is not None and not z_crop >= 0:
        raise InputError(f"z_crop must be a fraction >= 0, got {z_crop}")

    shape = tomo.shape
    window = 2 * side + 1
    binned = bin2(tomo)
    smooth = gaussian_filter(binned, side / 2.0, mode="reflect", truncate=4.0)
    binned_shape = smooth.shape

    # The boundary first, so that a bad file fails before the heavy passes.
    boundary = None
    if boundary_points is not None:
        if isinstance(boundary_points, (str, Path)):
            boundary_points = read_boundary_points(boundary_points)
        boundary = _boundary_parts(boundary_points, binned_shape)

    use_density = density_percentage <= DISABLE_ABOVE
    use_std = std_percentage <= DISABLE_ABOVE
    criteria = {}
    if use_density:
        criteria["density"] = maximum_filter(-smooth, window, mode="reflect")
    if use_std:
        criteria["std"] = local_std(smooth, window)
    logger.info(
        "mask: binned shape %s, side %d, density %s, std %s",
        binned_shape, side,
        f"{density_percentage}%" if use_density else "off",
        f"{std_percentage}%" if use_std else "off",
    )

    workdir = None
    if tmp_dir is not None:
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="isonet_mask_", dir=tmp_dir))
    try:
        keep = None
        if criteria:
            # One linear chain per store: the smoothed volume first, then each criterion from it.
            # A graph where both criteria (or a reduction) share the smoothing makes dask keep
            # many smoothed chunks alive at once (bench/perf/preprocess.py: 1.7 GiB for 2 GiB).
            if workdir is None:
                stored, _ = _persist_in_memory(criteria, [])
            else:
                binned_stored = _persist({"binned": binned}, [], workdir)[0]["binned"]
                smooth = gaussian_filter(binned_stored, side / 2.0, mode="reflect", truncate=4.0)
                smooth_stored = _persist({"smooth": smooth}, [], workdir)[0]["smooth"]
                criteria = {}
                if use_density:
                    criteria["density"] = maximum_filter(-smooth_stored, window, mode="reflect")
                if use_std:
                    criteria["std"] = local_std(smooth_stored, window)
                stored = {}
                for name, criterion in criteria.items():
                    stored.update(_persist({name: criterion}, [], workdir)[0])
            some = stored["std"] if use_std else stored["density"]
            g_min, g_max = (float(v) for v in dask.compute(some.min(), some.max()))
            if g_min == g_max and not use_std:
                raise InputError("the tomogram is constant (std is zero), no mask can be made",
                                 fix="check that the right tomogram is used")
            if use_density:
                q = 100 - density_percentage
                (threshold,), _, _ = _exact_percentiles_and_range(stored["density"], [q])
                logger.info("mask: density threshold %s (percentile %s)", threshold, q)
                keep = stored["density"] > threshold
            if use_std:
                q = 100 - std_percentage
                (threshold,), _, s_max = _exact_percentiles_and_range(stored["std"], [q])
                if s_max == 0:
                    raise InputError("the tomogram is constant (std is zero), no mask can be made",
                                     fix="check that the right tomogram is used")
                logger.info("mask: std threshold %s (percentile %s)", threshold, q)
                criterion = stored["std"] > threshold
                keep = criterion if keep is None else keep & criterion
        if keep is None:
            keep = da.ones(binned_shape, dtype=bool, chunks=smooth.chunks)

        if boundary is not None:
            plane, z_lo, z_hi = boundary
            in_z = np.zeros(binned_shape[0], dtype=bool)
            in_z[z_lo:max(z_lo, z_hi)] = True
            keep = keep & da.from_array(in_z[:, None, None], chunks=(keep.chunks[0], 1, 1))
            keep = keep & da.from_array(plane[None], chunks=(1,) + keep.chunks[1:])

        if z_crop is not None and z_crop < 1:
            nzb = binned_shape[0]
            in_z = np.ones(nzb, dtype=bool)
            in_z[:int(z_crop * nzb)] = False
            in_z[int((1 - z_crop) * nzb):] = False
            keep = keep & da.from_array(in_z[:, None, None], chunks=(keep.chunks[0], 1, 1))

        keep = keep.astype(np.uint8)
        if workdir is None:
            (keep,) = dask.persist(keep)
            count = int(keep.sum(dtype=np.int64).compute())
        else:
            stored_mask, (count,) = _persist({"binned_mask": keep}, [keep.sum(dtype=np.int64)],
                                             workdir)
            keep = stored_mask["binned_mask"]
            count = int(count)
            for name in [*criteria, "smooth", "binned"]:
                shutil.rmtree(workdir / f"{name}.zarr", ignore_errors=True)
    except BaseException:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise

    fraction = count / float(np.prod(binned_shape))
    logger.info("mask: %.1f%% of the binned volume kept", 100 * fraction)
    if count == 0:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise InputError(
            "the mask is empty",
            fix="raise density_percentage and/or std_percentage (the percentage of voxels each "
                "criterion keeps), lower z_crop, or check the mask boundary",
        )
    full = upsample2(keep, shape)
    return (full > 0.5).astype(np.uint8).rechunk(tomo.chunks)
