"""RELION-5 ``tomograms.star`` files, read as tomogram tables.

RELION-5 describes reconstructed tomograms in a ``data_global`` block (``_rlnTomoName``,
``_rlnTomoTiltSeriesPixelSize``, ``_rlnTomoTomogramBinning``, ``_rlnTomoReconstructedTomogram``
or, from split reconstructions, ``_rlnTomoReconstructedTomogramHalf1/2``) and keeps the tilt
images of each tilt series (nominal angles, defocus) in the STAR file named by
``_rlnTomoTiltSeriesStarFile`` or in a block named after the tomogram. :func:`relion5_table`
turns that into our tomogram table:

- ``_rlnMicrographName``: the full tomogram, or the average of the two halves written (streamed)
  to ``isonet_averages/<TomoName>.mrc`` beside the STAR file on first use;
- ``_rlnPixelSize``: tilt-series pixel size × tomogram binning (Å), else the MRC header's;
- ``_rlnDefocus``: mean of DefocusU/V of the tilt image nearest 0° (Å), else 0 (no deconv);
- ``_rlnTiltMin`` / ``_rlnTiltMax``: the extreme nominal tilt angles, else −60/60 with a warning.

The RELION file itself is never rewritten: the table is kept in ``<stem>_isonet.star`` beside
it, which later commands given the RELION file read back (unless the RELION file is newer).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from isonet_pl.errors import InputError
from isonet_pl.io.mrc import MrcWriter, iter_blocks, read_block, read_mrc_info

logger = logging.getLogger(__name__)

FULL_COLUMN = "rlnTomoReconstructedTomogram"
TILT_ANGLE_COLUMN = "rlnTomoNominalStageTiltAngle"
AVERAGE_FOLDER = "isonet_averages"


def relion5_block(blocks: dict) -> pd.DataFrame | None:
    """The tomogram block of a RELION-5 tomograms.star (``_rlnTomoName`` and tomogram paths), if any."""
    from isonet_pl.io.star import HALF_COLUMNS

    for df in blocks.values():
        if isinstance(df, pd.DataFrame) and "rlnTomoName" in df.columns and "rlnMicrographName" not in df.columns \
                and (FULL_COLUMN in df.columns or all(c in df.columns for c in HALF_COLUMNS)):
            return df
    return None


def isonet_copy(path: Path) -> Path:
    """Where the tomogram table made from a RELION-5 file is kept: ``<stem>_isonet.star`` beside it."""
    return path.with_name(f"{path.stem}_isonet.star")


def average_halves(even: Path, odd: Path, out: Path) -> Path:
    """Write (even + odd) / 2 as float32 MRC, streamed block by block, with the even half's header."""
    a, b = read_mrc_info(even), read_mrc_info(odd)
    if a.shape != b.shape:
        raise InputError(f"even half is {a.shape} (z, y, x), odd half {b.shape}", odd,
                         "use halves of one reconstruction")
    with MrcWriter(out, a.shape, "float32", a.voxel_size, a.origin) as writer:
        for (z0, z1), (y0, y1), block in iter_blocks(a, depth=16):
            other = read_block(b, (z0, z1), (y0, y1))
            writer.write((block.astype("float32") + other.astype("float32")) * 0.5, z0, y0)
    return out


def _tilt_images(blocks: dict, name: str, series_file: Path | None) -> pd.DataFrame | None:
    """The tilt images of one tilt series: a block named after it here, or its own STAR file."""
    df = blocks.get(name)
    if isinstance(df, pd.DataFrame) and TILT_ANGLE_COLUMN in df.columns:
        return df
    if series_file is None or not series_file.exists():
        return None
    try:
        series = starfile.read(series_file, always_dict=True)
    except Exception:
        return None
    tables = [t for t in series.values() if isinstance(t, pd.DataFrame) and TILT_ANGLE_COLUMN in t.columns]
    return series.get(name) if isinstance(series.get(name), pd.DataFrame) else (tables[0] if tables else None)


