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
- ``_rlnTiltMin`` / ``_rlnTiltMax``: the extreme aligned tilts (``_rlnTomoYTilt``, what the reconstruction
  used), else the nominal stage angles (warned), else −60/60 (warned);
- ``_rlnVoltage``, ``_rlnSphericalAberration``, ``_rlnAmplitudeContrast``: as given, for deconv.

RELION writes paths relative to its project folder; they are found from anywhere inside the
project (the folders above the STAR file are searched), so no particular working folder is
needed. The RELION file itself is never rewritten (see :mod:`isonet_pl.io.formats`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from isonet_pl.errors import InputError
from isonet_pl.io.mrc import MrcWriter, iter_blocks, read_block, read_mrc_info
from isonet_pl.io.star import HALF_COLUMNS, StarTable, is_none, relative_to

logger = logging.getLogger(__name__)

FULL_COLUMN = "rlnTomoReconstructedTomogram"
TILT_ANGLE_COLUMN = "rlnTomoNominalStageTiltAngle"
#: The tilt of each image as aligned, which RELION-5 reconstructs from (per tomogram, in its tilt-series file).
ALIGNED_TILT_COLUMN = "rlnTomoYTilt"
#: Where the averages of split reconstructions (and IsoNet2's halves-only rows) are written, beside the STAR file.
AVERAGE_FOLDER = "isonet_averages"
#: Key of a converted row whose tomogram is the average of its halves: (even, odd), to be written.
AVERAGE_OF = "_average_of"
#: Microscope columns of ``data_global`` taken over per tomogram.
MICROSCOPE = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
#: How many folders above the STAR file are searched for RELION's project-relative paths.
PROJECT_DEPTH = 4


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


def _has_tilts(df: pd.DataFrame) -> bool:
    return TILT_ANGLE_COLUMN in df.columns or ALIGNED_TILT_COLUMN in df.columns


def _tilt_images(blocks: dict, name: str, series_file: Path | None) -> pd.DataFrame | None:
    """The tilt images of one tilt series: a block named after it here, or its own STAR file."""
    df = blocks.get(name)
    if isinstance(df, pd.DataFrame) and _has_tilts(df):
        return df
    if series_file is None or not series_file.exists():
        return None
    try:
        series = starfile.read(series_file, always_dict=True)
    except Exception:
        return None
    tables = [t for t in series.values() if isinstance(t, pd.DataFrame) and _has_tilts(t)]
    return series.get(name) if isinstance(series.get(name), pd.DataFrame) else (tables[0] if tables else None)


def _pixel_size(row: pd.Series, tomogram: Path) -> float:
    try:
        return float(row["rlnTomoTiltSeriesPixelSize"]) * float(row.get("rlnTomoTomogramBinning", 1.0))
    except (KeyError, TypeError, ValueError):
        return float(read_mrc_info(tomogram).voxel_size[2])


def relion5_rows(path: Path, blocks: dict, global_df: pd.DataFrame) -> list[dict]:
    """Our rows for a RELION-5 ``tomograms.star``; a split reconstruction names the average of its halves to make
    (``AVERAGE_OF``), written by :func:`~isonet_pl.io.formats.derived_table`.

    Raises
    ------
    InputError
        For a tomogram or half that cannot be found, naming the row and where it was looked for.
    """


    resolver = StarTable(df=global_df.reset_index(drop=True), path=path,
                         roots=tuple(path.resolve().parents[1:PROJECT_DEPTH + 1]))
    rows, unseen, nominal = [], [], []
    for i in range(len(resolver.df)):
        row = resolver.df.iloc[i]
        name = str(row["rlnTomoName"])
        halves = [resolver.get_path(i, c, required=True) for c in HALF_COLUMNS] \
            if all(c in resolver.df.columns for c in HALF_COLUMNS) and not any(
                is_none(row[c]) for c in HALF_COLUMNS) else []
        full = resolver.get_path(i, FULL_COLUMN, required=not halves) if FULL_COLUMN in resolver.df.columns else None
        average = None
        if full is None:
            full = path.parent / AVERAGE_FOLDER / f"{name}.mrc"
            average = (halves[0], halves[1])
        series = resolver.get_path(i, "rlnTomoTiltSeriesStarFile", required=False) \
            if "rlnTomoTiltSeriesStarFile" in resolver.df.columns else None
        tilts = _tilt_images(blocks, name, series)
        record = {"rlnIndex": i + 1, "rlnMicrographName": relative_to(full, path.parent),
                  "rlnPixelSize": _pixel_size(row, full), "rlnTomoName": name}
        record.update({c: float(row[c]) for c in MICROSCOPE if c in row and not is_none(row[c])})
        if tilts is not None:
            aligned = ALIGNED_TILT_COLUMN in tilts.columns
            angles = tilts[ALIGNED_TILT_COLUMN if aligned else TILT_ANGLE_COLUMN].to_numpy(float)
            if not aligned:
                nominal.append(name)
            record.update(rlnTiltMin=float(angles.min()), rlnTiltMax=float(angles.max()))
            if "rlnDefocusU" in tilts.columns:
                zero = int(np.argmin(np.abs(angles)))
                v_column = "rlnDefocusV" if "rlnDefocusV" in tilts.columns else "rlnDefocusU"
                v = tilts[v_column].iloc[zero]
                record["rlnDefocus"] = (float(tilts["rlnDefocusU"].iloc[zero]) + float(v)) / 2
        else:
            unseen.append(name)
        for column, half in zip(HALF_COLUMNS, halves, strict=False):
            record[column] = relative_to(half, path.parent)
        rows.append({**record, AVERAGE_OF: average} if average else record)
    if nominal:
        logger.warning("%s: the tilt series of %s are not aligned (no _rlnTomoYTilt): their tilt range is taken from "
                       "the nominal stage angles, which differ from the reconstruction's on a pre-tilted specimen; "
                       "check _rlnTiltMin/Max in its table", path, ", ".join(nominal))
    if unseen:
        logger.warning("%s: no tilt images found for %s (_rlnTomoTiltSeriesStarFile); assuming tilts -60..60 and "
                       "no defocus for them: set _rlnTiltMin/Max and _rlnDefocus in its table", path,
                       ", ".join(unseen))
    return rows
