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
derived table instead of replacing it (:func:`merge_rows`): every value the user's file changed
(a path, an edited defocus or pixel size, a rerun with another binning) and every input file
rewritten since (new halves under the same names) reaches its row, resets the results that depend
on it (deconvolved, mask, corrected) and remakes the average of its halves, with one warning naming
what changed; values the user's file did not change keep the table's (results and hand edits); new
tomograms are added, removed ones dropped. What the table was made from is recorded beside it
(:func:`state_path`), so a change is seen whatever the files' times say.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from isonet_pl.errors import InputError
from isonet_pl.io.relion import AVERAGE_FOLDER, AVERAGE_OF, average_halves, relion5_rows
from isonet_pl.io.star import (
    HALF_COLUMNS,
    INPUT_VOLUMES,
    MICROSCOPE_COLUMNS,
    NONE,
    RESULT_VOLUMES,
    TOMOGRAM_COLUMNS,
    StarTable,
    check_numbers,
    check_rows,
    is_none,
    new_table,
    read_blocks,
    read_star,
    relative_to,
    table_from_blocks,
    table_lock,
)

logger = logging.getLogger(__name__)

ISONET, ISONET2, RELION5 = "IsoNet 0.2", "IsoNet2", "RELION-5"
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

    tables = [df for df in blocks.values() if isinstance(df, pd.DataFrame)]
    _refuse_other_tables(tables)
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


#: Columns that mark a table of particles (coordinates in tomograms), not of tomograms.
_PARTICLE_COLUMNS = {"rlnCoordinateX", "rlnCenteredCoordinateXAngst", "rlnTomoParticleName", "rlnTomoParticleId"}
#: Columns that mark the tilt images of a tilt series (RELION-5's per-series files).
_TILT_IMAGE_COLUMNS = {"rlnTomoNominalStageTiltAngle", "rlnMicrographMovieName", "rlnTomoXTilt", "rlnTomoYTilt"}


def _refuse_other_tables(tables: list[pd.DataFrame]) -> None:
    """Refuse, before anything is written, the STAR files of cryo-ET projects that list no reconstructed
    tomograms, saying which file to give instead (the caller adds the file name).

    Raises
    ------
    InputError
        For a particle table (RELION, Warp), an optimisation set, a Warp tilt series (``.tomostar``), the tilt
        images of a tilt series, or a tilt-series table without reconstructions (RELION's
        ``aligned_tilt_series.star``, WarpTools' ``*_tomograms.star``).
    """

    columns = set().union(*(set(df.columns) for df in tables)) if tables else set()
    reconstructed = "rlnTomoReconstructedTomogram" in columns or set(HALF_COLUMNS) <= columns
    if columns & _PARTICLE_COLUMNS:
        raise InputError("is a particle table (coordinates of particles in tomograms), not a tomogram table; give "
                         "the table of the tomograms themselves (prepare_star on their folder, or RELION's "
                         "tomograms.star of a Reconstruct tomograms job)")
    if columns & {"rlnTomoTomogramsFile", "rlnTomoParticlesFile"}:
        named = next((str(df["rlnTomoTomogramsFile"].iloc[0]) for df in tables
                      if "rlnTomoTomogramsFile" in df.columns and len(df)), None)
        raise InputError("is a RELION optimisation set, not a tomogram table; give the tomograms.star it names"
                         + (f" ({named})" if named else ""))
    if any(c.startswith("wrp") for c in columns):
        raise InputError("is a Warp tilt series (.tomostar), not a tomogram table; reconstruct the tomograms "
                         "(WarpTools ts_reconstruct) and give their folder to prepare_star")
    if columns & _TILT_IMAGE_COLUMNS and not reconstructed:
        raise InputError("lists the tilt images of a tilt series, not reconstructed tomograms; give the "
                         "tomograms.star of a Reconstruct tomograms job, or the tomograms' folder to prepare_star")
    if "rlnTomoName" in columns and "rlnMicrographName" not in columns and not reconstructed:
        raise InputError("lists tilt series (_rlnTomoName) but no reconstructed tomogram files "
                         "(_rlnTomoReconstructedTomogram or its halves), as RELION's aligned_tilt_series.star and "
                         "WarpTools' *_tomograms.star do; give the tomograms.star of a Reconstruct tomograms job, or "
                         "the tomograms' folder to prepare_star")


