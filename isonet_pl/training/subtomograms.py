"""The subtomograms of a refinement, read and normalised into memory, and the validation split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isonet_pl.errors import InputError
from isonet_pl.io.mrc import read_mrc
from isonet_pl.io.star import Col, read_subtomo_star
from isonet_pl.normalization import Normalization

logger = logging.getLogger(__name__)


@dataclass
class Subtomograms:
    """The subtomograms of a refinement, normalised (protein bright), in memory.

    Attributes
    ----------
    data : numpy.ndarray
        (n, p, p, p) float32, ``N(-x)``.
    tilt_ranges : numpy.ndarray
        (n, 2) degrees.
    names : list of str
        File names.
    cube, crop : int
        Training cube edge and subtomogram edge.
    per_tomogram : bool
        Whether the normalisation used whole-tomogram statistics (our extract) or each
        subtomogram's own (IsoNet's subtomo.star).
    halves : numpy.ndarray or None
        (n, 2, p, p, p) float32, the even/odd half subtomograms normalised like ``data``.
    pixel_size : float or None
        Å per voxel (the STAR file's ``_rlnPixelSize``, else the first subtomogram's header), if known.
    """

    data: np.ndarray
    tilt_ranges: np.ndarray
    names: list[str]
    cube: int
    crop: int
    per_tomogram: bool
    halves: np.ndarray | None = None
    pixel_size: float | None = None


def load_subtomograms(star_file: str | Path, percentile: bool = True) -> Subtomograms:
    """Read every subtomogram of a subtomo.star (ours, IsoNet's or prepare_subtomo_star's) into memory."""
    table = read_subtomo_star(star_file)
    df = table.df
    crop = int(df[Col.CROP_SIZE].iloc[0]) if Col.CROP_SIZE in df.columns else None
    cube = int(df[Col.CUBE_SIZE].iloc[0]) if Col.CUBE_SIZE in df.columns else None
    volumes, tilts, names, per_tomogram, halves = [], [], [], True, []
    half_columns = (Col.IMAGE_HALF1, Col.IMAGE_HALF2)
    with_halves = all(c in df.columns for c in half_columns)
    pixel_size = float(df[Col.PIXEL_SIZE].median()) if Col.PIXEL_SIZE in df.columns else None
    for row in range(len(df)):
        path = table.get_path(row, Col.IMAGE)
        vol, info = read_mrc(path)
        if pixel_size is None and info.voxel_size[2] > 0:
            pixel_size = float(info.voxel_size[2])
        if vol.ndim != 3 or len(set(vol.shape)) != 1:
            raise InputError(f"subtomogram is not a cube ({'x'.join(map(str, vol.shape))})", path,
                             "extract cubic subtomograms")
        if crop is None:
            crop = vol.shape[0]
        if vol.shape[0] != crop:
            raise InputError(f"subtomogram edge {vol.shape[0]} differs from _rlnCropSize {crop}", path,
                             "use subtomograms of one size per STAR file")
        vol = vol.astype(np.float32)
        if not np.isfinite(vol).all():
            raise InputError("subtomogram contains NaN or infinite values", path, "extract it again")
        norm = Normalization.from_row(df.iloc[row], percentile)
        per_tomogram &= norm is not None
        norm = norm or Normalization.of_volume(vol, percentile)
        normed = norm.apply(vol)
        _check_statistics(normed, vol, path, row)
        volumes.append(normed)
        if with_halves:
            pair = [read_mrc(table.get_path(row, c))[0].astype(np.float32) for c in half_columns]
            if any(h.shape != vol.shape or not np.isfinite(h).all() for h in pair):
                raise InputError("half subtomograms differ in shape from the subtomogram or hold NaN",
                                 table.get_path(row, half_columns[0]), "extract again")
            halves.append(np.stack([norm.apply(h) for h in pair]))
        tilts.append(table.tilt_range(row))
        names.append(path.name)
    if not per_tomogram:
        logger.warning("%s has no tomogram statistics (not made by our extract): each subtomogram is normalised "
                       "on its own, as IsoNet 0.2 does", table.path)
    if cube is None:
        cube = int(crop / 1.5 + 1) // 16 * 16
    return Subtomograms(np.stack(volumes), np.asarray(tilts, dtype=np.float64), names, cube, crop, per_tomogram,
                        np.stack(halves) if with_halves else None, pixel_size)


#: Normalised subtomograms whose std falls outside this range were normalised with statistics that are not
#: their tomogram's (a table edited by hand, or a value such as 1e30): training on them would learn nothing.
PLAUSIBLE_STD = (1e-4, 1e4)


def _check_statistics(normed: np.ndarray, raw: np.ndarray, path: Path, row: int) -> None:
    """Refuse a subtomogram that its row's statistics columns normalise to a non-finite or implausible scale.

    Raises
    ------
    InputError
        Naming the file, the row, the normalised std and the fix.
    """
    if float(raw.std()) == 0.0:
        return  # a constant crop (a padded corner): nothing to compare
    std = float(normed.std())
    if not (np.isfinite(normed).all() and PLAUSIBLE_STD[0] < std < PLAUSIBLE_STD[1]):
        raise InputError(f"row {row + 1}: its statistics columns (_rlnTomoMean, _rlnTomoStd, _rlnTomoP4, "
                         f"_rlnTomoP96) normalise the subtomogram to a std of {std:.3g}, not near 1: they are not "
                         "its tomogram's", path, "run extract again (or remove those columns to normalise each "
                         "subtomogram on its own)")


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of n subtomograms into training and validation ones (validation at least 1 if n > 1).

    Raises
    ------
    InputError
        When ``fraction`` leaves no subtomogram to train on.
    """
    order = np.random.default_rng((seed, 7)).permutation(n)
    n_val = 0 if n < 2 or fraction == 0 else max(1, int(round(fraction * n)))
    if n_val >= n and n > 1:
        raise InputError(f"--val_fraction {fraction:g} holds out all {n} subtomograms, leaving none to train on",
                         fix=f"use a --val_fraction below {(n - 1) / n:.2f}, or extract more subtomograms")
    return np.sort(order[n_val:]), np.sort(order[:n_val] if n_val else order[:1])
