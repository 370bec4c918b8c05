"""IsoNet's normalisation N of a tomogram's values, as one value.

Sign convention, stated once: tomograms are stored as reconstructed, with protein dark (lower values than
the solvent). The network works on the negated values, protein bright, scaled to about [0, 1]:

* percentile mode (IsoNet's default): ``N(x) = (−x − P4(−x)) / (P96(−x) − P4(−x))``, i.e. offset
  ``−P96(x)`` and scale ``P96(x) − P4(x)``;
* z-score mode: ``N(x) = (−x − mean(−x)) / std(x)``, i.e. offset ``−mean(x)`` and scale ``std(x)``.

The statistics are those of the whole tomogram (so that training cubes and predicted tiles are normalised
alike), kept in the tomogram's STAR row (``_rlnTomoMean``, ``_rlnTomoStd``, ``_rlnTomoP4``, ``_rlnTomoP96``,
all of the stored values x), and :meth:`Normalization.invert` maps network values back to the tomogram's
scale and contrast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from isonet_pl.io.star import Col

__all__ = ["Normalization", "STAT_COLUMNS", "rescale"]

#: STAR columns of the statistics (of the stored values x)
STAT_COLUMNS = (Col.MEAN, Col.STD, Col.P4, Col.P96)

_TINY = 1e-20  # keeps a constant volume's scale non-zero


@dataclass(frozen=True)
class Normalization:
    """Statistics of a tomogram's stored values and the mode that turns them into N (see the module docstring).

    Attributes
    ----------
    mean, std : float
        Of the stored values x.
    p4, p96 : float or None
        4th and 96th percentiles of x (exact); required in percentile mode.
    percentile : bool
        Percentile mode (True, IsoNet's default) or z-score mode.
    """

    mean: float
    std: float
    p4: float | None = None
    p96: float | None = None
    percentile: bool = True

    def __post_init__(self):
        if self.percentile and (self.p4 is None or self.p96 is None):
            raise ValueError("percentile normalisation needs p4 and p96")

    @classmethod
    def of_volume(cls, x, percentile: bool = True) -> Normalization:
        """The statistics of ``x`` (numpy or dask array, any shape; exact percentiles: numpy's for an array in
        memory, streamed for dask)."""
        from isonet_pl.preprocess.percentile import exact_percentiles

        f64 = x.astype(np.float64)
        mean, mean_sq = f64.mean(), (f64 * f64).mean()
        if hasattr(mean, "compute"):  # both moments in one pass over a lazy tomogram
            import dask

            mean, mean_sq = dask.compute(mean, mean_sq)
        mean, mean_sq = float(mean), float(mean_sq)
        if isinstance(x, np.ndarray):  # numpy's own (float64) percentiles, as IsoNet
            p4, p96 = np.percentile(x, [4, 96])
        else:  # streamed, exact, for tomograms larger than memory
            p4, p96 = exact_percentiles(x, [4, 96])
        return cls(mean, float(np.sqrt(max(mean_sq - mean * mean, 0.0))), float(p4), float(p96), percentile)

    @classmethod
    def of_store(cls, store, percentile: bool = True) -> Normalization:
        """:meth:`of_volume` of a tomogram store's full-resolution data, computed once per store (four
        streamed passes) and recorded in its attributes (:meth:`TomogramStore.recorded`)."""
        columns = store.recorded("normalization", lambda: cls.of_volume(store.dask()).columns())
        return cls.from_row(columns, percentile)

    @classmethod
    def unit(cls) -> Normalization:
        """Offset 0, scale 1: N(x) = −x."""
        return cls(0.0, 1.0, percentile=False)

    @classmethod
    def from_row(cls, row: Mapping, percentile: bool = True) -> Normalization | None:
        """From a STAR row's statistics columns; None when it has none (or not those the mode needs)."""
        try:
            mean, std = float(row[Col.MEAN]), float(row[Col.STD])
            p4 = float(row[Col.P4]) if Col.P4 in row else None
            p96 = float(row[Col.P96]) if Col.P96 in row else None
            return cls(mean, std, p4, p96, percentile)
        except (KeyError, TypeError, ValueError):
            return None

    def columns(self) -> dict[str, float]:
        """The STAR columns of the statistics."""
        values = (self.mean, self.std, self.p4, self.p96)
        return {c: float(v) for c, v in zip(STAT_COLUMNS, values, strict=True) if v is not None}

    def with_mode(self, percentile: bool) -> Normalization:
        """The same statistics in the other mode."""
        return dataclasses.replace(self, percentile=percentile)

    @property
    def offset(self) -> float:
        """Offset of −x: ``−P96(x)`` (percentile) or ``−mean(x)``."""
        return -float(self.p96) if self.percentile else -float(self.mean)

    @property
    def scale(self) -> float:
        """Scale: ``P96(x) − P4(x)`` (percentile) or ``std(x)``; never 0."""
        scale = float(self.p96) - float(self.p4) + _TINY if self.percentile else float(self.std)
        return scale if scale != 0 else 1.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        """N(x), float32, same shape."""
        return ((-np.asarray(x, dtype=np.float32) - np.float32(self.offset)) / np.float32(self.scale)).astype(
            np.float32, copy=False)

    def invert(self, y: np.ndarray) -> np.ndarray:
        """x from N(x): ``−(y · scale + offset)``, float32."""
        return (-(np.asarray(y, dtype=np.float32) * np.float32(self.scale) + np.float32(self.offset))).astype(
            np.float32, copy=False)


def rescale(y: np.ndarray, percentile: bool = True) -> np.ndarray:
    """A network-space volume rescaled by its own statistics (P4/P96 → 0/1, or mean 0 / std 1), float32.

    IsoNet's per-cube renormalisation of the refill estimates: ``N`` of ``−y`` with the statistics of ``−y``.
    """
    return Normalization.of_volume(-y, percentile).apply(-y)