def _pixel_size(row: pd.Series, tomogram: Path) -> float:
    try:
        return float(row["rlnTomoTiltSeriesPixelSize"]) * float(row.get("rlnTomoTomogramBinning", 1.0))
    except (KeyError, TypeError, ValueError):
        return float(read_mrc_info(tomogram).voxel_size[2])


def relion5_table(path: Path, blocks: dict, global_df: pd.DataFrame):
    """Our tomogram table (a :class:`~isonet_pl.io.star.StarTable` at :func:`isonet_copy`) for a RELION-5 file.

    Writes the averages of split reconstructions when missing and the table itself.
    """
    from isonet_pl.io.star import HALF_COLUMNS, TOMOGRAM_COLUMNS, StarTable, new_table, read_star

    own = isonet_copy(path)
    if own.exists() and own.stat().st_mtime >= path.stat().st_mtime:
        logger.info("%s is a RELION-5 file: using its tomogram table %s", path, own)
        return read_star(own, required=("rlnMicrographName",), what="tomogram STAR file")
    resolver = StarTable(df=global_df, path=path)
    rows, warned = [], False
    for i in range(len(global_df)):
        row = global_df.iloc[i]
        name = str(row["rlnTomoName"])
        halves = [resolver.get_path(i, c, required=True) for c in HALF_COLUMNS] \
            if all(c in global_df.columns for c in HALF_COLUMNS) else []
        full = resolver.get_path(i, FULL_COLUMN, required=not halves) if FULL_COLUMN in global_df.columns else None
        if full is None:
            full = path.parent / AVERAGE_FOLDER / f"{name}.mrc"
            if not full.exists():
                full.parent.mkdir(parents=True, exist_ok=True)
                logger.info("%s: writing the average of its halves to %s", name, full)
                average_halves(halves[0], halves[1], full)
        series = resolver.get_path(i, "rlnTomoTiltSeriesStarFile", required=False) \
            if "rlnTomoTiltSeriesStarFile" in global_df.columns else None
        tilts = _tilt_images(blocks, name, series)
        record = {"rlnIndex": i + 1, "rlnMicrographName": resolver.relative(full),
                  "rlnPixelSize": _pixel_size(row, full), "rlnTomoName": name}
        if tilts is not None:
            angles = tilts[TILT_ANGLE_COLUMN].to_numpy(float)
            record.update(rlnTiltMin=float(angles.min()), rlnTiltMax=float(angles.max()))
            if "rlnDefocusU" in tilts.columns:
                zero = int(np.argmin(np.abs(angles)))
                v = tilts["rlnDefocusV"].iloc[zero] if "rlnDefocusV" in tilts.columns else tilts["rlnDefocusU"].iloc[zero]
                record["rlnDefocus"] = (float(tilts["rlnDefocusU"].iloc[zero]) + float(v)) / 2
        elif not warned:
            logger.warning("%s: no tilt images found for %s (its _rlnTomoTiltSeriesStarFile); assuming tilts "
                           "-60..60 and no defocus: set _rlnTiltMin/Max and _rlnDefocus in %s", path, name, own)
            warned = True
        for column, half in zip(HALF_COLUMNS, halves):
            record[column] = resolver.relative(half)
        rows.append(record)
    columns = {c: TOMOGRAM_COLUMNS[c] for c in ("rlnIndex", "rlnMicrographName", "rlnPixelSize", "rlnDefocus",
                                                "rlnNumberSubtomo", "rlnMaskBoundary", "rlnTiltMin", "rlnTiltMax")}
    columns["rlnTomoName"] = "None"
    if any(HALF_COLUMNS[0] in r for r in rows):
        columns.update({c: "None" for c in HALF_COLUMNS})
    table = new_table(columns, rows, own)
    table.write()
    logger.warning("%s is a RELION-5 file: its tomogram table is %s (the results of the next steps are recorded "
                   "there; the RELION file is not changed)", path, own)
    return table
