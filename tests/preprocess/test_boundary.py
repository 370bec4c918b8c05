"""Mask boundaries: IMOD models and text point lists, the Z-range rule and the polygon test."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from isonet_pl.errors import InputError
from isonet_pl.preprocess.boundary import boundary_mask, read_boundary_points


def write_imod_model(path, objects, extra_chunks=True):
    """Write a minimal IMOD binary model (big-endian), one list of contours per object.

    Each contour is an (n, 3) array of x, y, z. With ``extra_chunks`` a mesh and two
    size-prefixed chunks (model-level and contour-level) are added, which readers skip.
    """
    out = bytearray(b"IMOD" + b"V1.2")
    header = bytearray(232)
    header[:10] = b"test model"
    struct.pack_into(">iiii", header, 128, 100, 100, 30, len(objects))  # xmax ymax zmax objsize
    out += header
    for contours in objects:
        obj = bytearray(176)
        obj[:6] = b"object"
        struct.pack_into(">i", obj, 128, len(contours))  # contsize
        out += b"OBJT" + obj
        for points in contours:
            points = np.asarray(points, dtype=">f4").reshape(-1, 3)
            out += b"CONT" + struct.pack(">iIii", len(points), 0, 0, 0) + points.tobytes()
            if extra_chunks:
                out += b"SIZE" + struct.pack(">i", 4 * len(points)) + bytes(4 * len(points))
        if extra_chunks:
            verts = np.arange(6, dtype=">f4")
            out += b"MESH" + struct.pack(">iiIhh", 2, 3, 0, 0, 0) + verts.tobytes()
            out += struct.pack(">iii", 0, 1, -1)
    if extra_chunks:
        out += b"MINX" + struct.pack(">i", 72) + bytes(72)
    out += b"IEOF"
    path.write_bytes(bytes(out))
    return path


def test_imod_model_round_trips_points(tmp_path):
    """All points of all contours of all objects come back, in order, as float (x, y, z)."""
    contours = [
        [np.array([[10.5, 20, 3], [30, 20, 3], [30, 40.25, 3]])],
        [np.array([[1, 2, 3]]), np.zeros((0, 3)), np.array([[4, 5, 6], [7, 8, 9]])],
    ]
    path = write_imod_model(tmp_path / "b.mod", contours)
    expected = np.concatenate([c for obj in contours for c in obj])
    assert_array_equal(read_boundary_points(path), expected)


def test_imod_model_without_extra_chunks(tmp_path):
    """A model with only OBJT/CONT chunks is read too."""
    pts = np.array([[1, 1, 1], [9, 1, 1], [9, 9, 1]], dtype=float)
    path = write_imod_model(tmp_path / "b.mod", [[pts]], extra_chunks=False)
    assert_array_equal(read_boundary_points(path), pts)


def test_text_points(tmp_path):
    """Whitespace or commas, comments and blank lines; extra leading columns are dropped."""
    path = tmp_path / "b.txt"
    path.write_text("# x y z\n10 20 3\n\n30, 20, 3  # corner\n1 2 30 40 5\n")
    assert_array_equal(read_boundary_points(path), [[10, 20, 3], [30, 20, 3], [30, 40, 5]])


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\x01\x02binary",
        b"1 2\n3 4\n",
        b"1 2 three\n",
        b"5 5 5\n",
        b"IMOD" + b"V1.2" + bytes(100),
        b"IMOD" + b"V1.2" + bytes(232) + b"CONT" + struct.pack(">iIii", 5, 0, 0, 0) + bytes(12),
        b"IMOD" + b"V1.2" + bytes(232) + b"bad!" + bytes(8),
        b"IMOD" + b"V1.2" + bytes(232) + b"IEOF",
    ],
    ids=["empty", "binary", "two-columns", "not-numbers", "single-point", "short-header",
         "truncated-contour", "unknown-chunk", "model-without-points"],
)
def test_bad_files_raise_input_error(tmp_path, content):
    """Unreadable, unknown or pointless files are reported with the path."""
    path = tmp_path / "bad.mod"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_boundary_points(path)
    assert str(path) in str(err.value)


def test_missing_file_raises_input_error(tmp_path):
    """A missing file is an InputError, not a traceback."""
    with pytest.raises(InputError, match="not found"):
        read_boundary_points(tmp_path / "nope.mod")


def test_square_polygon_area():
    """A square with half-integer binned corners covers exactly the integer points inside."""
    # Full-resolution corners 21 and 101 -> binned 10.5 and 50.5 -> rows/columns 11..50.
    square = np.array([[21, 21, 10], [101, 21, 10], [101, 101, 10], [21, 101, 12]], dtype=float)
    mask = boundary_mask(square, (8, 64, 60))
    assert mask.shape == (8, 64, 60)
    assert mask.sum() == 8 * 40 * 40
    plane = mask[0]
    assert plane[11:51, 11:51].all() and plane.sum() == 1600
    assert (mask == mask[:1]).all()  # |dz| < 5: every slice


def test_polygon_vertices_are_y_x():
    """A rectangle long in x covers a wide (y, x) region, not a tall one."""
    # Binned x 0.5..40.5, y 0.5..10.5.
    rect = np.array([[1, 1, 0], [81, 1, 0], [81, 21, 0], [1, 21, 0]], dtype=float)
    plane = boundary_mask(rect, (1, 64, 64))[0]
    ys, xs = np.nonzero(plane)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (1, 10, 1, 40)


def test_triangle_has_no_points_outside():
    """Every point marked inside a triangle satisfies the half-plane inequalities."""
    tri = np.array([[0, 0, 0], [120, 0, 0], [0, 120, 0]], dtype=float)  # binned legs of 60
    plane = boundary_mask(tri, (1, 64, 64))[0]
    y, x = np.indices(plane.shape)
    strictly_inside = (x > 0) & (y > 0) & (x + y < 60)
    assert (plane >= strictly_inside).all()
    assert not (plane & ~((x >= 0) & (y >= 0) & (x + y <= 60))).any()


def test_last_two_points_set_z_range():
    """With |z0 - z1| >= 5 binned pixels, the last two points give the Z range only."""
    square = [[21, 21, 0], [101, 21, 0], [101, 101, 0], [21, 101, 0]]
    pts = np.array(square + [[0, 0, 40], [0, 0, 8]], dtype=float)
    mask = boundary_mask(pts, (30, 64, 60))
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    assert (zs.min(), zs.max()) == (4, 19)  # [int(8/2), int(40/2))
    assert mask[4].sum() == 1600


def test_z_range_is_clipped_to_the_volume():
    """The Z range is clipped to [0, nZ)."""
    triangle = [[21, 21, 0], [101, 21, 0], [101, 101, 0]]
    pts = np.array(triangle + [[0, 0, -30], [0, 0, 500]], dtype=float)
    mask = boundary_mask(pts, (12, 64, 60))
    assert mask.any(axis=(1, 2)).all()


def test_only_two_z_points_keep_whole_planes():
    """Two points far apart in Z and nothing else: whole XY planes within the range."""
    mask = boundary_mask(np.array([[5, 5, 10], [7, 7, 30]], dtype=float), (20, 8, 9))
    assert_array_equal(mask.any(axis=(1, 2)), np.isin(np.arange(20), np.arange(5, 15)))
    assert mask[5:15].all()


@pytest.mark.parametrize(
    "pts",
    [
        [[0, 0, 0]],
        [[0, 0, 0], [10, 10, 1]],  # |dz| < 5: a two-point polygon
        [[0, 0, 0], [10, 10, 0], [0, 0, 2], [0, 0, 30]],  # two polygon points left
    ],
    ids=["one", "two-close", "two-left"],
)
def test_too_few_points_raise_input_error(pts):
    """A polygon needs at least three points."""
    with pytest.raises(InputError):
        boundary_mask(np.array(pts, dtype=float), (20, 16, 16))
