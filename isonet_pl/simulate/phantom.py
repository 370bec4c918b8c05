"""Seeded synthetic "cell" phantoms for testing missing-wedge correction.

The phantom is a density map (protein/lipid positive, background 0) in ZYX order: a slab along
Z (the ice layer, ``slab_fraction·nz`` thick and centred) that contains

* membrane sheets, tilted from the XY plane by up to ``membrane_tilt`` (10° by default: flat-ish),
  gently undulating and ending along a random line (a "cell edge") — at 10° their Fourier power
  lies close to the k_z axis, i.e. mostly inside the missing wedge;
* vesicles: spherical shells with a bilayer-like profile (two leaflets 4 nm apart), radius
  5–20 nm;
* filaments: straight actin-like tubes (7 nm diameter) along random directions, most of them
  nearly horizontal (elongated along the beam-blurred direction at high tilt), a few steep
  ones through the slab;
* macromolecule-like blobs: clusters of a few gaussian balls, 10–25 nm across.

Object sizes are physical (nm) and converted to voxels with ``pixel_size`` (Å); the default
numbers of objects scale with the physical slab volume (or lateral area for sheets and
filaments), so a 64×96×96 test volume and a 96×256×256 demo volume have the same crowding. All
profiles are smooth (gaussian or tanh edges at least ~0.7 voxel wide), and every object is drawn
only inside its own bounding box, so building a 96×256×256 phantom takes about a second.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["make_phantom"]

# Reference crowding: counts for a 96×256×256 volume at 10 Å with slab_fraction 0.6.
_REF_SLAB_VOLUME_A3 = 0.6 * 96 * 256 * 256 * 10.0**3
_REF_AREA_A2 = 256 * 256 * 10.0**2
_REF_COUNTS = {"membranes": 2, "vesicles": 10, "filaments": 16, "blobs": 300}

_LEAFLET_SEPARATION_A = 40.0  # distance between the two head-group layers of a bilayer
_FILAMENT_DIAMETER_A = 70.0  # actin
_SLAB_EDGE_VOXELS = 2.0  # width of the raised-cosine fall-off at the slab surfaces


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One uniform draw in [low, high]; ``low`` when the interval is empty."""
    return low + max(high - low, 0.0) * rng.random()


def _edge_sigma(pixel_size: float) -> float:
    """Gaussian width (Å) of the thinnest features: >= ~0.75 voxel, so they stay band-limited."""
    return max(6.0, 0.75 * pixel_size)


def _bilayer(distance_a: np.ndarray, sigma_a: float) -> np.ndarray:
    """Two gaussian leaflets at ±20 Å from the mid-plane; peak value ≈ 1."""
    half = 0.5 * _LEAFLET_SEPARATION_A
    inv = -0.5 / (sigma_a * sigma_a)
    return np.exp(inv * (distance_a - half) ** 2) + np.exp(inv * (distance_a + half) ** 2)


def _slab_window(nz: int, slab_fraction: float) -> tuple[np.ndarray, float, float]:
    """Raised-cosine slab profile along Z, and the slab's (z_low, z_high) interior bounds."""
    centre = 0.5 * (nz - 1)
    half = 0.5 * slab_fraction * nz
    dist = np.abs(np.arange(nz, dtype=np.float64) - centre)
    edge = min(_SLAB_EDGE_VOXELS, half)
    ramp = np.clip((half - dist) / max(edge, 1e-6), 0.0, 1.0)
    window = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return window.astype(np.float32), centre - half + edge, centre + half - edge


def _default_counts(shape_zyx, slab_fraction, pixel_size) -> dict[str, int]:
    """Object counts scaled from the 96×256×256 @ 10 Å reference (see ``_REF_COUNTS``)."""
    nz, ny, nx = shape_zyx
    vol_ratio = slab_fraction * nz * ny * nx * pixel_size**3 / _REF_SLAB_VOLUME_A3
    area_ratio = ny * nx * pixel_size**2 / _REF_AREA_A2
    return {
        "membranes": max(1, round(_REF_COUNTS["membranes"] * area_ratio)),
        "vesicles": max(1, round(_REF_COUNTS["vesicles"] * vol_ratio)),
        "filaments": max(2, round(_REF_COUNTS["filaments"] * area_ratio)),
        "blobs": max(3, round(_REF_COUNTS["blobs"] * vol_ratio)),
    }


