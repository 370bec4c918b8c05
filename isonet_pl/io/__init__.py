"""Reading and writing tomograms (MRC, OME-Zarr) and STAR tables."""

from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.mrc import MrcInfo, MrcWriter, read_mrc, read_mrc_info, write_mrc
from isonet_pl.io.star import (
    StarTable,
    parse_tomo_idx,
    read_star,
    read_subtomo_star,
    write_star,
)
from isonet_pl.io.zarr_store import (
    TomogramStore,
    dask_to_mrc,
    ensure_zarr,
    mrc_to_zarr,
    open_tomogram,
    write_tomogram,
    zarr_to_mrc,
)

__all__ = ["MrcInfo", "MrcWriter", "read_mrc", "read_mrc_info", "write_mrc", "StarTable", "parse_tomo_idx",
           "read_star", "read_subtomo_star", "read_tomogram_star", "write_star", "TomogramStore", "dask_to_mrc",
           "ensure_zarr", "mrc_to_zarr", "open_tomogram", "write_tomogram", "zarr_to_mrc"]
