"""What the viewer and the refinement page show: volumes of a STAR file, slices as PNG, losses.

Slices are read from the tomograms' Zarr copies where the commands made them (the
``zarr`` folder next to the STAR file), one plane of the coarsest pyramid level that
still shows it at :data:`MAX_EDGE` pixels or more, so a slice of a large tomogram
reads a few chunks, never the volume. A volume without an up-to-date copy is read
from its MRC file through a memory map (every ``2**level``-th voxel): viewing never
writes anything.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import zarr

from isonet_pl.config import IOConfig
from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.mrc import read_mrc_info
from isonet_pl.io.star import VOLUME_LABELS, Col, relative_to
from isonet_pl.io.zarr_store import TomogramStore, cached_store
from isonet_pl.plot import encode_png, slice_preview

#: Slices wider than this are read from a binned level of the pyramid.
MAX_EDGE = 1024
#: Colour and opacity of the mask overlay.
OVERLAY_RGB, OVERLAY_ALPHA = np.array([255, 120, 0], np.float32), 0.35
AXES = {"z": 0, "y": 1, "x": 2}

def zarr_folder(star: Path) -> Path:
    """Where the commands keep the Zarr copies of a STAR file's tomograms (the default ``zarr_folder``)."""
    folder = Path(IOConfig().zarr_folder)
    return folder if folder.is_absolute() else star.parent / folder


def list_volumes(star: Path, project: Path) -> list[dict[str, Any]]:
    """For each row of a tomogram STAR file: its index, name and the volumes that exist.

    Paths are relative to ``project`` when inside it.
    """
    table = read_tomogram_star(star)
    rows = []
    for i in range(len(table.df)):
        volumes = {}
        for column, label in VOLUME_LABELS.items():
            path = table.get_path(i, column, required=False) if column in table.df.columns else None
            if path is not None and path.is_file():
                volumes[label] = relative_to(path, project)
        name = Path(str(table.df[Col.TOMOGRAM].iloc[i])).name
        rows.append({"index": int(table.df[Col.INDEX].iloc[i]), "name": name, "volumes": volumes})
    return rows


class MrcVolume:
    """An MRC volume read through a memory map, with the parts of :class:`TomogramStore` the viewer uses;
    level ``k`` is every ``2**k``-th voxel (no binning)."""

    def __init__(self, path: Path):
        info = read_mrc_info(path)
        self.path, self.shape, self.voxel_size = path, tuple(info.shape), tuple(info.voxel_size)
        self.levels = 1 + max(0, int(np.log2(max(self.shape) / MAX_EDGE))) if max(self.shape) > MAX_EDGE else 1

    def plane(self, axis: int, index: int, level: int) -> np.ndarray:
        """The plane ``index`` (full-resolution voxels) along ``axis``, every ``2**level``-th voxel."""
        step = 2**level
        with mrcfile.mmap(self.path, mode="r", permissive=True) as mrc:
            data = mrc.data.reshape(self.shape)
            where = [slice(None, None, step)] * 3
            where[axis] = min(max(index, 0), self.shape[axis] - 1)
            return np.array(data[tuple(where)], dtype=np.float32)


def open_volume(path: Path, star: Path) -> TomogramStore | MrcVolume:
    """The up-to-date Zarr copy of an MRC volume, else the MRC file itself (nothing is converted)."""
    if not path.is_file():
        raise InputError("volume does not exist", path, "run the step that makes it")
    return cached_store(path, zarr_folder(star)) or MrcVolume(path)


def volume_info(path: Path, star: Path) -> dict[str, Any]:
    """Shape (z, y, x), voxel size (Å) and grey-level window (low, high) of a volume."""
    store = open_volume(path, star)
    return {"shape": list(store.shape), "voxel_size": list(store.voxel_size), "window": list(volume_window(store))}


_WINDOWS: dict[tuple, tuple[float, float]] = {}


def volume_window(store: TomogramStore | MrcVolume) -> tuple[float, float]:
    """The grey-level window of a whole volume: its 1st and 99th percentiles, from the store's ``omero``
    window where the commands wrote one, else from its coarsest level (or every 4th voxel of an MRC file);
    one window per volume, so slices can be compared and the grey level holds while sliding."""
    key = (str(store.path), Path(store.path).stat().st_mtime_ns)
    if key not in _WINDOWS:
        window = None
        if isinstance(store, TomogramStore):
            omero = dict(dict(zarr.open_group(store.path, mode="r").attrs.get("ome") or {}).get("omero") or {})
            channel = (omero.get("channels") or [{}])[0].get("window", {})
            if "start" in channel and "end" in channel:
                window = (float(channel["start"]), float(channel["end"]))
            else:
                sample = np.asarray(store.zarr_array(store.levels - 1)[...], dtype=np.float32)
        else:
            with mrcfile.mmap(store.path, mode="r", permissive=True) as mrc:
                sample = np.array(mrc.data.reshape(store.shape)[::4, ::4, ::4], dtype=np.float32)
        if window is None:
            low, high = np.percentile(sample, [1, 99])
            window = (float(low), float(high))
        _WINDOWS[key] = window
    return _WINDOWS[key]


