"""Tomogram tables as users bring them: IsoNet 0.2, IsoNet2 and RELION-5, told apart by their columns.

=========  ===================================================================================
format     how it is recognised, and how it is read
=========  ===================================================================================
IsoNet 0.2 ``_rlnMicrographName`` (our own tables too): read and updated in place, as IsoNet does.
IsoNet2    ``_rlnTomoName`` with per-row ``_rlnPixelSize`` (or ``_rlnIndex``/``_rlnNumberSubtomo``)
           and ``_rlnTomoReconstructedTomogramHalf1/2``: ``_rlnTomoName`` is the full tomogram's path
           or ``None`` (halves only: their average is written to ``isonet_averages/``); per-row
           pixel size, defocus, voltage, Cs, amplitude contrast, tilt range, subtomogram count,
           mask boundary, mask and deconvolved tomogram are kept.
RELION-5   ``_rlnTomoName`` (a name) with ``_rlnTomoReconstructedTomogram`` or its halves and
           ``_rlnTomoTiltSeriesPixelSize``: see :mod:`isonet_pl.io.relion`.
=========  ===================================================================================

The user's IsoNet2 or RELION-5 file is never written: our table is ``<stem>_isonet.star`` beside it
(a *derived table*), and later commands given the user's file read that one back. When the user's
file changes after the derived table was made (a rerun job, a copy), its rows are merged into the
derived table instead of replacing it (:func:`merge_rows`): tomograms whose input files are
unchanged keep their row as it is (results and hand edits), new ones are added, removed ones are
dropped with a warning, and a tomogram whose input files changed takes the new values and has its
results (deconvolved, mask, corrected) reset, with a warning.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from isonet_pl.errors import InputError

logger = logging.getLogger(__name__)

ISONET, ISONET2, RELION5 = "IsoNet 0.2", "IsoNet2", "RELION-5"
AVERAGE_FOLDER = "isonet_averages"
#: Columns that hold results of our commands; reset when a tomogram's input files change.
RESULT_COLUMNS = ("rlnDeconvTomoName", "rlnDeconvTomoHalf1", "rlnDeconvTomoHalf2", "rlnMaskName",
                  "rlnCorrectedTomoName")
#: Columns of a derived table that name its input files (the tomogram and its halves).
INPUT_COLUMNS = ("rlnMicrographName", "rlnTomoReconstructedTomogramHalf1", "rlnTomoReconstructedTomogramHalf2")
#: IsoNet2 columns taken over as they are (numbers, and paths of earlier results).
ISONET2_NUMBERS = ("rlnPixelSize", "rlnDefocus", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                   "rlnPhaseShift", "rlnTiltMin", "rlnTiltMax", "rlnNumberSubtomo", "rlnSnrFalloff",
                   "rlnDeconvStrength", "rlnMaskDensityPercentage", "rlnMaskStdPercentage")
ISONET2_PATHS = ("rlnMaskBoundary", "rlnMaskName", "rlnDeconvTomoName")
_HALF_TAG = re.compile(r"^(?P<stem>.+?)[_.-](?P<tag>EVN|ODD|even|odd|Even|Odd|half1|half2)(?P<rest>[_.-].*)?$")


def half_key(stem: str) -> tuple[str, str] | None:
    """(common name, ``even``/``odd``) of a half tomogram's file stem, or None without a tag.

    ``TS_01_EVN`` and ``TS_01_ODD_Vol`` (AreTomo3), ``TS_01_even`` / ``TS_01_odd`` and ``rec_TS_01_half1``
    give ``TS_01``, ``TS_01_Vol``, ``TS_01``, ``rec_TS_01``.
    """
    match = _HALF_TAG.match(stem)
    if match is None:
        return None
    tag = match.group("tag").lower()
    return match.group("stem") + (match.group("rest") or ""), "even" if tag in ("evn", "even", "half1") else "odd"


def detect(blocks: dict) -> tuple[str, pd.DataFrame]:
    """(format, the block holding the tomograms) of a parsed STAR file.

    Raises
    ------
    InputError
        When no block looks like a tomogram table (the caller adds the file name).
    """
    from isonet_pl.io.star import HALF_COLUMNS

    tables = [df for df in blocks.values() if isinstance(df, pd.DataFrame)]
    for df in tables:
        if "rlnMicrographName" in df.columns:
            return ISONET, df
    for df in tables:
        cols = set(df.columns)
        if "rlnTomoName" in cols and ("rlnTomoReconstructedTomogram" in cols or set(HALF_COLUMNS) <= cols
                                      or "rlnTomoTiltSeriesPixelSize" in cols):
            isonet2 = bool(cols & {"rlnPixelSize", "rlnIndex", "rlnNumberSubtomo"}) and \
                "rlnTomoTiltSeriesPixelSize" not in cols
            return (ISONET2 if isonet2 else RELION5), df
    raise InputError("missing required column(s) _rlnMicrographName (IsoNet 0.2), or _rlnTomoName with tomogram "
                     "paths (IsoNet2, RELION-5)")


def derived_path(path: Path) -> Path:
    """Where the table made from a user's IsoNet2 or RELION-5 file is kept: ``<stem>_isonet.star`` beside it."""
    return path.with_name(f"{path.stem}_isonet.star")


