"""The project layer: the rows of a tomogram table as :class:`Tomogram` objects.

A row knows its volumes (the tomogram, its even/odd halves, the deconvolved ones, the mask), which of them a
command works on, their Zarr copies (converted on first use, every volume but a mask checked for NaN,
infinities and constancy), its unique output key (:meth:`StarTable.output_keys`), and how an output volume is
recorded: Zarr store in the project's cache → MRC beside it → source stamp → STAR column → table written.
Workflows take rows from :func:`tomograms` and import no other workflow.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from isonet_pl.config import IOConfig, PrepareStarConfig
from isonet_pl.errors import InputError
from isonet_pl.io.paths import check_not_input, check_output_dir, check_output_file
from isonet_pl.io.star import (
    DECONV_COLUMN,
    DECONV_HALF_COLUMNS,
    HALF_COLUMNS,
    MASK_COLUMN,
    PATH_COLUMNS,
    TOMOGRAM_COLUMN,
    TOMOGRAM_COLUMNS,
    Col,
    StarTable,
    is_none,
    new_table,
    relative_to,
)
from isonet_pl.io.zarr_store import (
    TomogramStore,
    cached_zarr_path,
    check_values,
    ensure_zarr,
    stamp_source,
    zarr_to_mrc,
)

__all__ = ["Project", "Output", "Tomogram", "tomograms", "tomogram_table", "zarr_cache", "check_inputs",
           "check_writable", "referenced_files", "PREPARE_STAR_COLUMNS"]

logger = logging.getLogger(__name__)
#: (file, STAR pixel size) pairs whose voxel size was already warned about in this process.
_VOXEL_NOTES: set[tuple[str, float]] = set()

#: Columns prepare_star writes, in IsoNet's order, followed by the tilt range.
PREPARE_STAR_COLUMNS = (Col.INDEX, Col.TOMOGRAM, Col.PIXEL_SIZE, Col.DEFOCUS, Col.NUMBER_SUBTOMO,
                        Col.MASK_BOUNDARY, Col.TILT_MIN, Col.TILT_MAX)


def zarr_cache(table: StarTable, io: IOConfig) -> Path:
    """The folder of the Zarr copies: ``io.zarr_folder``, relative to the STAR file's folder."""
    folder = Path(io.zarr_folder)
    return folder if folder.is_absolute() else table.folder / folder


def referenced_files(table: StarTable, io: IOConfig | None = None) -> list[Path]:
    """Every file a table names (any path column of any row, set or not yet existing), the table itself and,
    with ``io``, its Zarr cache folder: what no output may replace."""
    found = [table.path]
    for column in table.df.columns:
        if column in PATH_COLUMNS:
            found += [p for p in map(table.resolve, table.df[column]) if p is not None]
    return found + ([zarr_cache(table, io)] if io is not None else [])


def check_inputs(table: StarTable, rows: list[int], columns: tuple[str, ...] = ()) -> None:
    """Before any work: every selected row's tomogram, halves and the other ``columns`` that are set exist,
    so a bad row 2 fails before row 1 is processed.

    Raises
    ------
    InputError
        Naming the STAR file, the row and the missing file.
    """
    for row in rows:
        table.get_path(row, TOMOGRAM_COLUMN)
        for column in (*HALF_COLUMNS, *columns):
            if column in table.df.columns:
                table.get_path(row, column, required=not is_none(table.df[column].iloc[row]))


def check_writable(table: StarTable, io: IOConfig) -> None:
    """Before any work: the STAR file (rewritten after each tomogram) and the Zarr folder can be written.

    Raises
    ------
    InputError
        Naming the file or folder.
    """
    check_output_file(table.path, option="location for the STAR file (copy the project to a writable folder)")
    check_output_dir(zarr_cache(table, io), option="--zarr_folder (in --config)")


