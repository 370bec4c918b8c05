"""isonet-pl: missing-wedge correction and denoising of cryo-electron tomograms.

The IsoNet 0.2 workflow (prepare_star, deconv, make_mask, extract, refine, predict)
rebuilt on Zarr, dask and PyTorch Lightning. Array axes are ZYX everywhere; voxel
sizes are in Å.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("isonet-pl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "uninstalled"

from isonet_pl.errors import InputError, IsoNetError

__all__ = ["__version__", "InputError", "IsoNetError"]
