"""prepare_star and prepare_subtomo_star: STAR files from folders of volumes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from isonet_pl.config import PrepareStarConfig, PrepareSubtomoStarConfig
from isonet_pl.errors import InputError
from isonet_pl.io.formats import half_key
from isonet_pl.io.mrc import read_mrc_info
from isonet_pl.io.paths import check_output_dir
from isonet_pl.io.relion import average_halves
from isonet_pl.io.star import HALF_COLUMNS, SUBTOMO_COLUMNS, Col, new_table, relative_to
from isonet_pl.project import tomogram_table

logger = logging.getLogger(__name__)

TOMOGRAM_SUFFIXES = (".mrc", ".rec")
def list_tomograms(folder: str | Path) -> list[Path]:
    """The ``.mrc`` / ``.rec`` files of ``folder``, sorted by name (checked to be 3-D MRC)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("folder does not exist" if not folder.exists() else "not a folder", folder,
                         "give the folder that holds the tomograms")
    entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in TOMOGRAM_SUFFIXES)
    for p in entries:
        if p.is_symlink() and not p.exists():
            logger.warning("skipping %s: a link to a missing file (%s)", p, os.readlink(p))
    files = [p for p in entries if p.is_file()]
    if not files:
        raise InputError("no .mrc or .rec files in this folder", folder,
                         "give the folder that holds the tomograms (MRC format, .mrc or .rec)")
    for f in files:
        read_mrc_info(f)
    return files


def pair_halves(even: str | Path, odd: str | Path) -> list[tuple[str, Path, Path]]:
    """Even/odd half tomograms paired by name: ``(common name, even, odd)`` per pair, sorted.

    Files pair when both folders hold the same names (then paired as they are, even names that contain
    "even" or "odd"), else when they differ only by the half tag: ``<name>_EVN*`` / ``<name>_ODD*``
    (AreTomo3, e.g. ``TS_01_EVN_Vol.mrc``), ``<name>_even*`` / ``<name>_odd*`` or ``<name>_half1*`` /
    ``<name>_half2*``. ``even`` and ``odd`` may be one folder (AreTomo3's output folder): its files tagged
    as halves pair, the others (the full tomograms) are left out. The pairing is logged, a line per pair.

    Raises
    ------
    InputError
        For files without a partner, names that pair ambiguously, or halves of unequal shape or
        voxel size.
    """
    one_folder = os.path.realpath(even) == os.path.realpath(odd)
    files = {side: list_tomograms(folder) for side, folder in (("even", even), ("odd", odd))}
    identical = not one_folder and {p.stem for p in files["even"]} == {p.stem for p in files["odd"]}
    sides = {}
    for side, folder in (("even", even), ("odd", odd)):
        keyed: dict[str, list[Path]] = {}
        for path in files[side]:
            tagged = half_key(path.stem)
            if identical:  # the same names in both folders: paired as they are, whatever they contain
                key = path.stem
            elif tagged is not None and tagged[1] == side:
                key = tagged[0]
            elif one_folder:  # both halves (and the full tomograms) side by side: only this side's tag counts
                continue
            else:
                key = path.stem
            keyed.setdefault(key, []).append(path)
        clashes = {k: v for k, v in keyed.items() if len(v) > 1}
        if clashes:
            key, paths = next(iter(clashes.items()))
            raise InputError(f"{', '.join(p.name for p in paths)} would all pair as {key!r}", Path(folder),
                             "keep one half tomogram per name in each folder")
        sides[side] = {k: v[0] for k, v in keyed.items()}
    evens, odds = sides["even"], sides["odd"]
    unmatched = sorted(set(evens) ^ set(odds))
    if unmatched:
        where = [f"{(evens.get(n) or odds.get(n)).name} only in {'--even' if n in evens else '--odd'}"
                 for n in unmatched[:5]]
        raise InputError(f"half tomograms without a partner: {', '.join(where)}", Path(even),
                         "give the same names in both folders, or <name>_EVN/<name>_ODD (also _even/_odd)")
    pairs = []
    for name in sorted(evens):
        a, b = read_mrc_info(evens[name]), read_mrc_info(odds[name])
        if a.shape != b.shape:
            raise InputError(f"even half is {a.shape} (z, y, x), odd half {b.shape}", odds[name],
                             "use halves of one reconstruction")
        if any(abs(x - y) > 1e-3 * max(abs(x), 1) for x, y in zip(a.voxel_size, b.voxel_size, strict=False)):
            raise InputError(f"voxel size {b.voxel_size} differs from the even half's {a.voxel_size}", odds[name],
                             "use halves of one reconstruction")
        logger.info("paired %s with %s as %s", evens[name].name, odds[name].name, name)
        pairs.append((name, evens[name], odds[name]))
    return pairs


def pixel_size_of(files: list[Path], given: float | None) -> float:
    """The pixel size for the table: ``--pixel_size`` when given (warned where a header disagrees), else the
    MRC headers' (which must agree and be set).

    Raises
    ------
    InputError
        When it is not given and a header has none, or the headers disagree.
    """
    sizes = {f: read_mrc_info(f).voxel_size[2] for f in files}
    if given is not None:
        for f, size in sizes.items():
            if size > 0 and abs(size - 1.0) > 1e-6 and abs(size - given) > 0.01 * given:
                logger.warning("%s: header pixel size %.4g Å differs from --pixel_size %.4g Å; the STAR file uses "
                               "%.4g", f, size, given, given)
        return given
    unset = [f for f, size in sizes.items() if size <= 0 or abs(size - 1.0) < 1e-6]
    if unset:
        raise InputError("the MRC header gives no pixel size (0 or 1 Å)", unset[0], "give --pixel_size in Å")
    first = next(iter(sizes.values()))
    differ = [f for f, size in sizes.items() if abs(size - first) > 0.01 * first]
    if differ:
        raise InputError(f"header pixel size {sizes[differ[0]]:.4g} Å differs from {first:.4g} Å of "
                         f"{files[0].name}", differ[0], "give --pixel_size, or bin the tomograms alike")
    logger.info("pixel size %.4g Å from the MRC headers", first)
    return float(first)