@dataclass
class Tomogram:
    """One row of a tomogram table, with its volumes and outputs.

    Attributes
    ----------
    table : StarTable
        The table the row belongs to (written when an output is recorded).
    row : int
        0-based row index.
    key : str
        The row's unique output key (``_rlnTomoName``, else the file stem; folder in front when stems collide).
    io : IOConfig
        Where and how the Zarr copies are kept.
    """

    table: StarTable
    row: int
    key: str
    io: IOConfig

    # ---------------------------------------------------------------- what the row holds
    def path(self, column: str, required: bool = False) -> Path | None:
        """The volume of ``column`` (resolved against the table), None when unset (unless ``required``)."""
        return self.table.get_path(self.row, column, required=required)

    @property
    def tomogram(self) -> Path:
        """The tomogram (``_rlnMicrographName``)."""
        return self.table.get_path(self.row, TOMOGRAM_COLUMN)

    @property
    def name(self) -> str:
        """The tomogram's file name, for messages."""
        return self.tomogram.name

    @property
    def number(self) -> int:
        """1-based row number, for messages."""
        return self.row + 1

    @property
    def deconvolved(self) -> Path | None:
        return self.path(DECONV_COLUMN)

    @property
    def mask(self) -> Path | None:
        return self.path(MASK_COLUMN)

    @property
    def has_halves(self) -> bool:
        """Whether both even/odd halves are set."""
        return all(self.path(c) is not None for c in HALF_COLUMNS)

    @property
    def tilt_range(self) -> tuple[float, float]:
        return self.table.tilt_range(self.row)

    @property
    def pixel_size(self) -> float | None:
        return self.table.pixel_size(self.row)

    def value(self, column: str, default=None):
        """The row's raw value in ``column`` (``default`` when the table has no such column)."""
        return self.table.df[column].iloc[self.row] if column in self.table.df.columns else default

    def source_column(self, use_deconv: bool) -> str:
        """The column a command works on: the deconvolved tomogram when asked for and present, else the tomogram."""
        return DECONV_COLUMN if use_deconv and self.deconvolved is not None else TOMOGRAM_COLUMN

    # ---------------------------------------------------------------- Zarr copies
    def store(self, column: str = TOMOGRAM_COLUMN) -> TomogramStore:
        """The Zarr store of the volume in ``column``, converted on first use.

        Every volume but a mask is checked here, for every command: one holding NaN or infinite values, or a
        constant one, is refused with an error naming its file.
        """
        source = self.table.get_path(self.row, column)
        store = ensure_zarr(source, zarr_cache(self.table, self.io), chunks=self.io.zarr_chunks,
                            levels=self.io.zarr_levels, compression_level=self.io.compression_level)
        if column != MASK_COLUMN:
            check_values(store, source)
        used = self.voxel_size(store.voxel_size, source)
        return store if used == tuple(store.voxel_size) else replace(store, voxel_size=used)

    def voxel_size(self, header: tuple[float, float, float], source: Path) -> tuple[float, float, float]:
        """The voxel size (z, y, x) in Å that this row's work and outputs use: one rule for every command, the
        table's ``_rlnPixelSize`` when set, else the MRC header's. A header that disagrees by more than 1 %
        is warned with both values (once per file); one that gives none (0, or IMOD's unset 1) is logged."""
        given = self.pixel_size
        if given is None:
            return tuple(float(v) for v in header)
        seen = (str(source), given)
        if seen not in _VOXEL_NOTES:
            _VOXEL_NOTES.add(seen)
            if all(v > 0 and abs(v - 1.0) > 1e-6 for v in header):
                if any(abs(v - given) > 0.01 * given for v in header):
                    logger.warning("%s: the MRC header gives a voxel size of %s Å, the STAR file %g Å; %g Å is used "
                                   "and written to the outputs (fix _rlnPixelSize of row %d if the header is right)",
                                   source, "x".join(f"{v:g}" for v in header[::-1]), given, given, self.number)
            else:
                logger.info("%s: no voxel size in the MRC header; the STAR file's %g Å is used", source, given)
        return (given, given, given)

    def half_arrays(self, deconvolved: bool, shape: tuple[int, int, int]) -> list:
        """The even/odd halves as Zarr arrays (the deconvolved ones when ``deconvolved``), or [] without them.

        Raises
        ------
        InputError
            When a half's shape differs from ``shape``.
        """
        columns = DECONV_HALF_COLUMNS if deconvolved else HALF_COLUMNS
        if any(self.path(c) is None for c in columns):
            return []
        arrays = []
        for column in columns:
            store = self.store(column)
            if store.shape != tuple(shape):
                raise InputError(f"half tomogram {store.shape} differs from the tomogram's {tuple(shape)}",
                                 self.path(column), "use halves of the same reconstruction")
            arrays.append(store.zarr_array(0))
        return arrays

    # ---------------------------------------------------------------- outputs
    def output(self, folder: str | Path, name: str, column: str | None, option: str) -> Output:
        """One output volume of this row, checked before any work (:meth:`output_file`): ``folder/name`` and
        its Zarr store in the project's cache (its folder made); :meth:`Output.record` writes it."""
        mrc = self.output_file(Path(folder), name, column, option)
        return Output(self, mrc, self.output_zarr(mrc), column)

    def output_file(self, folder: Path, name: str, column: str | None, option: str) -> Path:
        """``folder/name``, checked before any work: it may replace this row's own earlier output in ``column``
        but no other file the table names (a tomogram, a half, another row's output, the table itself).

        Raises
        ------
        InputError
            Naming the output, the file it would replace and ``option``.
        """
        out = Path(folder) / name
        own = self.path(column) if column is not None else None
        mine = None if own is None else os.path.realpath(own)
        check_not_input(out, [p for p in referenced_files(self.table) if os.path.realpath(p) != mine], option)
        return out

    def output_zarr(self, out_mrc: Path) -> Path:
        """Where the Zarr store of the output ``out_mrc`` goes (its folder made)."""
        path = cached_zarr_path(out_mrc, zarr_cache(self.table, self.io))
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def record_output(self, out_zarr: Path, out_mrc: Path, column: str | None) -> Path:
        """Write the MRC of a finished output store, stamp it, set ``column`` of the row to it (when given) and
        rewrite the table. Returns ``out_mrc``."""
        zarr_to_mrc(out_zarr, out_mrc)
        stamp_source(out_zarr, out_mrc)
        if column is not None:
            self.table.ensure_column(column, "None")
            self.table.set_value(self.row, column, self.table.relative(out_mrc))
            self.table.write()
        return out_mrc


