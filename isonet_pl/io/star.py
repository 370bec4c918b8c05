"""Tomogram and subtomogram STAR tables, read and written through ``starfile``.

Columns keep IsoNet 0.2's names (``rlnMicrographName``, ``rlnPixelSize``, ... without
the leading underscore, as ``starfile`` gives them). isonet-pl adds the per-tomogram
tilt range ``rlnTiltMin`` / ``rlnTiltMax`` (degrees; default -60 / +60).

Conventions that match IsoNet-written files:

- the literal ``None`` (or an empty value) means "no file";
- relative paths (``tomos/a.mrc``, ``./deconv/a.mrc``) are relative to the folder of the
  STAR file; a path found only relative to the current folder is accepted too (IsoNet
  resolves against the folder it was run from);
- unknown columns are kept as they are and written back.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from isonet_pl.errors import InputError
from isonet_pl.io.paths import atomic_path, check_output_file, check_readable_file

logger = logging.getLogger(__name__)

NONE = "None"
DEFAULT_TILT_RANGE = (-60.0, 60.0)

#: Columns of a tomogram table, in IsoNet's order, with the value of a new column.
TOMOGRAM_COLUMNS: dict[str, object] = {
    "rlnIndex": None,
    "rlnMicrographName": NONE,
    "rlnPixelSize": 10.0,
    "rlnDefocus": 0.0,
    "rlnNumberSubtomo": 100,
    "rlnMaskBoundary": NONE,
    "rlnSnrFalloff": 1.0,
    "rlnDeconvStrength": 1.0,
    "rlnDeconvTomoName": NONE,
    "rlnMaskDensityPercentage": 50.0,
    "rlnMaskStdPercentage": 50.0,
    "rlnMaskName": NONE,
    "rlnCorrectedTomoName": NONE,
    "rlnTiltMin": DEFAULT_TILT_RANGE[0],
    "rlnTiltMax": DEFAULT_TILT_RANGE[1],
}
SUBTOMO_COLUMNS: dict[str, object] = {
    "rlnSubtomoIndex": None,
    "rlnImageName": NONE,
    "rlnCubeSize": 64,
    "rlnCropSize": 80,
    "rlnPixelSize": 10.0,
    "rlnTiltMin": DEFAULT_TILT_RANGE[0],
    "rlnTiltMax": DEFAULT_TILT_RANGE[1],
}
class Col:
    """Every STAR column name the package reads or writes outside ``io/`` (RELION's names), defined once."""

    INDEX = "rlnIndex"
    TOMOGRAM = "rlnMicrographName"
    PIXEL_SIZE = "rlnPixelSize"
    MASK_BOUNDARY = "rlnMaskBoundary"
    TILT_MIN = "rlnTiltMin"
    TILT_MAX = "rlnTiltMax"
    MASK_STD = "rlnMaskStdPercentage"
    MASK_DENSITY = "rlnMaskDensityPercentage"
    DEFOCUS = "rlnDefocus"
    CUBE_SIZE = "rlnCubeSize"
    CROP_SIZE = "rlnCropSize"
    P96 = "rlnTomoP96"
    P4 = "rlnTomoP4"
    STD = "rlnTomoStd"
    MEAN = "rlnTomoMean"
    SNR_FALLOFF = "rlnSnrFalloff"
    NUMBER_SUBTOMO = "rlnNumberSubtomo"
    IMAGE_HALF1 = "rlnImageNameHalf1"
    IMAGE_HALF2 = "rlnImageNameHalf2"
    IMAGE = "rlnImageName"
    DECONV_STRENGTH = "rlnDeconvStrength"
    SUBTOMO_INDEX = "rlnSubtomoIndex"
    MASK = "rlnMaskName"
    DECONV = "rlnDeconvTomoName"
    CORRECTED = "rlnCorrectedTomoName"
    X = "rlnCoordinateX"
    Y = "rlnCoordinateY"
    Z = "rlnCoordinateZ"
    HALF1 = "rlnTomoReconstructedTomogramHalf1"
    HALF2 = "rlnTomoReconstructedTomogramHalf2"
    DECONV_HALF1 = "rlnDeconvTomoHalf1"
    DECONV_HALF2 = "rlnDeconvTomoHalf2"
    TOMOGRAM_STAR = "rlnTomogramStarFile"  # of a subtomogram row: the tomogram table it was extracted from


#: The volume columns of a tomogram row: the tomogram, the deconvolved one, the mask, the corrected one.
TOMOGRAM_COLUMN, DECONV_COLUMN, MASK_COLUMN, CORRECTED_COLUMN = Col.TOMOGRAM, Col.DECONV, Col.MASK, Col.CORRECTED
#: RELION-5's columns of the even/odd half tomograms.
HALF_COLUMNS = (Col.HALF1, Col.HALF2)
#: Our columns of the deconvolved even/odd halves.
DECONV_HALF_COLUMNS = (Col.DECONV_HALF1, Col.DECONV_HALF2)
#: Microscope columns (RELION-5's ``data_global``, IsoNet2's rows) and the :class:`Microscope` field of each.
MICROSCOPE_COLUMNS = {"rlnVoltage": "voltage_kv", "rlnSphericalAberration": "cs_mm",
                      "rlnAmplitudeContrast": "amplitude_contrast", "rlnPhaseShift": "phase_shift_deg"}


@dataclass(frozen=True)
class ColumnSpec:
    """What a STAR column holds.

    Attributes
    ----------
    kind : str
        ``int``, ``float`` or ``path`` (``None`` for no file).
    volume : str or None
        For a volume: ``input`` (brought by the user), ``derived`` (written by a command and read by the next:
        the deconvolved tomograms) or ``result`` (written by a command: the mask, the corrected tomogram).
    label : str or None
        How the viewer names the volume.
    bounds : (float, float, bool) or None
        Allowed numbers: lowest, highest, whether the lowest itself is allowed.
    """

    kind: str
    volume: str | None = None
    label: str | None = None
    bounds: tuple[float, float, bool] | None = None


_ANY = (-np.inf, np.inf, True)
#: The one schema of the columns isonet-pl reads or writes (types, volumes, bounds); every list below comes from it.
SCHEMA: dict[str, ColumnSpec] = {
    Col.INDEX: ColumnSpec("int", bounds=(0, np.inf, True)),
    Col.SUBTOMO_INDEX: ColumnSpec("int", bounds=(0, np.inf, True)),
    Col.NUMBER_SUBTOMO: ColumnSpec("int", bounds=(1, 100_000, True)),
    Col.CUBE_SIZE: ColumnSpec("int", bounds=(8, np.inf, True)),
    Col.CROP_SIZE: ColumnSpec("int", bounds=(8, np.inf, True)),
    Col.PIXEL_SIZE: ColumnSpec("float", bounds=(0, np.inf, False)),
    Col.DEFOCUS: ColumnSpec("float", bounds=(0, np.inf, True)),
    Col.SNR_FALLOFF: ColumnSpec("float", bounds=(0, np.inf, False)),
    Col.DECONV_STRENGTH: ColumnSpec("float", bounds=(0, np.inf, False)),
    Col.MASK_DENSITY: ColumnSpec("float", bounds=(0, 100, False)),
    Col.MASK_STD: ColumnSpec("float", bounds=(0, 100, False)),
    Col.TILT_MIN: ColumnSpec("float", bounds=(-90, 90, True)),
    Col.TILT_MAX: ColumnSpec("float", bounds=(-90, 90, True)),
    "rlnVoltage": ColumnSpec("float", bounds=(0, np.inf, False)),
    "rlnSphericalAberration": ColumnSpec("float", bounds=(0, np.inf, True)),
    "rlnAmplitudeContrast": ColumnSpec("float", bounds=(0, 0.999, True)),
    "rlnPhaseShift": ColumnSpec("float", bounds=(-180, 180, True)),
    # a tomogram's statistics (any units, but finite and far from float32's overflow)
    Col.MEAN: ColumnSpec("float", bounds=(-1e15, 1e15, True)),
    Col.STD: ColumnSpec("float", bounds=(0, 1e15, False)),
    Col.P4: ColumnSpec("float", bounds=(-1e15, 1e15, True)),
    Col.P96: ColumnSpec("float", bounds=(-1e15, 1e15, True)),
    Col.X: ColumnSpec("float", bounds=_ANY),
    Col.Y: ColumnSpec("float", bounds=_ANY),
    Col.Z: ColumnSpec("float", bounds=_ANY),
    Col.TOMOGRAM: ColumnSpec("path", "input", "tomogram"),
    Col.HALF1: ColumnSpec("path", "input", "half 1"),
    Col.HALF2: ColumnSpec("path", "input", "half 2"),
    Col.DECONV: ColumnSpec("path", "derived", "deconvolved"),
    Col.DECONV_HALF1: ColumnSpec("path", "derived", "deconvolved half 1"),
    Col.DECONV_HALF2: ColumnSpec("path", "derived", "deconvolved half 2"),
    Col.MASK: ColumnSpec("path", "result", "mask"),
    Col.CORRECTED: ColumnSpec("path", "result", "corrected"),
    Col.MASK_BOUNDARY: ColumnSpec("path"),
    Col.IMAGE: ColumnSpec("path"),
    Col.IMAGE_HALF1: ColumnSpec("path"),
    Col.IMAGE_HALF2: ColumnSpec("path"),
    Col.TOMOGRAM_STAR: ColumnSpec("path"),
}
INT_COLUMNS = {c for c, spec in SCHEMA.items() if spec.kind == "int"}
FLOAT_COLUMNS = {c for c, spec in SCHEMA.items() if spec.kind == "float"}
PATH_COLUMNS = {c for c, spec in SCHEMA.items() if spec.kind == "path"}
#: The volumes a user brings (the tomogram, its halves); a change to them resets every result.
INPUT_VOLUMES = tuple(c for c, spec in SCHEMA.items() if spec.volume == "input")
#: The volumes the commands write (deconvolved, mask, corrected), reset when what they were made from changes.
RESULT_VOLUMES = tuple(c for c, spec in SCHEMA.items() if spec.volume in ("derived", "result"))
#: The volumes the commands read through Zarr copies (``convert`` makes them ahead).
READ_VOLUMES = tuple(c for c, spec in SCHEMA.items() if spec.volume in ("input", "derived"))
#: The viewer's name of each volume column.
VOLUME_LABELS = {c: spec.label for c, spec in SCHEMA.items() if spec.label}


def is_none(value: object) -> bool:
    """True for IsoNet's "no value": None, NaN, ``""`` or the string ``"None"``."""
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip() in ("", NONE)


@dataclass
class StarTable:
    """A STAR table and the file it belongs to (paths inside resolve against its folder).

    Attributes
    ----------
    df : pandas.DataFrame
        One row per tomogram or subtomogram; columns named as ``starfile`` reads them.
    path : Path
        The STAR file (it need not exist yet).
    """

    df: pd.DataFrame
    path: Path
    #: more folders relative paths may be relative to (RELION-5's project folder), tried last
    roots: tuple[Path, ...] = field(default=(), repr=False, compare=False)
    #: the name of the table's data block in the file it was read from (``data_<block>``): rewriting
    #: it keeps the file's other blocks; None for a new table (which replaces the file)
    block: str | None = field(default=None, repr=False, compare=False)
    #: cells set with :meth:`set_value` ((rlnIndex or row position, column) -> value) and columns added
    #: with :meth:`ensure_column` (column -> default), replayed on the file's current content by :meth:`write`
    changes: dict = field(default_factory=dict, repr=False, compare=False)
    added: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def folder(self) -> Path:
        """Folder that relative paths in the table refer to."""
        return self.path.parent

    def resolve(self, value: object) -> Path | None:
        """A path value of the table as a usable Path, or None for ``None``."""
        if is_none(value):
            return None
        p = Path(str(value).strip())
        if p.is_absolute():
            return p
        here = self.folder / p
        if here.exists():
            return here
        for root in (Path("."), *self.roots):
            if (root / p).exists():
                return root / p
        return here

    def relative(self, path: str | Path) -> str:
        """How a path is stored in this table: relative to its folder when below it, else absolute."""
        return relative_to(path, self.folder)

    def get_path(self, row: int, column: str, required: bool = True) -> Path | None:
        """The resolved path in ``column`` of row position ``row`` (checked to exist if required)."""
        value = self.df[column].iloc[row] if column in self.df.columns else None
        path = self.resolve(value)
        if path is None:
            if required:
                raise InputError(f"row {row + 1} has no {column}", self.path, f"fill in _{column}")
            return None
        if required and not path.exists():
            where = "" if not self.roots else f" (also looked for below {', '.join(map(str, self.roots))})"
            raise InputError(f"row {row + 1} points to a missing file {path}{where}", self.path,
                             f"fix _{column} of that row or restore the file")
        return path

    def ensure_column(self, column: str, default: object) -> None:
        """Add ``column`` filled with ``default`` if absent (keeps existing values)."""
        self.added.setdefault(column, default)
        _ensure_column(self.df, column, default)

    def set_value(self, row: int, column: str, value: object) -> None:
        """Set one cell, creating the column (``None`` elsewhere) if needed."""
        self.changes[(self.row_identity(row), column)] = value
        _set_cell(self.df, row, column, value)

    def row_identity(self, row: int) -> str:
        """What names a row whatever its position or ``_rlnIndex``: its tomogram file (resolved, links followed),
        else (a row without one) its ``_rlnIndex``."""
        value = self.df["rlnMicrographName"].iloc[row] if "rlnMicrographName" in self.df.columns else None
        path = self.resolve(value)
        if path is not None:
            return f"file:{os.path.realpath(path)}"
        index = _index_value(self.df["rlnIndex"].iloc[row]) if "rlnIndex" in self.df.columns else None
        return f"index:{row + 1 if index is None else index}"

    def select(self, tomo_idx: str | None) -> list[int]:
        """Row positions selected by a ``tomo_idx`` string such as ``"1,3-4"`` (all if None).

        Ranges select the rows whose ``rlnIndex`` lies in them (``1-999999`` costs nothing);
        a single index that is not in the table, or a range that selects no row, is an error.
        """
        if tomo_idx is None or str(tomo_idx).strip() == "":
            return list(range(len(self.df)))
        ranges = parse_tomo_idx(tomo_idx)
        index = [_index_value(v) for v in self.df["rlnIndex"]]
        missing = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges
                   if not any(i is not None and a <= i <= b for i in index)]
        if missing:
            shown = ", ".join(str(v) for v in self.df["rlnIndex"])
            raise InputError(f"tomo_idx {','.join(missing)} not in the table (rlnIndex: {shown})",
                             self.path, "choose indices from _rlnIndex")
        return [row for row, i in enumerate(index) if i is not None and any(a <= i <= b for a, b in ranges)]

    def output_keys(self) -> list[str]:
        """A unique, readable name per row, used for every output of that row (deconv, mask,
        subtomograms, Zarr copies, corrected tomograms): ``_rlnTomoName`` where set, else the
        tomogram's file stem; rows that share it get their folder's name in front
        (``run1_TS_01``), and the row's ``_rlnIndex`` after it if that is not enough."""
        bases = []
        for row in range(len(self.df)):
            name = self.df["rlnTomoName"].iloc[row] if "rlnTomoName" in self.df.columns else None
            path = self.resolve(self.df["rlnMicrographName"].iloc[row]) if "rlnMicrographName" in self.df.columns \
                else None
            if is_none(name):
                name = path.stem if path is not None else f"row{row + 1}"
            folder = path.parent.name if path is not None else ""
            bases.append((_safe_name(str(name)), _safe_name(folder)))
        keys = [base for base, _ in bases]
        if len(set(keys)) < len(keys):
            counts = {k: keys.count(k) for k in keys}
            keys = [f"{folder}_{base}" if counts[base] > 1 and folder else base for base, folder in bases]
        if len(set(keys)) < len(keys):
            counts = {k: keys.count(k) for k in keys}
            keys = [f"{k}_{self.df['rlnIndex'].iloc[r]}" if counts[k] > 1 else k for r, k in enumerate(keys)]
        return _unique_keys(keys)

    def tilt_range(self, row: int) -> tuple[float, float]:
        """(tilt_min, tilt_max) of a row in degrees; -60/+60 when the columns are absent."""
        lo = float(self.df["rlnTiltMin"].iloc[row]) if "rlnTiltMin" in self.df.columns else DEFAULT_TILT_RANGE[0]
        hi = float(self.df["rlnTiltMax"].iloc[row]) if "rlnTiltMax" in self.df.columns else DEFAULT_TILT_RANGE[1]
        return lo, hi

    def pixel_size(self, row: int) -> float | None:
        """``_rlnPixelSize`` of a row (Å), or None when the table has none."""
        if "rlnPixelSize" not in self.df.columns:
            return None
        try:
            value = float(self.df["rlnPixelSize"].iloc[row])
        except (TypeError, ValueError):
            return None
        return value if value > 0 else None

    def write(self, path: str | Path | None = None) -> Path:
        """Write the table (atomically, under :func:`table_lock`) to ``path`` or to its own file.

        Written to its own file that exists, the table's changes (:meth:`set_value`,
        :meth:`ensure_column`) are replayed on the file's current content, read under the lock:
        two commands updating one table at once (deconv and make_mask) keep each other's columns.
        """
        target = _through_links(Path(path) if path is not None else self.path)
        with table_lock(target):
            if path is None and (self.changes or self.added) and target.exists():
                self.df = self._merged(target)
            write_star(self.df, target, block=self.block)
        return target

    def _merged(self, target: Path) -> pd.DataFrame:
        """The file's current table with this table's changes applied, rows matched by :meth:`row_identity`
        (their tomogram file): a table renumbered or reordered meanwhile (the GUI's Save) gets each change on
        the row it belongs to; a change whose row is gone is not written (warned)."""
        try:
            current = table_from_blocks(*read_blocks(target), required=("rlnMicrographName",))
        except InputError:
            return self.df  # not a table (any more): ours replaces it
        current.roots = self.roots
        if "rlnIndex" not in current.df.columns:
            current.df.insert(0, "rlnIndex", np.arange(1, len(current.df) + 1))
        for column, default in self.added.items():
            _ensure_column(current.df, column, default)
        position = {current.row_identity(r): r for r in range(len(current.df))}
        for (key, column), value in self.changes.items():
            if key not in position:
                logger.warning("%s: the row of %s was removed or renamed by another program since this command "
                               "read the table; its %s (%s) is not recorded", target, key.split(":", 1)[1], column,
                               value)
                continue
            _set_cell(current.df, position[key], column, value)
        return current.df


