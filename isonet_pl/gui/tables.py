"""The tomogram table of the Preparation page: a STAR file as JSON rows, and back.

Reading and writing go through :mod:`isonet_pl.io.star`; a table from the page is
checked by reading it back with :func:`~isonet_pl.io.formats.read_tomogram_star` (the same
checks every command makes) before it replaces the file, atomically.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.star import (
    FLOAT_COLUMNS,
    INT_COLUMNS,
    NONE,
    TOMOGRAM_COLUMNS,
    Col,
    read_star,
    table_lock,
    write_star,
)


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def star_columns(path: Path) -> list[str]:
    """The column names of any STAR file (its first table), e.g. to tell whether subtomograms have halves.

    Raises
    ------
    InputError
        When the file is missing or not a STAR file.
    """
    import starfile

    if not path.is_file():
        raise InputError("file does not exist", path, "give an existing STAR file")
    try:
        data = starfile.read(path, always_dict=True)
    except Exception:
        raise InputError("not a STAR file", path, "give a STAR file written by isonet-pl or IsoNet") from None
    first = next(iter(data.values()), None)
    return [str(c) for c in getattr(first, "columns", [])]


def load_table(path: Path) -> dict[str, Any]:
    """A tomogram STAR file as ``{path, exists, columns, rows, defaults}`` (an empty table when missing).

    Read as the commands read it, so a RELION-5 ``tomograms.star`` gives the table kept beside
    it (``path`` then names that file). A table the commands would refuse (empty, or with
    a bad value) is still loaded as it is, to be fixed in the page.

    Raises
    ------
    InputError
        When the file exists but is not a tomogram STAR file.
    """
    defaults = {k: v for k, v in TOMOGRAM_COLUMNS.items() if k != Col.INDEX}
    if not path.exists():
        return {"path": str(path), "exists": False, "columns": list(TOMOGRAM_COLUMNS), "rows": [],
                "defaults": defaults}
    try:
        table = read_tomogram_star(path)
    except InputError as refused:
        try:
            table = read_star(path, required=(Col.TOMOGRAM,), what="tomogram STAR file")
        except InputError:
            raise refused from None
    df = table.df
    if Col.INDEX not in df.columns:
        df.insert(0, Col.INDEX, np.arange(1, len(df) + 1))
    rows = [{k: _json_value(v) for k, v in record.items()} for record in df.to_dict("records")]
    return {"path": str(table.path), "exists": True, "columns": list(df.columns), "rows": rows,
            "defaults": defaults, "version": file_version(table.path)}


def file_version(path: Path) -> str:
    """A fingerprint of a file's bytes ("" when it does not exist): the page sends back the one it loaded, so a
    save can tell that a command wrote the file since."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _text(value: Any) -> str:
    """A cell as text for comparison: no value is ``None``; numbers compare by value (``4`` == ``4.0``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in ("", NONE):
        return NONE
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value).strip()


def merge_rows(columns: list[str], rows: list[dict[str, Any]], base: list[dict[str, Any]], current: pd.DataFrame,
               path: Path) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """The page's rows with what the file gained since the page loaded it (``base``, the rows as loaded).

    Page rows carry ``__base``, their position in ``base`` (new rows: none); they are matched to the file's rows
    by their tomogram as loaded (a renumbered table still matches). A cell the user left as loaded takes the
    file's current value (e.g. a job's result); a cell both changed differently is a conflict. Rows the file
    gained are appended; rows the user deleted stay deleted.

    Returns
    -------
    (columns, rows, taken)
        The merged table and a line per cell taken from the file.

    Raises
    ------
    InputError
        Listing the conflicts (row, column, the page's, the file's and the loaded value).
    """
    by_tomogram = {_text(r.get(Col.TOMOGRAM)): r for r in current.to_dict("records")}
    loaded = {_text(b.get(Col.TOMOGRAM)) for b in base}
    columns = list(columns) + [c for c in current.columns if c not in columns]
    merged, taken, conflicts = [], [], []
    for n, row in enumerate(rows, start=1):
        index = row.get("__base")
        b = base[index] if isinstance(index, int) and 0 <= index < len(base) else None
        now = by_tomogram.get(_text(b.get(Col.TOMOGRAM))) if b is not None else None
        row = dict(row)
        if now is not None:
            for col in columns:
                if col == Col.INDEX:
                    continue
                mine, was, theirs = _text(row.get(col)), _text(b.get(col)), _text(now.get(col))
                if theirs == was or theirs == mine:
                    continue
                if mine == was:
                    row[col] = _json_value(now.get(col))
                    taken.append(f"row {n} _{col} = {now.get(col)}")
                else:
                    conflicts.append(f"row {n} _{col}: yours {row.get(col)}, the file's now {now.get(col)} "
                                     f"(was {b.get(col)})")
        merged.append(row)
    for key, record in by_tomogram.items():
        if key not in loaded:
            merged.append({k: _json_value(v) for k, v in record.items()})
            taken.append(f"row {len(merged)} ({record.get(Col.TOMOGRAM)}) added")
    if conflicts:
        raise InputError(f"the table changed since the page loaded it and your edits clash with it: "
                         f"{'; '.join(conflicts[:3])}", path, "Load the table again and redo those edits")
    return columns, merged, taken


def _frame(columns: list[str], rows: list[dict[str, Any]], target: Path) -> pd.DataFrame:
    """The rows as a DataFrame, numbers checked, ``rlnIndex`` renumbered 1..n (as IsoNet's GUI does)."""
    if Col.TOMOGRAM not in columns:
        raise InputError("the table has no rlnMicrographName column", target, "add it")
    columns = [Col.INDEX] + [c for c in columns if c != Col.INDEX]
    records = []
    for n, row in enumerate(rows, start=1):
        record = {}
        for col in columns:
            value = row.get(col)
            if col in INT_COLUMNS | FLOAT_COLUMNS and col != Col.INDEX:
                text = "" if value is None else str(value).strip()
                try:
                    number = float(text)
                except ValueError:
                    raise InputError(f"row {n}: _{col} {text!r} is not a number", target,
                                     "type a number in that cell") from None
                if col in INT_COLUMNS and number != int(number):
                    raise InputError(f"row {n}: _{col} {text!r} is not a whole number", target,
                                     "type a whole number in that cell")
                value = int(number) if col in INT_COLUMNS else number
            elif value is None or str(value).strip() == "":
                value = NONE
            record[col] = value
        record[Col.INDEX] = n
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


def save_table(path: Path, columns: list[str], rows: list[dict[str, Any]], scratch: Path,
               version: str | None = None, base: list[dict[str, Any]] | None = None) -> list[str]:
    """Check the rows from the page as every command would, then write them to ``path`` atomically.

    When the file changed since the page loaded it (its :func:`file_version` differs from ``version``), what it
    gained is merged in first (:func:`merge_rows`, with ``base``, the rows as loaded); without ``base`` the save
    is refused rather than drop a command's results.

    Parameters
    ----------
    path : Path
        The STAR file to write.
    columns, rows : list
        The table as the page holds it (cells may be text).
    scratch : Path
        A folder for the check file.
    version, base : optional
        The file's fingerprint and rows when the page loaded it.

    Returns
    -------
    list of str
        The cells taken from the file (empty when nothing was merged).

    Raises
    ------
    InputError
        Naming the row and column at fault; the file is left as it was.
    """
    with table_lock(path):  # not while a command rewrites it
        taken: list[str] = []
        if version is not None and file_version(path) != version:
            if base is None:
                raise InputError("the table changed since the page loaded it", path,
                                 "Load the table again and redo your edits")
            current = read_star(path, required=(Col.TOMOGRAM,), what="tomogram STAR file").df if path.exists() \
                else pd.DataFrame(columns=[Col.TOMOGRAM])
            columns, rows, taken = merge_rows(columns, rows, base, current, path)
        df = _frame(columns, rows, path)
        if len(df):
            scratch.mkdir(parents=True, exist_ok=True)
            check = write_star(df, scratch / "check.star")
            try:
                read_tomogram_star(check)
            except InputError as exc:
                raise InputError(exc.problem, path, exc.fix) from None
            finally:
                check.unlink(missing_ok=True)
        write_star(df, path)
    return taken