@dataclass(frozen=True)
class Output:
    """An output volume of a row: written to its Zarr store :attr:`zarr` by the command, then recorded.

    Attributes
    ----------
    tomo : Tomogram
        The row it belongs to.
    mrc, zarr : Path
        The MRC file the user gets, and its Zarr store in the project's cache (written first).
    column : str or None
        The STAR column that names it (None: not recorded in the table).
    """

    tomo: Tomogram
    mrc: Path
    zarr: Path
    column: str | None

    def record(self) -> Path:
        """Write the MRC of the finished store, stamp it, name it in the row's column and rewrite the table."""
        return self.tomo.record_output(self.zarr, self.mrc, self.column)


@dataclass
class Project:
    """A tomogram table opened for a command: its selected rows, checked once before any work.

    Attributes
    ----------
    table : StarTable
        The table (the derived one for an IsoNet2 or RELION-5 file).
    io : IOConfig
        Where and how the Zarr copies are kept.
    rows : list of Tomogram
        The rows ``tomo_idx`` selects, their input files checked to exist.
    cache : Path
        The folder of the Zarr copies.
    """

    table: StarTable
    io: IOConfig
    rows: list[Tomogram]
    cache: Path

    @classmethod
    def open(cls, star: str | Path, io: IOConfig | None = None, tomo_idx: str | None = None,
             columns: tuple[str, ...] = (), writes: bool = True) -> Project:
        """Read the table, select the rows and check, before any work, that their tomograms, halves and
        ``columns`` exist and (``writes``) that the table and the Zarr folder can be written.

        Raises
        ------
        InputError
            Naming the file, the row and the fix.
        """
        io = io or IOConfig()
        from isonet_pl.io.formats import read_tomogram_star

        table = read_tomogram_star(star)
        rows = tomograms(table, io, tomo_idx, columns)
        if writes:
            check_writable(table, io)
        return cls(table, io, rows, zarr_cache(table, io))

    def inputs(self) -> list[Path]:
        """Every file the table names, the table and the Zarr folder: what no output may replace."""
        return referenced_files(self.table, self.io)


def tomogram_table(files: list[Path], output_star: str | Path, cfg: PrepareStarConfig) -> StarTable:
    """A tomogram table with one row per file and the settings of ``cfg``."""
    folder = Path(output_star).parent
    columns = {c: TOMOGRAM_COLUMNS[c] for c in PREPARE_STAR_COLUMNS}
    rows = [{Col.INDEX: i + 1, Col.TOMOGRAM: relative_to(f, folder), Col.PIXEL_SIZE: cfg.pixel_size,
             Col.DEFOCUS: cfg.defocus, Col.NUMBER_SUBTOMO: cfg.number_subtomos,
             Col.TILT_MIN: cfg.tilt_min, Col.TILT_MAX: cfg.tilt_max} for i, f in enumerate(files)]
    return new_table(columns, rows, output_star)


def tomograms(table: StarTable, io: IOConfig, tomo_idx: str | None = None,
              columns: tuple[str, ...] = ()) -> list[Tomogram]:
    """The selected rows (``--tomo_idx``) as :class:`Tomogram` objects, all checked before any work: their
    tomograms, halves and the other ``columns`` that are set exist."""
    rows = table.select(tomo_idx)
    check_inputs(table, rows, columns)
    keys = table.output_keys()
    return [Tomogram(table, row, keys[row], io) for row in rows]