def _add_sheet(vol, rng, z_low, z_high, pixel_size, sigma_a, max_tilt=10.0) -> None:
    """A tilted, undulating membrane sheet that ends along a random in-plane line; its tilt from the XY plane
    is drawn uniformly in [0, max_tilt] degrees (a height field in Z, so at most 60°)."""
    nz, ny, nx = vol.shape
    tilt = np.deg2rad(rng.uniform(0.0, max_tilt))
    azimuth = rng.uniform(0.0, 2 * np.pi)
    slope_y, slope_x = np.tan(tilt) * np.sin(azimuth), np.tan(tilt) * np.cos(azimuth)
    cos_tilt = np.cos(tilt)
    inset = 0.2 * (z_high - z_low)  # keep sheets away from the slab surfaces
    z0 = rng.uniform(z_low + inset, z_high - inset)
    yy = np.arange(ny, dtype=np.float64)[:, None] - 0.5 * (ny - 1)
    xx = np.arange(nx, dtype=np.float64)[None, :] - 0.5 * (nx - 1)
    amp = rng.uniform(0.5, 3.0)
    wavelength = rng.uniform(0.6, 1.5) * max(ny, nx)
    gamma = rng.uniform(0.0, 2 * np.pi)
    phase = rng.uniform(0.0, 2 * np.pi)
    along = xx * np.cos(gamma) + yy * np.sin(gamma)
    height = z0 + slope_y * yy + slope_x * xx + amp * np.sin(2 * np.pi * along / wavelength + phase)
    # The sheet exists on one side of a random line, with a soft ~3-voxel edge.
    edge_dir = rng.uniform(0.0, 2 * np.pi)
    edge_pos = rng.uniform(-0.35, 0.35) * min(ny, nx)
    across = xx * np.cos(edge_dir) + yy * np.sin(edge_dir) - edge_pos
    lateral = 0.5 * (1.0 + np.tanh(across / 3.0))
    reach = (0.5 * _LEAFLET_SEPARATION_A + 3.5 * sigma_a) / pixel_size / cos_tilt
    half_width = int(np.ceil(reach)) + 1
    offsets = np.arange(-half_width, half_width + 1)[:, None, None]
    zz = np.rint(height)[None].astype(np.intp) + offsets  # (2w+1, ny, nx), unique per sheet
    valid = (zz >= 0) & (zz < nz) & (lateral[None] > 1e-4)
    dist_a = (zz - height[None]) * cos_tilt * pixel_size
    values = _bilayer(dist_a, sigma_a) * lateral[None]
    iz = zz[valid]
    iy = np.broadcast_to(np.arange(ny)[None, :, None], zz.shape)[valid]
    ix = np.broadcast_to(np.arange(nx)[None, None, :], zz.shape)[valid]
    vol[iz, iy, ix] += values[valid].astype(np.float32)


def _box(centre, radius, shape):
    """Integer bounding box (slices and coordinate vectors) of a ball, clipped to the volume."""
    lo = [max(0, int(np.floor(c - radius))) for c in centre]
    hi = [min(n, int(np.ceil(c + radius)) + 1) for c, n in zip(centre, shape, strict=True)]
    if any(h <= low for low, h in zip(lo, hi, strict=True)):
        return None
    slices = tuple(slice(low, h) for low, h in zip(lo, hi, strict=True))
    coords = [
        np.arange(low, h, dtype=np.float64) - c for low, h, c in zip(lo, hi, centre, strict=True)
    ]
    return slices, coords


def _add_vesicles(vol, rng, count, z_low, z_high, pixel_size, sigma_a, placed) -> None:
    """Spherical bilayer shells that do not overlap each other."""
    nz, ny, nx = vol.shape
    room = 0.5 * (z_high - z_low) - 1.0  # largest radius (voxels) that fits in the slab
    r_min, r_max = 50.0 / pixel_size, 200.0 / pixel_size
    if room < max(2.0, 0.5 * r_min):
        logger.debug("slab too thin for vesicles (room %.1f voxels); none drawn", room)
        return
    reach_extra = (0.5 * _LEAFLET_SEPARATION_A + 3.5 * sigma_a) / pixel_size
    for _ in range(count):
        for _attempt in range(50):
            radius = min(rng.uniform(r_min, r_max), room)
            zc = _uniform(rng, z_low + radius, z_high - radius)
            yc = rng.uniform(0, ny - 1)
            xc = rng.uniform(0, nx - 1)
            centre = np.array([zc, yc, xc])
            if all(
                np.linalg.norm(centre - c) > radius + r + 2 * reach_extra for c, r in placed
            ):
                break
        else:
            continue
        placed.append((centre, radius))
        box = _box(centre, radius + reach_extra + 1, vol.shape)
        if box is None:
            continue
        slices, (dz, dy, dx) = box
        r = np.sqrt(dz[:, None, None] ** 2 + dy[None, :, None] ** 2 + dx[None, None, :] ** 2)
        vol[slices] += _bilayer((r - radius) * pixel_size, sigma_a).astype(np.float32)


