"""make_mask: sampling masks for the tomograms of a STAR file."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from isonet_pl.compute import dask_context, progress_bar
from isonet_pl.config import IOConfig, MaskConfig
from isonet_pl.errors import InputError
from isonet_pl.io.paths import check_output_dir
from isonet_pl.io.star import StarTable, is_none, read_tomogram_star
from isonet_pl.io.zarr_store import cached_zarr_path, stamp_source, write_tomogram, zarr_to_mrc
from isonet_pl.preprocess.boundary import read_boundary_points
from isonet_pl.preprocess.mask import make_mask as compute_mask
from isonet_pl.workflows.convert import check_inputs, check_writable, tomogram_store, zarr_cache

logger = logging.getLogger(__name__)

#: Chunk edge of the full-resolution tomogram for the mask filters (64 on the binned grid):
#: bench/preprocess.py measured 3x less time than Zarr's 64^3 chunks, at bounded memory.
MASK_CHUNK = 128


def mask_source_column(table: StarTable, row: int, use_deconv_tomo: bool) -> str:
    """The column of the volume a mask is made from: the deconvolved tomogram when asked and present."""
    if use_deconv_tomo and "rlnDeconvTomoName" in table.df.columns and not is_none(
            table.df["rlnDeconvTomoName"].iloc[row]):
        return "rlnDeconvTomoName"
    return "rlnMicrographName"


def make_mask(star_file: str | Path, cfg: MaskConfig | None = None, io: IOConfig | None = None,
              tomo_idx: str | None = None, progress: bool = False) -> Path:
    """Make IsoNet's sampling mask for each selected tomogram (SPEC §4), out of core.

    Uses the row's ``_rlnMaskDensityPercentage`` / ``_rlnMaskStdPercentage`` (overridden by
    ``cfg``) and ``_rlnMaskBoundary`` (a ``.mod`` polygon or a text list of points; set for the
    selected rows by ``cfg.mask_boundary``, which IsoNet 0.2 ignored). Writes
    ``<mask_folder>/<root>_mask.mrc`` (uint8 values 0/1, stored as MRC mode 6 as IsoNet does)
    with its Zarr copy and sets ``_rlnMaskName``; the STAR file is rewritten after each mask.

    Returns
    -------
    Path
        The STAR file.
    """
    cfg = cfg or MaskConfig()
    io = io or IOConfig()
    table = read_tomogram_star(star_file)
    rows = table.select(tomo_idx)
    check_inputs(table, rows, () if cfg.mask_boundary else ("rlnMaskBoundary",))
    check_writable(table, io)
    out_dir = check_output_dir(cfg.mask_folder, option="--mask_folder")
    table.ensure_column("rlnMaskDensityPercentage", 50.0)
    table.ensure_column("rlnMaskStdPercentage", 50.0)
    table.ensure_column("rlnMaskName", "None")
    table.ensure_column("rlnMaskBoundary", "None")
    keys = table.output_keys()
    for row in rows:
        if cfg.density_percentage is not None:
            table.set_value(row, "rlnMaskDensityPercentage", cfg.density_percentage)
        if cfg.std_percentage is not None:
            table.set_value(row, "rlnMaskStdPercentage", cfg.std_percentage)
        if cfg.mask_boundary is not None:
            table.set_value(row, "rlnMaskBoundary", table.relative(cfg.mask_boundary))
        density = float(table.df["rlnMaskDensityPercentage"].iloc[row])
        std = float(table.df["rlnMaskStdPercentage"].iloc[row])
        for name, value in (("rlnMaskDensityPercentage", density), ("rlnMaskStdPercentage", std)):
            if not 0 < value <= 100:
                raise InputError(f"row {row + 1} has _{name} {value}", table.path, "use a value in (0, 100]")
        boundary_path = table.get_path(row, "rlnMaskBoundary", required=False)
        points = read_boundary_points(table.get_path(row, "rlnMaskBoundary")) if boundary_path else None
        column = mask_source_column(table, row, cfg.use_deconv_tomo)
        source = table.get_path(row, column)
        micrograph = table.get_path(row, "rlnMicrographName", required=False) or source
        out_mrc = out_dir / f"{keys[row]}_mask.mrc"
        t0 = time.perf_counter()
        store = tomogram_store(table, row, column, io)
        out_zarr = cached_zarr_path(out_mrc, zarr_cache(table, io))
        out_zarr.parent.mkdir(parents=True, exist_ok=True)
        with dask_context(cfg.ncpu, cfg.dask_scheduler), tempfile.TemporaryDirectory(
                dir=out_zarr.parent, prefix=".mask-") as tmp:
            try:
                mask = compute_mask(store.dask().rechunk(MASK_CHUNK), patch_size=cfg.patch_size,
                                    density_percentage=density, std_percentage=std, z_crop=cfg.z_crop,
                                    boundary_points=points, tmp_dir=tmp)
            except InputError as exc:  # name the tomogram the problem was found in
                raise InputError(exc.problem, exc.path or source, exc.fix) from None
            except ValueError as exc:
                if "NaN" not in str(exc):
                    raise
                raise InputError("tomogram contains NaN values", source, "fix or re-reconstruct it") from None
            with progress_bar(progress, f"make_mask {source.name}"):
                write_tomogram(mask, out_zarr, store.voxel_size, store.origin, chunks=io.zarr_chunks, levels=1,
                               compression_level=io.compression_level, extra={"mask": {
                                   "patch_size": cfg.patch_size, "density_percentage": density,
                                   "std_percentage": std, "z_crop": cfg.z_crop}})
            zarr_to_mrc(out_zarr, out_mrc)
        stamp_source(out_zarr, out_mrc)
        kept = mask_fraction(out_zarr)
        table.set_value(row, "rlnMaskName", table.relative(out_mrc))
        table.write()
        logger.info("mask of %s -> %s in %.1f s (from %s; %.1f %% of voxels kept)", micrograph.name, out_mrc,
                    time.perf_counter() - t0, "deconvolved" if column == "rlnDeconvTomoName" else "raw",
                    100 * kept)
    table.write()
    return table.path


def mask_fraction(zarr_path: Path) -> float:
    """Fraction of voxels set in a stored mask (streamed)."""
    from isonet_pl.io.zarr_store import open_tomogram

    return float(open_tomogram(zarr_path).dask().astype(np.float64).mean().compute())
