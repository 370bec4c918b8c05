"""The network (:class:`UNet3D`) and its Lightning system (:class:`IsoNetModule`)."""

from __future__ import annotations

from .module import IsoNetModule
from .unet import UNet3D

__all__ = ["UNet3D", "IsoNetModule"]
