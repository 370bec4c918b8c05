"""Synthetic cryo-ET data: cell-like phantoms, tilt-series projection and WBP reconstruction.

Arrays are ZYX with the tilt axis along Y; see :mod:`isonet_pl.simulate.tilt` for the tilt
sign convention (shared with :mod:`isonet_pl.data.wedge`).
"""

from __future__ import annotations

from isonet_pl.simulate.phantom import make_phantom
from isonet_pl.simulate.tilt import (
    angle_weights,
    backproject,
    detector_width,
    project,
    ramp_filter,
    simulate_tomogram,
    tilt_angles,
)

__all__ = [
    "make_phantom",
    "project",
    "backproject",
    "simulate_tomogram",
    "tilt_angles",
    "detector_width",
    "angle_weights",
    "ramp_filter",
]
