"""Small figures without a plotting library: slice previews (PNG) and the loss figure (SVG).

``encode_png`` / ``write_png`` encode 8-bit grey or RGB images with zlib; ``slice_preview`` scales a 2-D
slice to grey levels; ``loss_figure`` draws the
training and validation losses of a refine run as an SVG with axes, ticks, labels, a legend, the
iteration boundaries and the starts of the noise stages.
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


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2, 2.5 or 5 × 10^k apart) covering [lo, hi]."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = np.floor(lo / step) * step
    return [float(round(v, 12)) for v in np.arange(start, hi + step * 0.5, step)]


def loss_figure(train: list[float], val: list[float], epochs_per_iteration: int,
                noise: list[float] | None = None, width: int = 720, height: int = 420) -> str:
    """The losses of a refine run as an SVG document.

    Parameters
    ----------
    train, val : list of float
        Training and validation loss per epoch, over all iterations (epoch 1 first).
    epochs_per_iteration : int
        Epochs per iteration: a dashed line marks the end of each iteration.
    noise : list of float, optional
        Noise level of each iteration (IsoNet's schedule): where it rises a red line marks the
        start of a noise stage (the loss rises there, which is expected, not divergence).
    """
    left, right, top, bottom = 70, 20, 40, 55
    w, h = width - left - right, height - top - bottom
    values = [v for v in (*train, *val) if np.isfinite(v)]
    n = max(len(train), len(val), 1)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    yticks = nice_ticks(lo, hi)
    lo, hi = (yticks[0], yticks[-1]) if len(yticks) > 1 else (lo, hi + 1)
    x = lambda e: left + w * (e - 1) / max(n - 1, 1)  # noqa: E731 (epoch, from 1)
    y = lambda v: top + h * (1 - (v - lo) / (hi - lo))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">refine: loss per epoch</text>']
    iterations = (n + epochs_per_iteration - 1) // max(epochs_per_iteration, 1)
    for it in range(1, iterations):  # iteration boundaries
        xe = x(it * epochs_per_iteration + 0.5)
        out.append(f'<line x1="{xe:.1f}" y1="{top}" x2="{xe:.1f}" y2="{top + h}" stroke="#bbb" '
                   'stroke-dasharray="3,3"/>')
    for it in range(1, len(noise or [])):
        if noise[it] > noise[it - 1]:
            xe = x(it * epochs_per_iteration + 0.5)
            out.append(f'<line x1="{xe:.1f}" y1="{top}" x2="{xe:.1f}" y2="{top + h}" stroke="#d62728"/>')
            out.append(f'<text x="{xe + 3:.1f}" y="{top + 12}" fill="#d62728" font-size="10">noise '
                       f'{noise[it]:g}</text>')
    out.append(f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="black"/>')
    for v in yticks:
        out.append(f'<line x1="{left - 4}" y1="{y(v):.1f}" x2="{left}" y2="{y(v):.1f}" stroke="black"/>')
        out.append(f'<text x="{left - 7}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for e in nice_ticks(1, n, 8):
        if 1 <= e <= n and float(e).is_integer():
            out.append(f'<line x1="{x(e):.1f}" y1="{top + h}" x2="{x(e):.1f}" y2="{top + h + 4}" stroke="black"/>')
            out.append(f'<text x="{x(e):.1f}" y="{top + h + 17}" text-anchor="middle">{int(e)}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 12}" text-anchor="middle">epoch (dashed lines: iterations '
               f'of {epochs_per_iteration} epochs)</text>')
    out.append(f'<text x="16" y="{top + h / 2}" text-anchor="middle" transform="rotate(-90 16 {top + h / 2})">'
               'loss</text>')
    for k, (name, series) in enumerate((("training", train), ("validation", val))):
        colour = "#{:02x}{:02x}{:02x}".format(*COLOURS[k])
        points = " ".join(f"{x(i + 1):.1f},{y(v):.1f}" for i, v in enumerate(series) if np.isfinite(v))
        if points:
            out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = top + 8 + 16 * k
        out.append(f'<line x1="{left + w - 110}" y1="{ly}" x2="{left + w - 90}" y2="{ly}" stroke="{colour}" '
                   'stroke-width="2"/>')
        out.append(f'<text x="{left + w - 85}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
