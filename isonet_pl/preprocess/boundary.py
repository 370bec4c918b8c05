"""Polygon boundaries for the sampling mask, read without IMOD.

IsoNet runs IMOD's ``model2point`` on a ``.mod`` file and tests grid points with
matplotlib. Here the IMOD binary model format is parsed natively and the point-in-polygon
test is a vectorised even-odd (crossing-number) test in numpy, so neither IMOD nor
matplotlib is needed. A plain text list of points is accepted as well.

Coordinates: points are ``(x, y, z)`` in full-resolution pixels (IMOD's index
coordinates, as ``model2point`` writes them); masks are ZYX on the 2×-binned grid.
"""

from __future__ import annotations

import logging
import re
import struct
from pathlib import Path

import numpy as np

from isonet_pl.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["read_boundary_points", "boundary_mask"]

_MODEL_HEADER_BYTES = 232
_OBJECT_BYTES = 176
_CONTOUR_HEAD = struct.Struct(">iIii")  # psize, flags, time, surf
_MESH_HEAD = struct.Struct(">iiIhh")  # vsize, lsize, flag, time, surf
_CHUNK_ID = re.compile(rb"[A-Z0-9]{4}")
#: Z extent (binned pixels) below which the last two points are part of the polygon.
_Z_RANGE_MIN = 5

_FIX_FILE = "give an IMOD model (.mod) or a text file with one 'x y z' point per line"


def _parse_imod(data: bytes, path: Path) -> np.ndarray:
    """Points of all contours of all objects, in file order, from an IMOD binary model."""

    def need(pos: int, size: int, what: str) -> None:
        if size < 0 or pos + size > len(data):
            raise InputError(f"truncated IMOD model (in {what} at byte {pos})", path,
                             "re-save the model in 3dmod")

    pos = 8
    need(pos, _MODEL_HEADER_BYTES, "the model header")
    pos += _MODEL_HEADER_BYTES
    contours = []
    while True:
        need(pos, 4, "a chunk id")
        tag = data[pos:pos + 4]
        pos += 4
        if tag == b"IEOF":
            break
        if tag == b"OBJT":
            need(pos, _OBJECT_BYTES, "an object header")
            pos += _OBJECT_BYTES
        elif tag == b"CONT":
            need(pos, _CONTOUR_HEAD.size, "a contour header")
            psize = _CONTOUR_HEAD.unpack_from(data, pos)[0]
            pos += _CONTOUR_HEAD.size
            need(pos, 12 * psize, "contour points")
            points = np.frombuffer(data, dtype=">f4", count=3 * psize, offset=pos)
            contours.append(points.reshape(psize, 3).astype(np.float64))
            pos += 12 * psize
        elif tag == b"MESH":
            need(pos, _MESH_HEAD.size, "a mesh header")
            vsize, lsize = _MESH_HEAD.unpack_from(data, pos)[:2]
            pos += _MESH_HEAD.size
            need(pos, 12 * vsize + 4 * lsize, "mesh data")
            pos += 12 * vsize + 4 * lsize
        elif _CHUNK_ID.fullmatch(tag):
            need(pos, 4, f"the size of chunk {tag.decode()}")
            (size,) = struct.unpack_from(">i", data, pos)
            pos += 4
            need(pos, size, f"chunk {tag.decode()}")
            pos += size
        else:
            raise InputError(f"corrupt IMOD model: unknown chunk {tag!r} at byte {pos - 4}", path,
                             "re-save the model in 3dmod")
    if not contours:
        return np.zeros((0, 3))
    return np.concatenate(contours, axis=0)