def _add_filament(vol, rng, z_low, z_high, pixel_size, sigma_a) -> None:
    """A straight tube through the volume; mostly near-horizontal, sometimes steep."""
    shape = np.array(vol.shape)
    if rng.random() < 0.65:
        elevation = np.deg2rad(rng.uniform(-8.0, 8.0))
    else:
        elevation = np.deg2rad(rng.uniform(15.0, 75.0)) * rng.choice([-1.0, 1.0])
    azimuth = rng.uniform(0.0, 2 * np.pi)
    flat = np.cos(elevation)
    direction = np.array([np.sin(elevation), flat * np.sin(azimuth), flat * np.cos(azimuth)])
    point = np.array(
        [rng.uniform(z_low, z_high), rng.uniform(0, shape[1] - 1), rng.uniform(0, shape[2] - 1)]
    )
    radius_a = 0.5 * _FILAMENT_DIAMETER_A
    edge_a = max(5.0, 0.5 * pixel_size)
    reach = (radius_a + 4.0 * edge_a) / pixel_size
    # March along the dominant axis: each plane perpendicular to it holds a small patch.
    axis = int(np.argmax(np.abs(direction)))
    others = [a for a in range(3) if a != axis]
    half = int(np.ceil(reach / abs(direction[axis]))) + 1
    t = np.arange(shape[axis], dtype=np.float64)
    centres = point[None, :] + ((t - point[axis]) / direction[axis])[:, None] * direction[None, :]
    inside = np.ones(t.size, dtype=bool)
    for a in others:
        inside &= (centres[:, a] > -half) & (centres[:, a] < shape[a] - 1 + half)
    if not inside.any():
        return
    t, centres = t[inside], centres[inside]
    off = np.arange(-half, half + 1)
    grid = np.empty((3, t.size, off.size, off.size), dtype=np.float64)
    grid[axis] = t[:, None, None]
    grid[others[0]] = np.rint(centres[:, others[0]])[:, None, None] + off[None, :, None]
    grid[others[1]] = np.rint(centres[:, others[1]])[:, None, None] + off[None, None, :]
    valid = np.ones(grid.shape[1:], dtype=bool)
    for a in range(3):
        valid &= (grid[a] >= 0) & (grid[a] < shape[a])
    pts = grid[:, valid]  # (3, n_points), unique voxels
    rel = pts - point[:, None]
    along = direction @ rel
    perp = np.sqrt(np.maximum(np.sum(rel * rel, axis=0) - along * along, 0.0)) * pixel_size
    values = 0.5 * (1.0 - np.tanh((perp - radius_a) / edge_a))
    idx = pts.astype(np.intp)
    vol[idx[0], idx[1], idx[2]] += (0.9 * values).astype(np.float32)


def _add_blobs(vol, rng, count, z_low, z_high, pixel_size) -> None:
    """Clusters of 3–7 gaussian balls (10–25 nm across), merged softly: 1 − exp(−Σ)."""
    nz, ny, nx = vol.shape
    acc = np.zeros_like(vol)
    min_sigma = 0.9  # voxels: keeps the balls band-limited at coarse pixel sizes
    for _ in range(count):
        diameter = rng.uniform(100.0, 250.0) / pixel_size
        n_balls = int(rng.integers(3, 8))
        sigma = np.maximum(rng.uniform(0.08, 0.14, n_balls) * diameter, min_sigma)
        spread = max(0.5 * diameter - 1.5 * sigma.mean(), 0.0)
        margin = min(0.5 * diameter, 0.5 * (z_high - z_low))
        zc = _uniform(rng, z_low + margin, z_high - margin)
        centre = np.array([zc, rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)])
        amplitude = rng.uniform(0.8, 1.6)
        for k in range(n_balls):
            offset = rng.normal(size=3)
            offset *= spread * rng.random() ** (1 / 3) / max(np.linalg.norm(offset), 1e-9)
            ball = centre + offset
            box = _box(ball, 3.0 * sigma[k], vol.shape)
            if box is None:
                continue
            slices, (dz, dy, dx) = box
            inv = -0.5 / sigma[k] ** 2
            gz, gy, gx = np.exp(inv * dz * dz), np.exp(inv * dy * dy), np.exp(inv * dx * dx)
            ball_values = amplitude * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
            acc[slices] += ball_values.astype(np.float32)
    vol += -np.expm1(-acc)