def _is_none(value) -> bool:
    from isonet_pl.io.star import is_none

    return is_none(value)


def isonet2_rows(path: Path, df: pd.DataFrame) -> list[dict]:
    """Our rows for an IsoNet2 ``tomograms.star`` (writes the averages of halves-only rows when missing)."""
    from isonet_pl.io.relion import average_halves
    from isonet_pl.io.star import HALF_COLUMNS, StarTable, relative_to

    resolver = StarTable(df=df.reset_index(drop=True), path=path)
    ignored = sorted(c for c in df.columns if c not in {"rlnIndex", "rlnTomoName", *HALF_COLUMNS, *ISONET2_NUMBERS,
                                                        *ISONET2_PATHS})
    if ignored:
        logger.info("%s: columns not used by isonet-pl: %s", path.name, ", ".join("_" + c for c in ignored))
    rows = []
    for i in range(len(resolver.df)):
        src = resolver.df.iloc[i]
        halves = [resolver.get_path(i, c) for c in HALF_COLUMNS if c in resolver.df.columns
                  and not _is_none(src[c])]
        if len(halves) == 1:
            raise InputError(f"row {i + 1} has one half tomogram only", path, "give both halves, or neither")
        full = None if _is_none(src.get("rlnTomoName")) else resolver.get_path(i, "rlnTomoName")
        if full is None and not halves:
            raise InputError(f"row {i + 1} has neither a tomogram (_rlnTomoName) nor halves", path,
                             "fill in _rlnTomoName or _rlnTomoReconstructedTomogramHalf1/2")
        if full is not None:
            key = full.stem
        else:
            named = half_key(halves[0].stem)
            key = named[0] if named else halves[0].stem
            full = path.parent / AVERAGE_FOLDER / f"{key}.mrc"
            if not full.exists():
                full.parent.mkdir(parents=True, exist_ok=True)
                logger.info("%s row %d: writing the average of its halves to %s", path.name, i + 1, full)
                average_halves(halves[0], halves[1], full)
        record = {"rlnIndex": int(src["rlnIndex"]) if "rlnIndex" in src and not _is_none(src["rlnIndex"]) else i + 1,
                  "rlnMicrographName": relative_to(full, path.parent), "rlnTomoName": key}
        for column, half in zip(HALF_COLUMNS, halves, strict=False):
            record[column] = relative_to(half, path.parent)
        for column in ISONET2_NUMBERS:
            if column in src and not _is_none(src[column]):
                record[column] = src[column]
        for column in ISONET2_PATHS:
            if column in src and not _is_none(src[column]):
                record[column] = relative_to(resolver.resolve(src[column]), path.parent)
        rows.append(record)
    return rows


