"""convert: make (or refresh) the Zarr copies of the tomograms of a STAR file ahead of time."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from isonet_pl.config import IOConfig
from isonet_pl.io.star import READ_VOLUMES, TOMOGRAM_COLUMN
from isonet_pl.project import Project

logger = logging.getLogger(__name__)


def convert(star_file: str | Path, io: IOConfig | None = None, tomo_idx: str | None = None) -> list[Path]:
    """Convert every volume of the selected rows (raw, deconvolved, halves) to Zarr.

    Returns
    -------
    list of Path
        The stores, in row order.
    """
    io = io or IOConfig()
    stores = []
    for tomo in Project.open(star_file, io, tomo_idx, writes=False).rows:
        for column in READ_VOLUMES:
            if column == TOMOGRAM_COLUMN or tomo.path(column) is not None:
                t0 = time.perf_counter()
                store = tomo.store(column)
                logger.info("%s row %d: %s ready (%.1f s)", column, tomo.number, store.path, time.perf_counter() - t0)
                stores.append(store.path)
    return stores
