"""extract: subtomograms drawn inside the masks (a share anywhere: ``background_share``), written as MRC files
with an IsoNet-style subtomo.star."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from isonet_pl.compute import dask_context
from isonet_pl.config import CROP_MARGIN, CUBE_MULTIPLE, ExtractConfig, IOConfig
from isonet_pl.data.extraction import count_valid, crop_around, sample_centres
from isonet_pl.errors import InputError
from isonet_pl.io.mrc import read_mrc_info, write_mrc
from isonet_pl.io.paths import atomic_path, check_not_input, check_output_file, check_replaceable_folder
from isonet_pl.io.star import (
    DECONV_COLUMN,
    MASK_COLUMN,
    SUBTOMO_COLUMNS,
    TOMOGRAM_COLUMN,
    Col,
    new_table,
    read_star,
    relative_to,
)
from isonet_pl.normalization import STAT_COLUMNS, Normalization
from isonet_pl.project import Project

logger = logging.getLogger(__name__)

#: Extra columns of our subtomo.star: the source tomogram, the centre (RELION's names, x y z in
#: voxels) and the tomogram's intensity statistics, so that training and prediction normalise alike.
EXTRA_COLUMNS = {Col.TOMOGRAM: "None", Col.TOMOGRAM_STAR: "None", Col.X: 0.0, Col.Y: 0.0, Col.Z: 0.0,
                 **dict(zip(STAT_COLUMNS, (0.0, 1.0, 0.0, 1.0), strict=True))}


#: Our columns of the even/odd half subtomograms (same centres as rlnImageName).
SUBTOMO_HALF_COLUMNS = (Col.IMAGE_HALF1, Col.IMAGE_HALF2)


#: The file that marks a folder of subtomograms as extract's own output (a later extract may replace it).
MARKER = ".isonet_subtomo"
_SUBTOMOGRAM = re.compile(r"[\w.-]+_\d{6}\.mrc")


def _own_subtomogram_file(rel: Path) -> bool:
    """Whether a path inside a subtomogram folder is one extract writes: its marker, ``<key>_NNNNNN.mrc`` and
    the same in ``half1/`` and ``half2/``."""
    parts = rel.parts
    if len(parts) == 1:
        return parts[0] in (MARKER, "half1", "half2") or bool(_SUBTOMOGRAM.fullmatch(parts[0]))
    return len(parts) == 2 and parts[0] in ("half1", "half2") and bool(_SUBTOMOGRAM.fullmatch(parts[1]))


def _check_subtomo_star_replaceable(path: Path) -> None:
    """An existing ``--subtomo_star`` is replaced only when it is a subtomogram table (not a tomogram table or
    any other file)."""
    if not path.exists():
        return
    try:
        columns = set(read_star(path).df.columns)
    except InputError:
        columns = set()
    if Col.IMAGE not in columns or Col.TOMOGRAM in columns - set(EXTRA_COLUMNS):
        raise InputError("exists and is not a subtomogram table; extract replaces only its own earlier output",
                         path, "choose another --subtomo_star")


def _source(tomo, cfg: ExtractConfig) -> str:
    """The column extract crops from: the deconvolved tomogram when asked for and its file exists (IsoNet's
    rule), else the tomogram."""
    column = tomo.source_column(cfg.use_deconv_tomo)
    return TOMOGRAM_COLUMN if column == DECONV_COLUMN and not tomo.deconvolved.exists() else column


def _check_sizes(rows: list, cfg: ExtractConfig, crop: int) -> None:
    """Before anything is written: the subtomograms fit every selected tomogram.

    Raises
    ------
    InputError
        Naming the thinnest tomogram and the largest --cube_size (a multiple of 8) that fits all of them.
    """
    shapes = {tomo.path(_source(tomo, cfg), required=True): read_mrc_info(tomo.path(_source(tomo, cfg))).shape
              for tomo in rows}
    path, shape = min(shapes.items(), key=lambda item: min(item[1]))
    if min(shape) >= crop:
        return
    room = min(shape) - (0 if cfg.crop_size else CROP_MARGIN)
    cube = room // CUBE_MULTIPLE * CUBE_MULTIPLE
    fix = (f"use --cube_size {cube}" + ("" if not cfg.crop_size else f" --crop_size {min(shape)}")
           if cube >= CUBE_MULTIPLE else "bin the tomogram less (it is too thin for any training cube)")
    raise InputError(f"tomogram {'x'.join(map(str, shape))} (z, y, x) is thinner than the subtomograms ({crop} "
                     f"voxels: --cube_size {cfg.cube_size}" + (f", --crop_size {cfg.crop_size})" if cfg.crop_size
                                                                  else f" + {CROP_MARGIN})"), path,
                     f"{fix}, the largest that fits every selected tomogram")


def _check_space(rows: list, crop: int, folder: Path) -> None:
    """Refuse, before writing, subtomograms that would not fit on the disk of ``folder`` (with a margin).

    Raises
    ------
    InputError
        Naming the count, the size needed and the space free.
    """
    count = sum(int(tomo.value(Col.NUMBER_SUBTOMO, 100)) * (3 if tomo.has_halves else 1) for tomo in rows)
    need = count * (crop ** 3 * 4 + 1024)
    where = next((p for p in (folder, *folder.absolute().parents) if p.exists()), Path("."))
    free = shutil.disk_usage(where).free
    if need > 0.9 * free:
        raise InputError(f"{count} subtomograms of {crop}^3 need {need / 1e9:.1f} GB, {free / 1e9:.1f} GB are free",
                         folder, "lower --number_subtomos (or _rlnNumberSubtomo), or choose a --subtomo_folder on "
                         "a larger disk")


def extract(star_file: str | Path, cfg: ExtractConfig | None = None, io: IOConfig | None = None,
            tomo_idx: str | None = None) -> Path:
    """Extract ``_rlnNumberSubtomo`` subtomograms per selected tomogram, centres drawn inside its mask
    (``cfg.background_share`` of them anywhere in it where the crop fits).

    Reads tomograms and masks lazily from their Zarr copies; writes
    ``<subtomo_folder>/<tomogram stem>_NNNNNN.mrc`` (crop_size³ float32, with the voxel size)
    and ``subtomo_star`` with IsoNet's columns plus the tilt range, the source tomogram, the
    centre and the tomogram's statistics. With even/odd halves in the table, the same centres
    are cropped from both into ``half1/`` and ``half2/`` (``_rlnImageNameHalf1|2``). The folder
    is assembled under a temporary name
    and replaces any previous one only when complete.

    Returns
    -------
    Path
        The subtomogram STAR file.
    """
    cfg = cfg or ExtractConfig()
    io = io or IOConfig()
    project = Project.open(star_file, io, tomo_idx, (MASK_COLUMN,), writes=False)
    table, rows = project.table, project.rows
    crop = cfg.crop_size or cfg.cube_size + CROP_MARGIN
    _check_sizes(rows, cfg, crop)
    inputs = project.inputs()
    out_star = check_not_input(check_output_file(cfg.subtomo_star, option="--subtomo_star"), inputs,
                               "--subtomo_star")
    _check_subtomo_star_replaceable(out_star)
    folder = check_not_input(cfg.subtomo_folder, inputs, "--subtomo_folder", folder=True)
    star_files = {os.path.realpath(p) for p in (out_star, out_star.with_name(f".{out_star.name}.lock"))}
    check_replaceable_folder(folder, lambda rel: _own_subtomogram_file(rel) or
                             os.path.realpath(folder / rel) in star_files, "--subtomo_folder")
    if folder.exists():
        logger.info("%s holds the subtomograms of an earlier extract; they will be replaced", folder)
    _check_space(rows, crop, folder)
    rng = np.random.default_rng(cfg.seed)
    records: list[dict] = []
    with atomic_path(folder) as tmp, dask_context(cfg.ncpu, cfg.dask_scheduler):
        tmp.mkdir(parents=True)
        (tmp / MARKER).write_text(f"subtomograms written by isonet-pl extract from {table.path}\n")
        for tomo in rows:
            t0 = time.perf_counter()
            column = _source(tomo, cfg)
            store = tomo.store(column)
            micrograph = tomo.tomogram
            shape = store.shape
            mask = None
            if tomo.mask is not None:
                mask_store = tomo.store(MASK_COLUMN)
                if mask_store.shape != shape:
                    raise InputError(f"mask shape {mask_store.shape} differs from the tomogram's {shape}",
                                     tomo.mask, "make the mask again with make_mask")
                mask = mask_store.dask()
            else:
                logger.info("row %d: no mask, centres drawn from the whole tomogram", tomo.number)
            n = int(tomo.value(Col.NUMBER_SUBTOMO, 100))
            if count_valid(mask, shape, crop) == 0:
                raise InputError(f"the mask leaves no centre at least {crop // 2} voxels from the edges",
                                 tomo.mask, "make a larger mask (make_mask) or a smaller --crop_size")
            centres = sample_centres(mask, shape, crop, n, rng, cfg.background_share)
            stats = Normalization.of_store(store).columns()
            volume = store.zarr_array(0)
            halves = tomo.half_arrays(column == DECONV_COLUMN, shape)
            tilt_min, tilt_max = tomo.tilt_range
            pixel_size = tomo.pixel_size or store.voxel_size[2]
            for j, centre in enumerate(centres):
                name = f"{tomo.key}_{j:06d}.mrc"
                write_mrc(tmp / name, crop_around(volume, centre, crop), voxel_size=pixel_size)
                half_names = {}
                for k, half in enumerate(halves):  # the same centres in both halves
                    sub = tmp / f"half{k + 1}"
                    sub.mkdir(exist_ok=True)
                    write_mrc(sub / name, crop_around(half, centre, crop), voxel_size=pixel_size)
                    half_names[SUBTOMO_HALF_COLUMNS[k]] = relative_to(folder.resolve() / f"half{k + 1}" / name,
                                                                      out_star.parent)
                records.append({**half_names, Col.SUBTOMO_INDEX: len(records) + 1,
                                Col.IMAGE: relative_to(folder.resolve() / name, out_star.parent),
                                Col.CUBE_SIZE: cfg.cube_size, Col.CROP_SIZE: crop, Col.PIXEL_SIZE: pixel_size,
                                Col.TILT_MIN: tilt_min, Col.TILT_MAX: tilt_max,
                                Col.TOMOGRAM: relative_to(micrograph, out_star.parent),
                                Col.TOMOGRAM_STAR: relative_to(table.path, out_star.parent),
                                Col.X: float(centre[2]), Col.Y: float(centre[1]),
                                Col.Z: float(centre[0]), **stats})
            logger.info("extracted %d subtomograms of %d^3 from %s (%s) in %.1f s", len(centres), crop,
                        micrograph.name, "deconvolved" if column == DECONV_COLUMN else "raw",
                        time.perf_counter() - t0)
    columns = {**SUBTOMO_COLUMNS, **EXTRA_COLUMNS}
    if records and SUBTOMO_HALF_COLUMNS[0] in records[0]:
        columns.update({c: "None" for c in SUBTOMO_HALF_COLUMNS})
    new_table(columns, records, out_star).write()
    logger.info("wrote %s (%d subtomograms)", out_star, len(records))
    return out_star
