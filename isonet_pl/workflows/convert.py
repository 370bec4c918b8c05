"""convert: make (or refresh) the Zarr copies of the tomograms of a STAR file ahead of time."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from isonet_pl.config import IOConfig
from isonet_pl.io.paths import check_output_dir, check_output_file
from isonet_pl.io.star import HALF_COLUMNS, StarTable, is_none, read_tomogram_star
from isonet_pl.io.zarr_store import TomogramStore, check_values, ensure_zarr

logger = logging.getLogger(__name__)

#: Tomogram columns that hold volumes to convert, when present.
VOLUME_COLUMNS = ("rlnMicrographName", "rlnDeconvTomoName", "rlnTomoReconstructedTomogramHalf1",
                  "rlnTomoReconstructedTomogramHalf2")


def zarr_cache(table: StarTable, io: IOConfig) -> Path:
    """The folder of the Zarr copies: ``io.zarr_folder``, relative to the STAR file's folder."""
    folder = Path(io.zarr_folder)
    return folder if folder.is_absolute() else table.folder / folder


def check_inputs(table: StarTable, rows: list[int], columns: tuple[str, ...] = ()) -> None:
    """Before any work: every selected row's tomogram, halves and the other ``columns`` that are set exist,
    so a bad row 2 fails before row 1 is processed.

    Raises
    ------
    InputError
        Naming the STAR file, the row and the missing file.
    """
    for row in rows:
        table.get_path(row, "rlnMicrographName")
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


def tomogram_store(table: StarTable, row: int, column: str, io: IOConfig) -> TomogramStore:
    """The Zarr store of the volume in ``column`` of ``row``, converted on first use.

    Every volume but a mask is checked here, for every command: one holding NaN or infinite
    values, or a constant one, is refused with an error naming its file.
    """
    source = table.get_path(row, column)
    store = ensure_zarr(source, zarr_cache(table, io), chunks=io.zarr_chunks, levels=io.zarr_levels,
                        compression_level=io.compression_level)
    if column != "rlnMaskName":
        check_values(store, source)
    return store


def convert(star_file: str | Path, io: IOConfig | None = None, tomo_idx: str | None = None) -> list[Path]:
    """Convert every volume of the selected rows (raw, deconvolved, halves) to Zarr.

    Returns
    -------
    list of Path
        The stores, in row order.
    """
    io = io or IOConfig()
    table = read_tomogram_star(star_file)
    stores = []
    for row in table.select(tomo_idx):
        for column in VOLUME_COLUMNS:
            if column == "rlnMicrographName" or table.get_path(row, column, required=False) is not None:
                t0 = time.perf_counter()
                store = tomogram_store(table, row, column, io)
                logger.info("%s row %d: %s ready (%.1f s)", column, row + 1, store.path, time.perf_counter() - t0)
                stores.append(store.path)
    return stores