def _ensure_column(df: pd.DataFrame, column: str, default: object) -> None:
    if column not in df.columns:
        df[column] = default


def _set_cell(df: pd.DataFrame, row: int, column: str, value: object) -> None:
    if column not in df.columns:
        df[column] = TOMOGRAM_COLUMNS.get(column, SUBTOMO_COLUMNS.get(column, NONE))
    if column in PATH_COLUMNS or isinstance(value, str):
        df[column] = df[column].astype(object)
    df.loc[df.index[row], column] = value


#: Seconds a command waits for another one's lock on a STAR file before giving up.
LOCK_TIMEOUT = 60.0
_LOCKS = threading.local()  # .held: the table locks this thread holds


@contextmanager
def table_lock(path: str | Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive lock on a STAR file while it is read, changed and written.

    The lock is ``.<name>.lock`` beside it (``flock``: released by the system when a process dies).

    Raises
    ------
    InputError
        When another run holds it for longer than ``timeout`` seconds.
    """
    import fcntl

    path = _through_links(Path(path))
    lock = path.with_name(f".{path.name}.lock")
    key = os.path.realpath(lock)
    held = _LOCKS.__dict__.setdefault("held", set())
    if key in held:  # this thread holds it already (a write inside a read-modify-write)
        yield
        return
    try:
        handle = open(lock, "a+")
    except OSError:  # a read-only folder: the write itself will fail with a clear message
        yield
        return
    with handle:
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > end:
                    raise InputError(f"another isonet-pl run has held its lock ({lock.name}) for {timeout:.0f} s",
                                     path, "wait for it to finish (the lock ends with the process that holds it)") \
                        from None
                time.sleep(0.05)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _through_links(path: Path) -> Path:
    """The file a (possibly linked) STAR path stands for: a table reached through a link is locked and
    rewritten where it lives, not replaced by a copy under the link's name."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _safe_name(text: str) -> str:
    """``text`` usable as (part of) a file name: characters other than letters, digits, ``.-_`` become ``_``."""
    return re.sub(r"[^\w.-]", "_", text.strip()).strip(".") or "tomogram"


def _unique_keys(keys: list[str]) -> list[str]:
    """``keys`` made unique by construction, also where case is ignored (macOS, Windows): a key already taken
    by an earlier row, or one that a renaming pass made equal to another row's, gets ``-2``, ``-3``... (the
    first free one) after it. Keys that are unique already are kept."""
    folded = [k.casefold() for k in keys]
    used: set[str] = set()
    out = []
    for key in keys:
        candidate, n = key, 1
        while candidate.casefold() in used or (n > 1 and candidate.casefold() in folded):
            n += 1
            candidate = f"{key}-{n}"
        used.add(candidate.casefold())
        out.append(candidate)
    assert len({k.casefold() for k in out}) == len(out), out  # unique by construction
    return out


def check_rows(table: StarTable) -> None:
    """Refuse rows that would write over each other: a repeated ``_rlnIndex``, or two rows naming
    the same tomogram file (through any path or link)."""
    seen: dict[object, int] = {}
    for row, value in enumerate(table.df["rlnIndex"]):
        if value in seen:
            raise InputError(f"rows {seen[value] + 1} and {row + 1} have the same _rlnIndex {value}", table.path,
                             "number the rows 1..n")
        seen[value] = row
    files: dict[str, int] = {}
    for row in range(len(table.df)):
        for column in ("rlnMicrographName", *HALF_COLUMNS):
            if column not in table.df.columns:
                continue
            path = table.resolve(table.df[column].iloc[row])
            if path is None:
                continue
            real = os.path.realpath(path)
            if real in files and files[real] != row:
                raise InputError(f"rows {files[real] + 1} and {row + 1} name the same tomogram {path.name}; their "
                                 "outputs would overwrite each other", table.path, "remove one of the rows")
            files[real] = row


def _index_value(value: object) -> int | None:
    """An ``rlnIndex`` value as an integer (None when it is not one)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def parse_tomo_idx(text: str | int) -> list[tuple[int, int]]:
    """Parse IsoNet's ``tomo_idx`` syntax: comma/space separated integers and ``a-b`` ranges.

    Returns
    -------
    list of (int, int)
        Inclusive ranges (``(3, 3)`` for a single index); never expanded, so a huge range
        costs nothing.
    """
    out: list[tuple[int, int]] = []
    for token in re.split(r"[,\s]+", str(text).strip()):
        if not token:
            continue
        m = re.fullmatch(r"(\d{1,18})(?:-(\d{1,18}))?", token)
        if not m:
            raise InputError(f"invalid tomo_idx {text!r}: {token!r} is not a number or a range a-b",
                             fix="use e.g. --tomo_idx 1,3-4")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if b < a:
            raise InputError(f"invalid tomo_idx {text!r}: range {token} runs backwards", fix="write it as low-high")
        out.append((a, b))
    if not out:
        raise InputError(f"invalid tomo_idx {text!r}: no index given", fix="use e.g. --tomo_idx 1,3-4")
    return out


def read_blocks(path: str | Path, what: str = "STAR file") -> tuple[Path, dict]:
    """(checked path, {block name: DataFrame or dict}) of any STAR file; a file reached through a link is
    the file it links to (its paths are relative to its own folder, and it is rewritten there)."""
    path = _through_links(check_readable_file(path, what=what))
    try:
        data = starfile.read(path, always_dict=True)
    except Exception as exc:
        try:  # RELION also accepts blank lines and comments between loop_ and the labels
            data = _read_tidied(path)
        except Exception:
            raise InputError(f"not a readable STAR file ({exc.__class__.__name__}: {exc})", path,
                             "check the file format") from None
    # a one-row table written as key-value pairs (no loop_) is a table of one row
    return path, {name: pd.DataFrame([block]) if isinstance(block, dict) else block for name, block in data.items()}


def _read_tidied(path: Path) -> dict:
    """``starfile.read`` of the file without comment lines and without blank lines inside loop headers."""
    import tempfile

    lines, in_header = [], False
    for line in path.read_text(errors="replace").splitlines():
        text = line.strip()
        if text.startswith("#"):
            continue
        if text == "loop_":
            in_header = True
        elif in_header and not text:
            continue
        elif in_header and not text.startswith("_"):
            in_header = False
        lines.append(line)
    with tempfile.TemporaryDirectory() as folder:
        tidy = Path(folder) / path.name
        tidy.write_text("\n".join(lines) + "\n")
        return starfile.read(tidy, always_dict=True)


def read_star(path: str | Path, required: tuple[str, ...] = (), what: str = "STAR file") -> StarTable:
    """Read a single-table STAR file (IsoNet's or RELION's) into a :class:`StarTable`.

    For files with several data blocks (RELION-5), the first block with all ``required``
    columns is used.

    Raises
    ------
    InputError
        Missing or unreadable file, no table, or a required column missing.
    """
    path, data = read_blocks(path, what)
    return table_from_blocks(path, data, required)


def table_from_blocks(path: Path, data: dict, required: tuple[str, ...] = ()) -> StarTable:
    """The first block of ``data`` (from :func:`read_blocks`) with all ``required`` columns, as a StarTable."""
    tables = {name: df for name, df in data.items() if isinstance(df, pd.DataFrame)}
    if not tables:
        raise InputError("no table (loop_) in the STAR file", path, "check the file")
    block = next((name for name, df in tables.items() if all(c in df.columns for c in required)), None)
    if block is None:
        first = next(iter(tables.values()))
        cols = ", ".join("_" + c for c in required if c not in first.columns)
        raise InputError(f"missing required column(s) {cols}", path, "add them or make the file with prepare_star")
    df = tables[block].reset_index(drop=True).copy()
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].astype(object)
    return StarTable(df=df, path=path, block=block)


def read_subtomo_star(path: str | Path) -> StarTable:
    """Read a subtomogram STAR file (``extract`` or ``prepare_subtomo_star``)."""
    table = read_star(path, required=("rlnImageName",), what="subtomogram STAR file")
    if len(table.df) == 0:
        raise InputError("the subtomogram table is empty", table.path, "run extract first")
    if "rlnTiltMin" not in table.df.columns or "rlnTiltMax" not in table.df.columns:
        logger.warning("%s gives no tilt range (_rlnTiltMin/_rlnTiltMax, e.g. a Warp or RELION subtomogram table): "
                       "assuming %g..%g degrees for every subtomogram; add the columns if the data were tilted "
                       "otherwise", table.path, *DEFAULT_TILT_RANGE)
    check_numbers(table, ("rlnSubtomoIndex", "rlnCubeSize", "rlnCropSize", "rlnPixelSize", "rlnTiltMin",
                           "rlnTiltMax", "rlnTomoMean", "rlnTomoStd", "rlnTomoP4", "rlnTomoP96"))
    return table


#: Allowed values of the numeric columns: (lowest, highest, whether the lowest itself is allowed).
COLUMN_RANGES: dict[str, tuple[float, float, bool]] = {c: spec.bounds for c, spec in SCHEMA.items() if spec.bounds}


def check_numbers(table: StarTable, columns: tuple[str, ...]) -> None:
    """Check every row's value of each numeric column present: a finite number (an integer for
    :data:`INT_COLUMNS`) in its :data:`COLUMN_RANGES`; then a column named twice and tilt ranges
    that run backwards. Converts the columns to int/float.

    Raises
    ------
    InputError
        Naming the column, the first bad row and the allowed values.
    """
    duplicated = sorted({c for c in table.df.columns if list(table.df.columns).count(c) > 1})
    if duplicated:
        raise InputError(f"column _{duplicated[0]} appears twice", table.path, "remove one of them")
    for col in columns:
        if col not in table.df.columns:
            continue
        values = pd.to_numeric(table.df[col], errors="coerce").astype(float)
        arr = values.to_numpy()
        lo, hi, lo_ok = COLUMN_RANGES.get(col, (-np.inf, np.inf, True))
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (arr > hi) | ((arr < lo) if lo_ok else (arr <= lo))
            if col in INT_COLUMNS:
                bad |= np.isfinite(arr) & (arr != np.round(arr))
        rows = np.flatnonzero(bad)
        if rows.size:
            r = rows[0]
            kind = "a whole number" if col in INT_COLUMNS else "a number"
            bounds = (f"{'>=' if lo_ok else '>'} {lo:g}" + (f" and <= {hi:g}" if np.isfinite(hi) else "")
                      if col in COLUMN_RANGES else "finite")
            raise InputError(f"_{col} of row {r + 1} is {str(table.df[col].iloc[r])!r}, not {kind} {bounds}",
                             table.path, "fix that value")
        table.df[col] = values.astype(int) if col in INT_COLUMNS else values
    if "rlnTiltMin" in table.df.columns or "rlnTiltMax" in table.df.columns:
        lo, hi = np.array([table.tilt_range(r) for r in range(len(table.df))], float).reshape(-1, 2).T
        bad = np.flatnonzero(lo >= hi)
        if bad.size:
            raise InputError(f"row {bad[0] + 1} has an invalid tilt range {lo[bad[0]]}..{hi[bad[0]]}", table.path,
                             "use -90 <= _rlnTiltMin < _rlnTiltMax <= 90")


def write_star(df: pd.DataFrame, path: str | Path, block: str | None = None) -> Path:
    """Write a table as a STAR file that ``starfile`` and IsoNet 0.2 read back.

    Missing values become ``None``; integer columns are written as integers. The file
    is written under a temporary name and renamed, so a failure leaves the old file. With
    ``block`` (the table was read from this file), the file's other data blocks are kept as they
    are, in their order and with their names, and the table replaces its own ``data_<block>``;
    without it the table replaces the file.
    """
    path = check_output_file(_through_links(Path(path)), option="output STAR file")
    out = df.copy()
    for col in out.columns:
        if col in INT_COLUMNS:
            out[col] = pd.to_numeric(out[col]).astype(int)
        elif col in FLOAT_COLUMNS:
            out[col] = pd.to_numeric(out[col]).astype(float)
        elif not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = [NONE if is_none(v) else str(v) for v in out[col]]
    content: pd.DataFrame | dict = out
    if block is not None:
        try:
            blocks = starfile.read(path, always_dict=True) if path.exists() else {}
        except Exception:  # not a STAR file (any more): replaced
            blocks = {}
        content = {name: (out if name == block else value) for name, value in blocks.items()}
        content.setdefault(block, out)
    with atomic_path(path) as tmp:
        starfile.write(content, tmp, overwrite=True)
    return path


def new_table(columns: dict[str, object], rows: list[dict], path: str | Path) -> StarTable:
    """A table with ``columns`` (in order, filled with their defaults) and the given rows."""
    records = [{c: row.get(c, d) for c, d in columns.items()} for row in rows]
    return StarTable(df=pd.DataFrame.from_records(records, columns=list(columns)), path=Path(path))


def relative_to(path: str | Path, folder: str | Path) -> str:
    """``path`` as written into a STAR file in ``folder``: relative when it lies below ``folder``, beside
    it (below its parent: ``../deconv/a.mrc``) or when both lie inside the current folder (a RELION project:
    ``../../deconv/a.mrc`` from ``Tomograms/job010/``), so a copied project reads its own files; else absolute.

    Links are kept as given (a linked tomogram is recorded by its link, not its target); a
    path below ``folder`` only once links are resolved is still written relative.
    """
    plain, base = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    real_base = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(plain.parent)) / plain.name  # the file itself may be a link
    for candidate, root in ((plain, base), (real, real_base)):
        if candidate.is_relative_to(root):
            return str(candidate.relative_to(root))
    for candidate, root in ((plain, base), (real, real_base)):
        if len(root.parents) >= 2 and candidate.is_relative_to(root.parent):  # not beside a top-level folder
            return os.path.relpath(candidate, root)
    project = Path(os.path.abspath("."))  # both inside the folder the commands run in (RELION's project)
    if len(project.parents) >= 2 and plain.is_relative_to(project) and base.is_relative_to(project):
        return os.path.relpath(plain, base)
    return str(plain)