def _parse_text(text: str, path: Path) -> np.ndarray:
    """Points from text lines ``x y z`` (whitespace or commas; ``#`` starts a comment).

    Lines with more than three numbers (``model2point -object/-contour`` output) use the
    last three.
    """
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        fields = line.split()
        try:
            numbers = [float(f) for f in fields]
        except ValueError:
            raise InputError(f"line {lineno} is not a list of numbers: {line[:60]!r}", path,
                             _FIX_FILE) from None
        if len(numbers) < 3:
            raise InputError(f"line {lineno} has {len(numbers)} number(s), expected x y z", path,
                             _FIX_FILE)
        rows.append(numbers[-3:])
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def read_boundary_points(path: str | Path) -> np.ndarray:
    """Read the points of a mask boundary.

    Parameters
    ----------
    path : str or Path
        An IMOD binary model (recognised by its ``IMOD`` magic, whatever the extension)
        or a text file with one point ``x y z`` per line (whitespace or comma separated,
        ``#`` comments, blank lines ignored).

    Returns
    -------
    ndarray of float64, shape (n, 3)
        Points ``(x, y, z)`` in full-resolution pixels. For a model: the points of every
        contour of every object, in file order, as IMOD's ``model2point`` lists them.

    Raises
    ------
    InputError
        If the file is missing or unreadable, is neither format, is a truncated model,
        or holds fewer than two points.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("mask boundary file not found", path, "check rlnMaskBoundary") from None
    except OSError as exc:
        raise InputError(f"cannot read mask boundary file ({exc.strerror})", path) from None
    if data[:4] == b"IMOD":
        points = _parse_imod(data, path)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("not an IMOD model or a text point list", path, _FIX_FILE) from None
        if "\x00" in text:
            raise InputError("not an IMOD model or a text point list", path, _FIX_FILE)
        points = _parse_text(text, path)
    if len(points) == 0:
        raise InputError("mask boundary has no points", path, "draw a polygon around the sample")
    if len(points) == 1:
        raise InputError("mask boundary has a single point, too few points", path,
                         "draw at least 3 points around the sample")
    logger.debug("read %d boundary points from %s", len(points), path)
    return points


def _points_in_polygon(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Even-odd test of every integer point of a 2-D grid against a closed polygon.

    Parameters
    ----------
    vertices : ndarray, shape (n, 2)
        Polygon vertices ``(u, v)``, u along axis 0 of the grid and v along axis 1; the
        last vertex is joined back to the first.
    shape : tuple of int
        Grid shape ``(nu, nv)``.

    Returns
    -------
    ndarray of bool, shape ``shape``
        True where the point is inside (crossing number odd).

    Notes
    -----
    A ray is cast from each point towards +u and the polygon edges it crosses are
    counted. An edge counts when its end points straddle the point's v (``>=`` on one
    side, ``<`` on the other, so shared vertices are counted once) and the crossing lies
    at larger u. Points exactly on an edge may be classified either way.
    """
    u = np.arange(shape[0], dtype=np.float64)[:, None]
    v = np.arange(shape[1], dtype=np.float64)[None, :]
    inside = np.zeros(shape, dtype=bool)
    n = len(vertices)
    for i in range(n):
        u0, v0 = vertices[i - 1]
        u1, v1 = vertices[i]
        straddle = (v0 >= v) != (v1 >= v)  # (1, nv)
        if not straddle.any():
            continue
        # Crossing at larger u  <=>  (v1 - v)(u0 - u1) >= (u1 - u)(v0 - v1), oriented by
        # which end is above; multiplied out to avoid a division.
        above = v1 >= v
        right = ((v1 - v) * (u0 - u1) >= (u1 - u) * (v0 - v1)) == above
        inside ^= straddle & right
    return inside


def _boundary_parts(points_xyz, binned_shape_zyx) -> tuple[np.ndarray, int, int]:
    """The 2-D (Y, X) mask and the binned Z range ``[z_lo, z_hi)`` of a boundary."""
    points = np.asarray(points_xyz, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(
            f"mask boundary points must be an (n, 3) array of x y z, got shape {points.shape}")
    nz, ny, nx = (int(s) for s in binned_shape_zyx)
    points = points / 2.0  # full resolution -> binned grid
    if len(points) < 2:
        raise InputError("mask boundary has fewer than two points, too few points",
                         fix="draw at least 3 points around the sample")
    z_prev, z_last = points[-2, 2], points[-1, 2]
    if abs(z_last - z_prev) < _Z_RANGE_MIN:
        z_lo, z_hi = 0, nz
        polygon = points
        logger.info("mask boundary: polygon of %d points over the full Z range", len(polygon))
    else:
        z_lo = int(max(min(z_last, z_prev), 0))
        z_hi = int(min(max(z_last, z_prev), nz))
        polygon = points[:-2]
        logger.info("mask boundary: the last two points set the binned Z range [%d, %d)",
                    z_lo, z_hi)
    if len(polygon) == 0:
        plane = np.ones((ny, nx), dtype=bool)
    elif len(polygon) < 3:
        raise InputError(f"mask boundary polygon has {len(polygon)} point(s), it needs at least 3",
                         fix="draw at least 3 points around the sample")
    else:
        # Vertices (y, x): columns 1 and 0, tested at every integer (y, x) of the grid.
        plane = _points_in_polygon(polygon[:, [1, 0]], (ny, nx))
    return plane, z_lo, z_hi


def boundary_mask(points_xyz, binned_shape_zyx) -> np.ndarray:
    """Boolean mask of the region inside a boundary polygon, on the 2×-binned grid.

    Implements IsoNet's rule (SPEC §4.3 steps 3–6):

    1. Points are divided by 2 to match the binned grid.
    2. Z range: with ``z₁``, ``z₀`` the Z of the second-to-last and last point, if
       ``|z₀ − z₁| < 5`` every slice is kept and all points form the polygon; otherwise
       slices ``[int(max(min(z₀, z₁), 0)), int(min(max(z₀, z₁), nZ)))`` are kept and the
       other points form the polygon (none left: the whole plane within that range).
    3. The polygon (vertices ``(y, x)``, at least 3) is tested at every integer ``(y, x)``
       of the grid; the 2-D result is applied to every kept slice.

    Parameters
    ----------
    points_xyz : array_like, shape (n, 3)
        Boundary points ``(x, y, z)`` in full-resolution pixels.
    binned_shape_zyx : tuple of int
        Shape ``(nZ, nY, nX)`` of the binned grid (full shape // 2).

    Returns
    -------
    ndarray of bool, shape ``binned_shape_zyx``
        True inside the boundary.

    Raises
    ------
    InputError
        Fewer than two points, or a polygon of one or two points.

    Notes
    -----
    Points exactly on a polygon edge may be classified differently from matplotlib's
    ``Path.contains_points``, which IsoNet uses.
    """
    plane, z_lo, z_hi = _boundary_parts(points_xyz, binned_shape_zyx)
    mask = np.zeros(tuple(int(s) for s in binned_shape_zyx), dtype=bool)
    if z_hi > z_lo:
        mask[z_lo:z_hi] = plane
    return mask