def prepare_star(folder_name: str | Path, cfg: PrepareStarConfig | None = None) -> Path:
    """Write a tomogram STAR file (IsoNet's columns plus the tilt range) for a folder of tomograms.

    Parameters
    ----------
    folder_name : str or Path
        Folder of tomograms (``.mrc`` / ``.rec``, 3-D, Z = thickness, Y = tilt axis). With
        ``cfg.even`` / ``cfg.odd``, the folder of the full tomograms: the average of each pair
        of halves is written there (streamed) when it is missing.
    cfg : PrepareStarConfig
        Output file, pixel size (Å), defocus (Å), subtomograms per tomogram, tilt range, halves.

    Returns
    -------
    Path
        The STAR file written.
    """
    cfg = cfg or PrepareStarConfig()
    if Path(cfg.output_star).exists() and not cfg.overwrite:
        raise InputError("exists; prepare_star would replace it and the results recorded in its rows", cfg.output_star,
                         "give --overwrite to replace it, or choose another --output_star")
    pairs = []
    if cfg.even is not None:
        pairs = pair_halves(cfg.even, cfg.odd)
        folder = check_output_dir(folder_name, option="FOLDER_NAME")
        files = []
        for name, even, odd in pairs:
            full = folder / f"{name}{even.suffix}"
            if not full.exists():
                logger.info("writing the average of %s and %s to %s", even, odd, full)
                average_halves(even, odd, full)
            files.append(full)
    else:
        files = list_tomograms(folder_name)
    pixel_size = pixel_size_of(files, cfg.pixel_size)
    table = tomogram_table(files, cfg.output_star, cfg.model_copy(update={"pixel_size": pixel_size}))
    if pairs:
        for column, index in zip(HALF_COLUMNS, (1, 2), strict=False):
            table.df[column] = [relative_to(p[index], Path(cfg.output_star).parent) for p in pairs]
    table.write()
    logger.info("wrote %s: %d tomogram(s), pixel size %g Å, tilt range %g..%g°", cfg.output_star, len(files),
                pixel_size, cfg.tilt_min, cfg.tilt_max)
    return Path(cfg.output_star)


def default_cube_size(crop_size: int) -> int:
    """IsoNet's training cube for a subtomogram edge: ``int(crop/1.5 + 1) // 16 * 16``."""
    return int(crop_size / 1.5 + 1) // 16 * 16


def prepare_subtomo_star(folder_name: str | Path, cfg: PrepareSubtomoStarConfig | None = None) -> Path:
    """Write a subtomogram STAR file for a folder of cubic subtomograms made elsewhere.

    Files that are not readable cubic 3-D MRC volumes are skipped with a warning.
    ``rlnCropSize`` is each file's edge; ``rlnCubeSize`` is ``cfg.cube_size`` or, if unset
    or not below the edge, IsoNet's default (e.g. 96 -> 64).
    """
    cfg = cfg or PrepareSubtomoStarConfig()
    if not {"tilt_min", "tilt_max"} & cfg.model_fields_set:
        logger.warning("no --tilt_min/--tilt_max given: the subtomograms are taken as tilted %g..%g degrees",
                       cfg.tilt_min, cfg.tilt_max)
    folder = Path(folder_name)
    if not folder.is_dir():
        raise InputError("folder does not exist" if not folder.exists() else "not a folder", folder,
                         "give the folder of subtomograms")
    out_folder = Path(cfg.output_star).parent
    rows = []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            info = read_mrc_info(f)
        except InputError as exc:
            logger.warning("skipping %s", exc)
            continue
        if len(set(info.shape)) != 1:
            logger.warning("skipping %s: not a cube (%s)", f, "x".join(map(str, info.shape)))
            continue
        crop = info.shape[2]
        cube = cfg.cube_size
        if cube is None or cube >= crop:
            if cube is not None:
                logger.warning("cube_size %d is not below the subtomogram edge %d; using %d", cube, crop,
                               default_cube_size(crop))
            cube = default_cube_size(crop)
        if cube < 8:
            logger.warning("skipping %s: too small (%d voxels) for a training cube", f, crop)
            continue
        rows.append({Col.SUBTOMO_INDEX: len(rows) + 1, Col.IMAGE: relative_to(f, out_folder),
                     Col.CUBE_SIZE: cube, Col.CROP_SIZE: crop, Col.PIXEL_SIZE: cfg.pixel_size,
                     Col.TILT_MIN: cfg.tilt_min, Col.TILT_MAX: cfg.tilt_max})
    if not rows:
        raise InputError("no readable cubic MRC subtomograms in this folder", folder,
                         "give the folder of subtomograms (MRC, cubic)")
    new_table(SUBTOMO_COLUMNS, rows, cfg.output_star).write()
    logger.info("wrote %s: %d subtomogram(s)", cfg.output_star, len(rows))
    return Path(cfg.output_star)