def derived_path(path: Path) -> Path:
    """Where the table made from a user's IsoNet2 or RELION-5 file is kept: ``<stem>_isonet.star`` beside it."""
    return path.with_name(f"{path.stem}_isonet.star")


def _is_none(value) -> bool:

    return is_none(value)


def isonet2_rows(path: Path, df: pd.DataFrame) -> list[dict]:
    """Our rows for an IsoNet2 ``tomograms.star``; a halves-only row names the average to make
    (``AVERAGE_OF``: its two halves), written by :func:`derived_table`."""

    resolver = StarTable(df=df.reset_index(drop=True), path=path)
    ignored = sorted(c for c in df.columns if c not in {"rlnIndex", "rlnTomoName", *HALF_COLUMNS, *ISONET2_NUMBERS,
                                                        *ISONET2_PATHS})
    if ignored:
        logger.info("%s: columns not used by isonet-pl: %s", path.name, ", ".join("_" + c for c in ignored))
    rows, taken = [], set()
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
        if not _is_none(src.get("rlnBoxFile")):
            raise InputError(f"row {i + 1} names a coordinate file (_rlnBoxFile {src['rlnBoxFile']}); isonet-pl "
                             "draws subtomogram centres inside the mask and does not read IsoNet2 coordinate files",
                             path, "set _rlnBoxFile to None (and use make_mask to choose where subtomograms come "
                             "from)")
        average = None
        if full is not None:
            key = full.stem
        else:
            named = half_key(halves[0].stem)
            key = named[0] if named else halves[0].stem
            if key in taken:  # halves of one name in several folders: one average each
                key = f"{key}_{i + 1}"
            full = path.parent / AVERAGE_FOLDER / f"{key}.mrc"
            average = (halves[0], halves[1])
        taken.add(key)
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
        rows.append({**record, AVERAGE_OF: average} if average else record)
    return rows


def _text(value) -> str:
    """A cell as text for comparison (no value is ``None``; numbers by value)."""
    if _is_none(value):
        return "None"
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value).strip()


def _input_files(record: dict, folder: Path) -> dict[str, str | None]:
    """{path as recorded: :func:`_fingerprint` (None when missing)} of the volumes a converted row is made from:
    its halves and its tomogram (unless it is an average we make). What a tilt-series file gives (tilt range,
    defocus) is followed through the converted values."""
    columns = list(INPUT_VOLUMES[1:]) + ([] if record.get(AVERAGE_OF) else [INPUT_VOLUMES[0]])
    found = {}
    for column in columns:
        value = record.get(column)
        if _is_none(value):
            continue
        path = Path(str(value)) if Path(str(value)).is_absolute() else folder / str(value)
        found[str(value)] = _fingerprint(path)
    return found


def _fingerprint(path: Path, sample: int = 1 << 16) -> str | None:
    """What identifies a volume's content cheaply: its shape, type and voxel size and a digest of the first,
    middle and last 64 KiB of its voxels. A rewrite with other data shows; a copy, a touch or a header rewritten
    with another date does not, and a tomogram of gigabytes is not read whole."""
    import hashlib

    from isonet_pl.io.mrc import read_mrc_info

    try:
        info = read_mrc_info(path)
        digest = hashlib.sha256(repr((info.shape, str(info.dtype), info.voxel_size)).encode())
        end = info.data_offset + info.nbytes
        with open(path, "rb") as fh:
            for start in sorted({info.data_offset, max(info.data_offset, (info.data_offset + end - sample) // 2),
                                 max(info.data_offset, end - sample)}):
                fh.seek(start)
                digest.update(fh.read(min(sample, end - start)))
    except (OSError, InputError):
        return None
    return digest.hexdigest()[:32]


def _source_state(path: Path, rows: list[dict]) -> dict:
    """What a derived table was made from: the user's file's bytes (sha256) and, per tomogram, its converted
    values and its input files' fingerprints."""
    import hashlib

    return {"source": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": {str(r["rlnTomoName"]): {"values": {k: _text(v) for k, v in r.items() if not k.startswith("_")},
                                             "files": _input_files(r, path.parent)} for r in rows}}


def state_path(own: Path) -> Path:
    """The record of what a derived table was made from (:func:`_source_state`), hidden beside it."""
    return own.with_name(f".{own.name}.source.json")