def merge_rows(own: Path, old: pd.DataFrame, new: list[dict], source: Path) -> pd.DataFrame:
    """The derived table ``old`` updated with the rows ``new`` converted anew from ``source``.

    Rows are matched by ``_rlnTomoName``. See the module's docstring for the rules; the user is
    told what changed in one warning.
    """
    by_name = {str(n): r for r, n in enumerate(old["rlnTomoName"])} if "rlnTomoName" in old.columns else {}
    merged, added, updated = [], [], []
    next_index = int(pd.to_numeric(old["rlnIndex"], errors="coerce").max()) + 1 if len(old) else 1
    for record in new:
        r = by_name.pop(str(record["rlnTomoName"]), None)
        if r is None:
            record = {**record, "rlnIndex": next_index}
            next_index += 1
            added.append(record["rlnTomoName"])
            merged.append(record)
            continue
        row = old.iloc[r].to_dict()
        if any(str(row.get(c)) != str(record.get(c, "None")) for c in INPUT_COLUMNS if c in row or c in record):
            row.update({k: v for k, v in record.items() if k != "rlnIndex"})
            row.update({c: "None" for c in RESULT_COLUMNS if c in row})
            updated.append(record["rlnTomoName"])
        merged.append(row)
    removed = list(by_name)
    if added or removed or updated:
        logger.warning("%s changed since %s was made: %s; the other rows and their results are kept", source.name,
                       own.name, "; ".join(part for part in (
                           f"added {', '.join(map(str, added))}" if added else "",
                           f"dropped {', '.join(removed)} (no longer in it)" if removed else "",
                           f"input files changed for {', '.join(map(str, updated))} (their deconvolved, mask and "
                           "corrected results were reset)" if updated else "") if part))
    columns = list(old.columns) + [c for rec in merged for c in rec if c not in old.columns]
    return _filled(pd.DataFrame.from_records(merged, columns=list(dict.fromkeys(columns))))


#: Values of microscope columns for rows that lack them when others have them (the deconv options' defaults).
MICROSCOPE_DEFAULTS = {"rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.07,
                       "rlnPhaseShift": 0.0}


def _filled(frame: pd.DataFrame) -> pd.DataFrame:
    """Empty cells of a table made from rows with different columns: the column's default (``None`` for paths,
    :data:`MICROSCOPE_DEFAULTS` for the microscope)."""
    from isonet_pl.io.star import NONE, TOMOGRAM_COLUMNS

    for column in frame.columns:
        if frame[column].isna().any():
            default = TOMOGRAM_COLUMNS.get(column, MICROSCOPE_DEFAULTS.get(column))
            frame[column] = frame[column].astype(object).where(frame[column].notna(),
                                                               NONE if default is None else default)
    return frame


def derived_table(path: Path, blocks: dict, kind: str, block: pd.DataFrame):
    """Our table (a :class:`~isonet_pl.io.star.StarTable` at :func:`derived_path`) for an IsoNet2 or RELION-5
    file: made on first use, reused while the user's file is unchanged, merged when it changed."""
    from isonet_pl.io.relion import relion5_rows
    from isonet_pl.io.star import TOMOGRAM_COLUMNS, new_table, read_star, table_lock

    own = derived_path(path)
    with table_lock(own):
        if own.exists() and own.stat().st_mtime >= path.stat().st_mtime:
            logger.debug("%s: using its table %s", path, own)
            return read_star(own, required=("rlnMicrographName",), what="tomogram STAR file")
        rows = relion5_rows(path, blocks, block) if kind == RELION5 else isonet2_rows(path, block)
        if own.exists():
            old = read_star(own, required=("rlnMicrographName",), what="tomogram STAR file")
            old.df = merge_rows(own, old.df, rows, path)
            old.write()
            return old
        columns = {c: TOMOGRAM_COLUMNS[c] for c in ("rlnIndex", "rlnMicrographName", "rlnPixelSize", "rlnDefocus",
                                                    "rlnNumberSubtomo", "rlnMaskBoundary", "rlnTiltMin", "rlnTiltMax")}
        for record in rows:
            columns.update({c: None for c in record if c not in columns})
        table = new_table(columns, rows, own)
        table.df = _filled(table.df)
        table.write()
        logger.warning("%s is a %s file: its tomogram table is %s (the results of the next steps are recorded there; "
                       "the %s file is not changed)", path, kind, own, kind)
        return table


def describe(kind: str, table) -> str:
    """One line on what was read, e.g. ``IsoNet2 tomograms.star: 2 tomograms with halves``."""
    from isonet_pl.io.star import HALF_COLUMNS

    n = len(table.df)
    with_halves = int(sum(not _is_none(v) for v in table.df[HALF_COLUMNS[0]])) if HALF_COLUMNS[0] in table.df else 0
    what = f"{n} tomogram{'s' if n != 1 else ''}"
    if with_halves:
        what += " with halves" if with_halves == n else f" ({with_halves} with halves)"
    return f"{kind} {table.path.name if kind == ISONET else table.path.name + ' (from ' + kind + ')'}: {what}"


__all__ = ["ISONET", "ISONET2", "RELION5", "detect", "derived_path", "derived_table", "half_key", "merge_rows",
           "isonet2_rows", "describe"]