def _plane(store: TomogramStore | MrcVolume, axis: str, index: int, level: int) -> np.ndarray:
    ax = AXES[axis]
    if isinstance(store, MrcVolume):
        return store.plane(ax, index, level)
    arr = store.zarr_array(level)
    i = min(max(index >> level, 0), arr.shape[ax] - 1)
    return np.asarray(arr[(slice(None),) * ax + (i,)], dtype=np.float32)


def _level(store: TomogramStore, axis: str) -> int:
    """The coarsest level whose slice is still at least MAX_EDGE wide (level 0 for small volumes)."""
    edge = max(s for a, s in enumerate(store.shape) if a != AXES[axis])
    level = 0
    while level + 1 < store.levels and edge >> (level + 1) >= MAX_EDGE:
        level += 1
    return level


def slice_png(path: Path, star: Path, axis: str, index: int, overlay: Path | None = None,
              window: tuple[float, float] | None = None, slab: int = 1) -> bytes:
    """One slice of a volume as PNG, grey levels clipped to the volume's window (:func:`volume_window`, or
    ``window``), optionally the mean of ``slab`` neighbouring slices (less noise, as IMOD's slab).

    Parameters
    ----------
    path : Path
        The volume (MRC), read through its Zarr copy.
    star : Path
        The STAR file it belongs to (for the Zarr folder).
    axis : {"z", "y", "x"}
        ``z``: an XY slice; ``y``: XZ; ``x``: YZ.
    index : int
        The slice along ``axis`` (full-resolution voxels; clipped to the volume).
    overlay : Path, optional
        A mask of the same shape, drawn in colour where it is set.
    window : (float, float), optional
        Grey levels shown as black and white (default: the volume's window).
    slab : int
        Number of slices averaged, centred on ``index`` (1 to 64).
    """
    if axis not in AXES:
        raise InputError(f"axis {axis!r} is not one of z, y, x")
    if not 1 <= slab <= 64:
        raise InputError(f"slab {slab} is not between 1 and 64 slices")
    store = open_volume(path, star)
    level = _level(store, axis)
    first = index - (slab - 1) // 2
    step = 2**level
    planes = [_plane(store, axis, i, level) for i in range(first, first + slab, step)]
    low, high = window or volume_window(store)
    image = slice_preview(np.mean(planes, axis=0), low, high)
    if overlay is None:
        return encode_png(image)
    mask_store = open_volume(overlay, star)
    if mask_store.shape != store.shape:
        raise InputError(f"mask shape {mask_store.shape} differs from the volume's {store.shape}", overlay,
                         "choose the mask of this tomogram")
    step = 2**level
    mask = _plane(mask_store, axis, index, 0)[::step, ::step][:image.shape[0], :image.shape[1]] > 0.5
    rgb = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * OVERLAY_RGB
    return encode_png(rgb.round().astype(np.uint8))


def loss_points(result_dir: Path) -> dict[str, Any]:
    """The losses of a refine run so far, from its Lightning CSV logs and per-iteration summaries.

    Returns
    -------
    dict
        ``train_step``: [step, loss] pairs; ``train`` and ``val``: [epoch, loss] pairs (epochs
        counted from 1 over all iterations); ``iterations``: the finished iterations; ``noise``:
        [iteration, noise level] pairs; ``epochs_per_iteration`` (None before the first iteration ends).
    """
    points: dict[str, list] = {"train_step": [], "train": [], "val": []}
    columns = {"train/loss_step": ("train_step", "step"), "train/loss_epoch": ("train", "epoch"),
               "val/loss": ("val", "epoch")}
    for csv_path in sorted((result_dir / "logs").glob("iter*/metrics.csv")):
        with open(csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                for column, (series, x) in columns.items():
                    if row.get(column) and row.get(x):
                        offset = 1 if x == "epoch" else 0
                        points[series].append([int(float(row[x])) + offset, float(row[column])])
    iterations, noise, epochs = [], [], None
    for path in sorted(result_dir.glob("refine_iter*.json")):
        try:
            payload = json.loads(path.read_text())
            iterations.append(int(payload["iteration"]))
            noise.append([int(payload["iteration"]), float(payload.get("noise_level", 0.0))])
            epochs = int(payload.get("settings", {}).get("epochs") or epochs or 0) or None
        except (ValueError, KeyError, TypeError):
            continue
    return {**{k: sorted(v) for k, v in points.items()}, "iterations": iterations, "noise": noise,
            "epochs_per_iteration": epochs}