def merge_rows(own: Path, old: pd.DataFrame, new: list[dict], source: Path, before: dict | None = None
               ) -> tuple[pd.DataFrame, set[str]]:
    """The derived table ``old`` updated with the rows ``new`` converted anew from ``source``.

    Rows are matched by ``_rlnTomoName``. A value the user's file changed since ``before`` (the state the table
    was made from, :func:`_source_state`; without it, every value that differs from the table's) replaces the
    table's; a change to anything but the subtomogram count, or to the content of an input file (a rerun job
    writing new halves under the same names), resets the row's results (deconvolved, mask, corrected) and
    remakes the average of its halves. Values the user's file did not change keep the table's (hand edits).
    New tomograms are added, removed ones dropped. The user is told what changed in one warning.

    Returns
    -------
    (DataFrame, set of str)
        The merged table and the names of the tomograms whose average of halves must be remade.
    """
    rows_before = (before or {}).get("rows", {})
    by_name = {str(n): r for r, n in enumerate(old["rlnTomoName"])} if "rlnTomoName" in old.columns else {}
    merged, added, changes, remake = [], [], [], set()
    next_index = int(pd.to_numeric(old["rlnIndex"], errors="coerce").max()) + 1 if len(old) else 1
    for record in new:
        name = str(record["rlnTomoName"])
        r = by_name.pop(name, None)
        values = {k: v for k, v in record.items() if not k.startswith("_")}
        if r is None:
            merged.append({**values, "rlnIndex": next_index})
            next_index += 1
            added.append(name)
            continue
        row = old.iloc[r].to_dict()
        was = rows_before.get(name)
        reference = was["values"] if was else {k: _text(row.get(k)) for k in values}
        changed = {k: v for k, v in values.items() if k != "rlnIndex" and reference.get(k) != _text(v)}
        files = _input_files(record, source.parent)
        rewritten = bool(was) and any(k in was.get("files", {}) and was["files"][k] != v for k, v in files.items())
        row.update(changed)
        what = [f"_{k} {reference.get(k, 'None')} -> {v}" for k, v in changed.items()]
        if rewritten:
            what.append("its input files were rewritten")
        if rewritten or set(changed) - {"rlnNumberSubtomo"}:
            row.update({c: "None" for c in RESULT_VOLUMES if c in row})
            if record.get(AVERAGE_OF):
                remake.add(name)
        if what:
            changes.append(f"{name}: {', '.join(what)}")
        merged.append(row)
    removed = list(by_name)
    if added or removed or changes:
        logger.warning("%s changed since %s was made: %s; what depends on a changed value (deconvolved, mask, "
                       "corrected) was reset; the other rows, results and your edits of the table are kept",
                       source.name, own.name, "; ".join(part for part in (
                           f"added {', '.join(map(str, added))}" if added else "",
                           f"dropped {', '.join(removed)} (no longer in it)" if removed else "",
                           "; ".join(changes)) if part))
    columns = list(old.columns) + [c for rec in merged for c in rec if c not in old.columns]
    return _filled(pd.DataFrame.from_records(merged, columns=list(dict.fromkeys(columns)))), remake


#: Values of microscope columns for rows that lack them when others have them (the deconv options' defaults).
MICROSCOPE_DEFAULTS = {"rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.07,
                       "rlnPhaseShift": 0.0}


def _filled(frame: pd.DataFrame) -> pd.DataFrame:
    """Empty cells of a table made from rows with different columns: the column's default (``None`` for paths,
    :data:`MICROSCOPE_DEFAULTS` for the microscope)."""

    for column in frame.columns:
        if frame[column].isna().any():
            default = TOMOGRAM_COLUMNS.get(column, MICROSCOPE_DEFAULTS.get(column))
            frame[column] = frame[column].astype(object).where(frame[column].notna(),
                                                               NONE if default is None else default)
    return frame


