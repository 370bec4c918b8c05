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
from isonet_pl.io.star import DECONV_COLUMN, MASK_COLUMN, Col
from isonet_pl.io.zarr_store import add_label, open_tomogram, write_tomogram
from isonet_pl.preprocess.boundary import read_boundary_points
from isonet_pl.preprocess.mask import make_mask as compute_mask
from isonet_pl.project import Project

logger = logging.getLogger(__name__)

#: Chunk edge of the full-resolution tomogram for the mask filters (64 on the binned grid):
#: bench/perf/preprocess.py measured 3x less time than Zarr's 64^3 chunks, at bounded memory.
MASK_CHUNK = 128


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
    project = Project.open(star_file, io, tomo_idx, () if cfg.mask_boundary else (Col.MASK_BOUNDARY,))
    table, rows = project.table, project.rows
    out_dir = check_output_dir(cfg.mask_folder, option="--mask_folder")
    table.ensure_column(Col.MASK_DENSITY, 50.0)
    table.ensure_column(Col.MASK_STD, 50.0)
    table.ensure_column(MASK_COLUMN, "None")
    table.ensure_column(Col.MASK_BOUNDARY, "None")
    outputs = {tomo.row: tomo.output(out_dir, f"{tomo.key}_mask.mrc", MASK_COLUMN, "--mask_folder")
               for tomo in rows}  # before any work
    for tomo in rows:
        row = tomo.row
        if cfg.density_percentage is not None:
            table.set_value(row, Col.MASK_DENSITY, cfg.density_percentage)
        if cfg.std_percentage is not None:
            table.set_value(row, Col.MASK_STD, cfg.std_percentage)
        if cfg.mask_boundary is not None:
            table.set_value(row, Col.MASK_BOUNDARY, table.relative(cfg.mask_boundary))
        density = float(table.df[Col.MASK_DENSITY].iloc[row])
        std = float(table.df[Col.MASK_STD].iloc[row])
        for name, value in ((Col.MASK_DENSITY, density), (Col.MASK_STD, std)):
            if not 0 < value <= 100:
                raise InputError(f"row {row + 1} has _{name} {value}", table.path, "use a value in (0, 100]")
        boundary_path = table.get_path(row, Col.MASK_BOUNDARY, required=False)
        points = read_boundary_points(table.get_path(row, Col.MASK_BOUNDARY)) if boundary_path else None
        column = tomo.source_column(cfg.use_deconv_tomo)
        source = tomo.path(column, required=True)
        out = outputs[row]
        t0 = time.perf_counter()
        store = tomo.store(column)
        with dask_context(cfg.ncpu, cfg.dask_scheduler), tempfile.TemporaryDirectory(
                dir=out.zarr.parent, prefix=".mask-") as tmp:
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
                write_tomogram(mask, out.zarr, store.voxel_size, store.origin, chunks=io.zarr_chunks, levels=1,
                               compression_level=io.compression_level, extra={"mask": {
                                   "patch_size": cfg.patch_size, "density_percentage": density,
                                   "std_percentage": std, "z_crop": cfg.z_crop}})
        out.record()
        add_label(store, "mask", open_tomogram(out.zarr), io.compression_level)  # for OME-Zarr viewers
        kept = mask_fraction(out.zarr)
        logger.info("mask of %s -> %s in %.1f s (from %s; %.1f %% of voxels kept)", tomo.name, out.mrc,
                    time.perf_counter() - t0, "deconvolved" if column == DECONV_COLUMN else "raw",
                    100 * kept)
    table.write()
    return table.path


def mask_fraction(zarr_path: Path) -> float:
    """Fraction of voxels set in a stored mask (streamed)."""
    return float(open_tomogram(zarr_path).dask().astype(np.float64).mean().compute())