def make_phantom(
    shape_zyx: tuple[int, int, int],
    rng: np.random.Generator | int | None = None,
    slab_fraction: float = 0.6,
    n_membranes: int | None = None,
    n_vesicles: int | None = None,
    n_filaments: int | None = None,
    n_blobs: int | None = None,
    pixel_size: float = 10.0,
    membrane_tilt: float = 10.0,
) -> np.ndarray:
    """Build a seeded cell-like density phantom.

    Parameters
    ----------
    shape_zyx : tuple of int
        Volume shape (nz, ny, nx) in voxels; Z is the slab normal (beam at 0° tilt).
    rng : numpy.random.Generator or int or None
        Random generator or seed; the same seed gives the same phantom.
    slab_fraction : float, default 0.6
        Slab (ice) thickness as a fraction of nz, centred along Z. Outside it the density is 0.
    n_membranes, n_vesicles, n_filaments, n_blobs : int, optional
        Numbers of objects. Default: scaled to the physical volume (sheets and filaments to
        the lateral area); a 96×256×256 volume at 10 Å gets 2 sheets, 10 vesicles,
        16 filaments and 300 blobs, small volumes at least 1, 1, 2 and 3.
    pixel_size : float, default 10.0
        Voxel size in Å; object sizes are physical (see the module docstring).
    membrane_tilt : float, default 10.0
        Largest tilt of the membrane sheets from the XY plane in degrees (0–60), each drawn uniformly
        up to it. At 10 the sheets' Fourier power lies almost all in a ±60° missing wedge; at 60 a
        sheet can cross the slab and much of its power is measured.

    Returns
    -------
    ndarray, shape (nz, ny, nx), float32
        Density, 0 outside the slab and in the background, about 1 at the centre of lipid
        leaflets, filaments and proteins (overlapping objects add up).
    """
    if len(shape_zyx) != 3 or min(shape_zyx) < 1:
        raise ValueError(f"shape_zyx must be three positive sizes, got {shape_zyx}")
    if not 0.0 < slab_fraction <= 1.0:
        raise ValueError(f"slab_fraction must be in (0, 1], got {slab_fraction}")
    if pixel_size <= 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}")
    if not 0.0 <= membrane_tilt <= 60.0:
        raise ValueError(f"membrane_tilt must be in [0, 60] degrees, got {membrane_tilt}")
    rng = np.random.default_rng(rng)
    shape = tuple(int(n) for n in shape_zyx)
    counts = _default_counts(shape, slab_fraction, pixel_size)
    for key, value in (
        ("membranes", n_membranes),
        ("vesicles", n_vesicles),
        ("filaments", n_filaments),
        ("blobs", n_blobs),
    ):
        if value is not None:
            counts[key] = int(value)
    logger.debug("phantom %s at %.2f Å: %s", shape, pixel_size, counts)

    window, z_low, z_high = _slab_window(shape[0], slab_fraction)
    sigma_a = _edge_sigma(pixel_size)
    vol = np.zeros(shape, dtype=np.float32)
    for _ in range(counts["membranes"]):
        _add_sheet(vol, rng, z_low, z_high, pixel_size, sigma_a, membrane_tilt)
    _add_vesicles(vol, rng, counts["vesicles"], z_low, z_high, pixel_size, sigma_a, placed=[])
    for _ in range(counts["filaments"]):
        _add_filament(vol, rng, z_low, z_high, pixel_size, sigma_a)
    _add_blobs(vol, rng, counts["blobs"], z_low, z_high, pixel_size)
    vol *= window[:, None, None]
    return vol
