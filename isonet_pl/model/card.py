"""The model card: what a checkpoint was trained on and how, stored with its weights and checked on load.

Predict honours it (normalisation mode and statistics source, the network) and says so when a tomogram does
not match what the model saw in training (tilt range, pixel size).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isonet_pl.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["ModelCard", "read_card", "check_tomogram"]

#: relative pixel-size difference beyond which predict warns
PIXEL_TOLERANCE = 0.05


class ModelCard(BaseModel):
    """Checkpoint metadata (``module.meta``), validated.

    Attributes
    ----------
    version : str
        isonet-pl version that trained the model ("unknown" for checkpoints older than the card).
    method : {"isonet", "n2n"}
        Single-tomogram (IsoNet) or even/odd training.
    mw_weight : float
        n2n: weight of the loss in the input's missing wedge.
    normalize_percentile : bool
        Normalisation mode (see :mod:`isonet_pl.normalization`).
    normalization : {"tomogram", "subtomogram"}
        Whose statistics normalised the training cubes (whole tomograms: our extract; each cube: IsoNet's).
    cube_size, crop_size : int
        Training cube and subtomogram edges (voxels).
    tilt_ranges : list of (float, float)
        The tilt ranges (degrees) of the training subtomograms.
    pixel_size : float or None
        Å per voxel of the training subtomograms, when known.
    settings : dict
        The resolved refine settings.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    version: str = "unknown"
    method: Literal["isonet", "n2n"] = "isonet"
    mw_weight: float = Field(1.0, ge=0)
    normalize_percentile: bool = True
    normalization: Literal["tomogram", "subtomogram"] = "tomogram"
    cube_size: int = Field(..., ge=8)
    crop_size: int = Field(..., ge=8)
    tilt_ranges: list[tuple[float, float]] = Field(default_factory=list)
    pixel_size: float | None = Field(None, gt=0)
    settings: dict[str, Any] = Field(default_factory=dict)


def read_card(module, path) -> ModelCard:
    """The validated card of a loaded module; a clear error naming the checkpoint when it is not valid."""
    try:
        return ModelCard.model_validate(module.meta)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"the checkpoint's model card is not valid ({where}: {first['msg']})", path,
                         "use a checkpoint written by isonet-pl refine") from None


def check_tomogram(card: ModelCard, name: str, tilt_range: tuple[float, float], pixel_size: float | None) -> None:
    """Warn when a tomogram differs from what the model was trained on (tilt range, pixel size)."""
    if card.tilt_ranges and not any(abs(a - tilt_range[0]) < 0.5 and abs(b - tilt_range[1]) < 0.5
                                    for a, b in card.tilt_ranges):
        trained = ", ".join(f"{a:g}…{b:g}°" for a, b in card.tilt_ranges)
        logger.warning("%s: tilt range %g…%g° is not one the model was trained on (%s): the wedge it fills is "
                       "that of its training data", name, *tilt_range, trained)
    if card.pixel_size and pixel_size and abs(pixel_size - card.pixel_size) > PIXEL_TOLERANCE * card.pixel_size:
        logger.warning("%s: pixel size %.3g Å differs from the training data's %.3g Å: features appear at "
                       "another scale to the network", name, pixel_size, card.pixel_size)
