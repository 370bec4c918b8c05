"""Small PNG figures without a plotting library: slice previews and loss curves.

``encode_png`` / ``write_png`` encode 8-bit grey or RGB images with zlib; ``slice_preview`` scales a 2-D
slice to grey levels; ``loss_curve`` rasterises line plots on a white canvas.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from isonet_pl.io.paths import atomic_path

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def encode_png(image: np.ndarray) -> bytes:
    """The PNG bytes of an (h, w) grey or (h, w, 3) RGB uint8 image."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    colour = 2 if image.ndim == 3 else 0
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
    return png + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an (h, w) grey or (h, w, 3) RGB uint8 image as PNG (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(image))
    return path


def slice_preview(plane: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """A 2-D slice as uint8 grey levels, clipped at its 1st/99th percentiles (or ``low``/``high``)."""
    plane = np.asarray(plane, dtype=np.float32)
    lo = np.percentile(plane, 1) if low is None else low
    hi = np.percentile(plane, 99) if high is None else high
    return (np.clip((plane - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)


def loss_curve(series: dict[str, list[float]], width: int = 480, height: int = 300) -> np.ndarray:
    """Rasterise line plots (one colour per series, shared y range, log-free) as an RGB image."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    margin = 20
    canvas[margin:height - margin, margin] = 0
    canvas[height - margin, margin:width - margin] = 0
    values = [v for vals in series.values() for v in vals if np.isfinite(v)]
    if not values:
        return canvas
    vmin, vmax = min(values), max(values)
    span = vmax - vmin or 1.0
    n = max(len(v) for v in series.values())
    for colour, vals in zip(COLOURS, series.values()):
        points = [(margin + (width - 2 * margin) * i / max(n - 1, 1),
                   height - margin - (height - 2 * margin) * (v - vmin) / span) for i, v in enumerate(vals)]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
            xs = np.linspace(x0, x1, steps).round().astype(int)
            ys = np.linspace(y0, y1, steps).round().astype(int)
            for dy in (0, 1):
                canvas[np.clip(ys + dy, 0, height - 1), np.clip(xs, 0, width - 1)] = colour
        for x, y in points:
            canvas[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = colour
    return canvas