def derived_table(path: Path, blocks: dict, kind: str, block: pd.DataFrame):
    """Our table (a :class:`~isonet_pl.io.star.StarTable` at :func:`derived_path`) for an IsoNet2 or RELION-5
    file: made on first use, reused while the user's file and its input files are unchanged, updated when they
    changed (:func:`merge_rows`). The averages of halves are written (streamed) where missing or stale."""
    import json

    from isonet_pl.io.paths import atomic_path

    own = derived_path(path)
    with table_lock(own):
        rows = relion5_rows(path, blocks, block) if kind == RELION5 else isonet2_rows(path, block)
        state = _source_state(path, rows)
        try:
            before = json.loads(state_path(own).read_text())
        except (OSError, ValueError):
            before = None
        averages = {str(r["rlnTomoName"]): r[AVERAGE_OF] for r in rows if r.get(AVERAGE_OF)}
        missing = {name for name, _ in averages.items()
                   if not (path.parent / AVERAGE_FOLDER / f"{name}.mrc").exists()}
        if own.exists() and before == state and not missing:
            logger.debug("%s: using its table %s", path, own)
            return read_star(own, required=("rlnMicrographName",), what="tomogram STAR file")
        remake = set(missing)
        if own.exists():
            table = read_star(own, required=("rlnMicrographName",), what="tomogram STAR file")
            table.df, stale = merge_rows(own, table.df, rows, path, before)
            remake |= stale
        else:
            columns = {c: TOMOGRAM_COLUMNS[c] for c in ("rlnIndex", "rlnMicrographName", "rlnPixelSize",
                                                        "rlnDefocus", "rlnNumberSubtomo", "rlnMaskBoundary",
                                                        "rlnTiltMin", "rlnTiltMax")}
            for record in rows:
                columns.update({c: None for c in record if c not in columns and not c.startswith("_")})
            table = new_table(columns, [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], own)
            table.df = _filled(table.df)
            remake |= set(averages)
            logger.warning("%s is a %s file: its tomogram table is %s (the results of the next steps are recorded "
                           "there; the %s file is not changed)", path, kind, own, kind)
        for name in sorted(remake & set(averages)):
            out = path.parent / AVERAGE_FOLDER / f"{name}.mrc"
            out.parent.mkdir(parents=True, exist_ok=True)
            logger.info("%s: writing the average of its halves to %s", name, out)
            average_halves(*averages[name], out)
        table.write()
        with atomic_path(state_path(own)) as tmp:
            tmp.write_text(json.dumps(state))
        return table


def read_tomogram_star(path: str | Path) -> StarTable:
    """Read a tomogram STAR file of IsoNet 0.2 (or ours), IsoNet2 or RELION-5; adds ``rlnIndex`` (1..n) if absent.

    The format is told by :func:`detect` and logged in one line. An IsoNet2
    or RELION-5 file is converted by :func:`derived_table`: the table returned
    (and written) is ``<stem>_isonet.star`` beside it. Every row is validated here, before any
    command processes the first one.
    """
    checked, blocks = read_blocks(path, "tomogram STAR file")
    try:
        kind, block = detect(blocks)
    except InputError as exc:
        raise InputError(exc.problem, checked, "add them or make the file with prepare_star") from None
    if kind == ISONET:
        table = table_from_blocks(checked, blocks, required=("rlnMicrographName",))
    else:
        table = derived_table(checked, blocks, kind, block)
    if "rlnIndex" not in table.df.columns:
        table.df.insert(0, "rlnIndex", np.arange(1, len(table.df) + 1))
    if len(table.df) == 0:
        raise InputError("the tomogram table is empty", table.path, "add tomograms with prepare_star")
    check_numbers(table, ("rlnIndex", "rlnPixelSize", "rlnDefocus", "rlnNumberSubtomo", "rlnSnrFalloff",
                           "rlnDeconvStrength", "rlnMaskDensityPercentage", "rlnMaskStdPercentage", "rlnTiltMin",
                           "rlnTiltMax", *MICROSCOPE_COLUMNS))
    check_rows(table)
    logger.info("%s", describe(kind, table))
    return table


def describe(kind: str, table) -> str:
    """One line on what was read, e.g. ``IsoNet2 tomograms.star: 2 tomograms with halves``."""

    n = len(table.df)
    with_halves = int(sum(not _is_none(v) for v in table.df[HALF_COLUMNS[0]])) if HALF_COLUMNS[0] in table.df else 0
    what = f"{n} tomogram{'s' if n != 1 else ''}"
    if with_halves:
        what += " with halves" if with_halves == n else f" ({with_halves} with halves)"
    return f"{kind} {table.path.name if kind == ISONET else table.path.name + ' (from ' + kind + ')'}: {what}"


__all__ = ["ISONET", "ISONET2", "RELION5", "read_tomogram_star", "detect", "derived_path", "derived_table",
           "half_key", "merge_rows", "isonet2_rows", "describe"]
