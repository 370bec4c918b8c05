"""Training pairs: the 20 rotations, wedge re-imposition, wedge-shaped noise, the noise schedule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from isonet_pl.data.pairs import (
    ROTATIONS,
    centre_crop,
    make_pair,
    noise_schedule,
    rotate,
    wedge_mask,
    wedge_noise,
)


def _axis_map(index: int) -> tuple:
    """Where the unit vectors end up, read off a volume with one marked voxel per axis."""
    n = 5
    out = []
    for axis in range(3):
        vol = np.zeros((n,) * 3)
        pos = [2, 2, 2]
        pos[axis] = 4
        vol[tuple(pos)] = 1
        moved = np.argwhere(rotate(vol, index))[0] - 2
        out.append(tuple(moved // 2))
    return tuple(out)


def test_rotations_are_the_20_non_wedge_preserving_cube_rotations():
    """20 distinct proper rotations; none is the identity or a 180° turn about Z, Y or X."""
    maps = {_axis_map(i) for i in range(len(ROTATIONS))}
    assert len(ROTATIONS) == 20 and len(maps) == 20
    excluded = {((1, 0, 0), (0, 1, 0), (0, 0, 1)), ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
                ((-1, 0, 0), (0, 1, 0), (0, 0, -1)), ((-1, 0, 0), (0, -1, 0), (0, 0, 1))}
    assert not maps & excluded
    for m in maps:  # proper rotations: determinant +1
        assert round(np.linalg.det(np.array(m))) == 1


def test_rotation_1_matches_the_spec_table():
    """Rotation #1 of SPEC §6.4.1 sends +Z to +Y, +Y to -Z and keeps +X."""
    assert _axis_map(0) == ((0, 1, 0), (-1, 0, 0), (0, 0, 1))


def test_pair_input_has_no_power_in_the_wedge():
    """Without noise, the input is the rotated target with the lab-frame wedge removed."""
    rng = np.random.default_rng(0)
    filled = rng.normal(size=(32, 32, 32)).astype(np.float32)
    inp, target = make_pair(filled, 3, (-60.0, 60.0), 32, 0.0, "noFilter", rng)
    spectrum = np.abs(np.fft.rfftn(inp)) ** 2
    missing = 1 - wedge_mask(32, -60.0, 60.0)
    assert (spectrum * missing).sum() < 1e-8 * spectrum.sum()
    np.testing.assert_allclose(target, np.rot90(np.rot90(filled, 1, (0, 2)), 1, (1, 2)), atol=0)


def test_pair_is_cropped_to_the_cube():
    """A crop of 48 gives cubes of 32 from the centre."""
    rng = np.random.default_rng(0)
    inp, target = make_pair(rng.normal(size=(48,) * 3).astype(np.float32), 0, (-60, 60), 32, 0.1, "ramp", rng)
    assert inp.shape == target.shape == (32, 32, 32)


@pytest.mark.parametrize("mode", ["noFilter", "ramp", "hamming"])
def test_noise_has_the_wedge_unit_std_and_independent_y_planes(mode):
    """Back-projection-like noise: unit std, nothing in the wedge, ~uncorrelated along Y (tilt axis)."""
    noise = wedge_noise(32, -60.0, 60.0, mode, np.random.default_rng(1))
    assert abs(noise.std() - 1) < 1e-3
    spectrum = np.abs(np.fft.rfftn(noise)) ** 2
    assert (spectrum * (1 - wedge_mask(32, -60.0, 60.0))).sum() < 1e-8 * spectrum.sum()
    corr_y = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
    corr_z = np.corrcoef(noise[:-1].ravel(), noise[1:].ravel())[0, 1]
    assert abs(corr_y) < 0.05 and (mode == "ramp" or corr_z > 0.1)


def test_noise_schedule_matches_isonet_defaults():
    """0 for iterations 1-10, then 0.05, 0.10, 0.15, 0.20 from 11, 16, 21, 26."""
    s = noise_schedule(30, (0.05, 0.10, 0.15, 0.20), (11, 16, 21, 26))
    assert s[10] == 0 and s[11] == 0.05 and s[16] == 0.10 and s[25] == 0.15 and s[30] == 0.20


def test_every_rotation_pair_is_deterministic_for_a_seed():
    """Same generator state, same pair."""
    filled = np.random.default_rng(0).normal(size=(32,) * 3).astype(np.float32)
    for r, level in itertools.product((0, 19), (0.0, 0.2)):
        a = make_pair(filled, r, (-50, 65), 32, level, "noFilter", np.random.default_rng(5))
        b = make_pair(filled, r, (-50, 65), 32, level, "noFilter", np.random.default_rng(5))
        assert np.array_equal(a[0], b[0])


@pytest.mark.parametrize("rotation", [0, 5, 16, 19])
def test_split_regions_follow_the_rotated_wedge(rotation):
    """A wedge-filtered volume, rotated, has all its power in R(M) = both + target-only regions."""
    from isonet_pl.data.pairs import split_regions
    from isonet_pl.data.wedge import apply_wedge

    vol = np.random.default_rng(0).normal(size=(16,) * 3).astype(np.float32)
    measured = apply_wedge(vol, wedge_mask(16, -60.0, 60.0))
    power = np.abs(np.fft.rfftn(np.ascontiguousarray(rotate(measured, rotation)))) ** 2
    regions = split_regions(16, -60.0, 60.0, rotation)
    assert (power * (1 - regions.sum(0))).sum() < 1e-10 * power.sum()
    assert regions[1].sum() > 0 and (regions[0] * regions[1]).sum() == 0


def test_fourier_split_loss_weights_the_wedge_region():
    """The loss is zero for a perfect prediction and scales the target-only region by mw_weight."""
    import torch

    from isonet_pl.data.pairs import split_regions
    from isonet_pl.model.module import fourier_split_loss

    regions = torch.from_numpy(split_regions(16, -60.0, 60.0, 3))[None]
    target = torch.randn(1, 1, 16, 16, 16)
    assert fourier_split_loss(target, target, regions, 5.0).item() == 0
    pred = target + torch.randn_like(target)
    a, b = fourier_split_loss(pred, target, regions, 0.0), fourier_split_loss(pred, target, regions, 2.0)
    assert b > a > 0


def test_fourier_split_loss_frequency_weights_against_numpy():
    """frequency_power p: each region's mean is weighted by max(|k|, 1/n)^-p, computed here with numpy alone."""
    import torch

    from isonet_pl.data.pairs import split_regions
    from isonet_pl.model.module import fourier_split_loss

    rng = np.random.default_rng(3)
    pred, target = (rng.normal(size=(2, 1, 16, 16, 16)).astype(np.float32) for _ in range(2))
    regions = np.stack([split_regions(16, -50.0, 70.0, r) for r in (0, 5)])
    k = np.sqrt(np.fft.fftfreq(16)[:, None, None] ** 2 + np.fft.fftfreq(16)[None, :, None] ** 2
                + np.fft.rfftfreq(16)[None, None, :] ** 2)
    power = np.abs(np.fft.rfftn(pred[:, 0] - target[:, 0], axes=(1, 2, 3), norm="ortho")) ** 2
    for p in (0.0, 0.5, 1.0):
        weight = np.maximum(k, 1 / 16) ** -p
        expected = [(power * regions[:, j] * weight).sum() / (regions[:, j] * weight).sum() for j in (0, 1)]
        total, both, wedge = fourier_split_loss(torch.from_numpy(pred), torch.from_numpy(target),
                                                torch.from_numpy(regions), 3.0, terms=True, frequency_power=p)
        np.testing.assert_allclose([both.item(), wedge.item()], expected, rtol=1e-5)
        np.testing.assert_allclose(total.item(), expected[0] + 3.0 * expected[1], rtol=1e-5)
    # p = 1 weighs a plane wave of |k| = 1/16 (one cell) 8 times more, relative to one at Nyquist (|k| = 1/2)
    x = np.arange(16, dtype=np.float32)
    zero, ones = torch.zeros(1, 1, 16, 16, 16), torch.ones(1, 2, 16, 16, 9)
    ratio = {}
    for p in (0.0, 1.0):
        lo, hi = (fourier_split_loss(torch.from_numpy(np.broadcast_to(np.cos(f * x), (1, 1, 16, 16, 16)).copy()),
                                     zero, ones, 1.0, frequency_power=p).item() for f in (2 * np.pi / 16, np.pi))
        ratio[p] = lo / hi
    np.testing.assert_allclose(ratio[1.0] / ratio[0.0], 8.0, rtol=1e-5)


def test_average_wedge_target():
    """wedge_target=average: the wedge target is the mean of both rotated halves; the loss uses it only in region 1."""
    import torch

    from isonet_pl.data.pairs import centre_crop, make_n2n_pair
    from isonet_pl.model.module import fourier_split_loss

    halves = np.random.default_rng(1).normal(size=(2, 24, 24, 24)).astype(np.float32)
    inp, target, regions = make_n2n_pair(halves, 7, False, (-60, 60), 16)
    inp2, target2, regions2, wedge = make_n2n_pair(halves, 7, False, (-60, 60), 16, "average")
    assert np.array_equal(inp, inp2) and np.array_equal(target, target2) and np.array_equal(regions, regions2)
    np.testing.assert_allclose(wedge, 0.5 * (centre_crop(rotate(halves[0], 7), 16) + target), atol=1e-6)
    t, w, r = (torch.from_numpy(x)[None] for x in (target, wedge, regions))
    t, w = t[None], w[None]
    # a prediction equal to the wedge target: region 1 costs nothing, region 0 the same as against the half
    only_both = fourier_split_loss(w, t, r, 0.0)
    assert abs(fourier_split_loss(w, t, r, 3.0, w).item() - only_both.item()) < 1e-5 * only_both.item()
    assert fourier_split_loss(w, t, r, 3.0).item() > only_both.item()


def test_random_rotations_are_proper_and_uniform():
    """random_rotation gives orthonormal matrices of determinant +1, spread over all orientations (the mean of
    many is near zero, as for the uniform distribution), reproducibly from the generator."""
    from isonet_pl.data.pairs import random_rotation

    rng = np.random.default_rng(3)
    mats = np.stack([random_rotation(rng) for _ in range(4000)])
    np.testing.assert_allclose(mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), mats.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-12)
    assert np.abs(mats.mean(0)).max() < 0.05
    assert np.array_equal(random_rotation(np.random.default_rng(1)), random_rotation(np.random.default_rng(1)))


@pytest.mark.parametrize("index", range(20))
def test_matrix_rotation_equals_the_cube_rotation(index):
    """rotate() with the matrix of a 90° rotation reproduces the exact voxel permutation (same centre and sense),
    also cropped and on odd sizes, and its loss regions are those of split_regions (also on the Nyquist planes)."""
    from isonet_pl.data.pairs import rotation_matrix, split_regions, split_regions_rotated

    rng = np.random.default_rng(index)
    for size, crop in ((24, 16), (23, 15)):
        vol = rng.normal(size=(size,) * 3).astype(np.float32)
        mat = rotation_matrix(index).astype(float)
        np.testing.assert_allclose(rotate(vol, mat), rotate(vol, index), atol=1e-5)
        np.testing.assert_allclose(rotate(vol, mat, crop), centre_crop(rotate(vol, index), crop), atol=1e-5)
    mat = rotation_matrix(index).astype(float)
    assert np.array_equal(split_regions(16, -45.0, 60.0, index), split_regions_rotated(16, -45.0, 60.0, mat))


def test_continuous_rotation_moves_a_voxel_offset_d_to_r_d():
    """rotate(vol, R): a blob at offset d from the centre ends at R d (the convention of rotation_matrix)."""
    from isonet_pl.data.pairs import random_rotation

    size, d = 33, np.array([6.0, -3.0, 8.0])
    grid = np.stack(np.meshgrid(*(np.arange(size),) * 3, indexing="ij")).astype(float) - (size - 1) / 2
    for seed in range(5):
        mat = random_rotation(np.random.default_rng(seed))
        blob = np.exp(-((grid - d[:, None, None, None]) ** 2).sum(0) / (2 * 1.5**2)).astype(np.float32)
        out = rotate(blob, mat)
        centroid = (grid * out).reshape(3, -1).sum(1) / out.sum()
        np.testing.assert_allclose(centroid, mat @ d, atol=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_continuous_rotation_carries_the_wedge_into_the_rotated_region(seed):
    """A plane wave of a measured frequency k0, rotated by an arbitrary R, peaks at R k0 (nearest grid point), and
    split_regions_rotated counts that coefficient as measured in the target (for R's transpose most would not
    be); the input's wedge region is non-empty."""
    from isonet_pl.data.pairs import random_rotation, split_regions_rotated

    rng = np.random.default_rng(seed)
    size = 32
    mat = random_rotation(rng)
    regions = split_regions_rotated(size, -45.0, 60.0, mat)
    assert regions[1].sum() > 0.05 * regions.sum() and (regions[0] * regions[1]).sum() == 0
    x = np.stack(np.meshgrid(*(np.arange(size),) * 3, indexing="ij")).astype(float)
    window = np.hanning(size)
    taper = window[:, None, None] * window[None, :, None] * window[None, None, :]
    hits = 0
    for angle in np.linspace(-30.0, 45.0, 6):  # directions at least 15° inside the tilt range -45..60
        for ky in (-3, 0, 4):
            kz, kx = -7 * np.sin(np.deg2rad(angle)), 7 * np.cos(np.deg2rad(angle))
            k0 = np.array([round(kz), ky, round(kx)])
            wave = np.cos(2 * np.pi * np.tensordot(k0, x, axes=(0, 0)) / size).astype(np.float32)
            power = np.abs(np.fft.rfftn(rotate(wave, mat) * taper))
            peak = np.unravel_index(np.argmax(power), power.shape)
            hits += regions.sum(0)[peak] > 0
    assert hits == 18


def test_crop_at():
    """crop_at: centre_crop at offset 0, moved by the offset otherwise; a window beyond the cube is refused."""
    from isonet_pl.data.pairs import centre_crop, crop_at

    vol = np.arange(20**3, dtype=np.float32).reshape(20, 20, 20)
    assert np.array_equal(crop_at(vol, 12), centre_crop(vol, 12))
    assert np.array_equal(crop_at(vol, 12, (1, -2, 4)), vol[5:17, 2:14, 8:20])
    with pytest.raises(ValueError, match="does not fit"):
        crop_at(vol, 12, (0, 0, 5))


@pytest.mark.parametrize("alpha", [0.3, 0.7])
def test_recorrupted_pair_noise_is_uncorrelated_at_the_stated_variances(alpha):
    """Halves of pure, independent unit noise: the recorrupted input has variance (1 + α²)/2, the target
    (1 + 1/α²)/2, and the two are uncorrelated; the wedge target stays the other half itself, and a signal common
    to both halves passes unchanged into input and target (no missing wedge)."""
    from isonet_pl.data.pairs import make_n2n_pair, rotate

    rng = np.random.default_rng(3)
    halves = rng.normal(size=(2, 32, 32, 32)).astype(np.float32)
    inp, target, _, wedge = make_n2n_pair(halves, 0, False, (-90.0, 90.0), 32, alpha=alpha)
    assert inp.var() == pytest.approx((1 + alpha**2) / 2, rel=0.05)
    assert target.var() == pytest.approx((1 + alpha**-2) / 2, rel=0.05)
    assert abs(np.corrcoef(inp.ravel(), target.ravel())[0, 1]) < 0.02
    assert np.allclose(wedge, rotate(halves[1], 0), atol=1e-6)
    signal = np.repeat(halves[:1], 2, axis=0)
    inp, target, _, _ = make_n2n_pair(signal, 5, True, (-90.0, 90.0), 32, alpha=alpha)
    assert np.allclose(inp, target, atol=1e-4)
    _, _, _, wedge = make_n2n_pair(halves, 0, False, (-90.0, 90.0), 32, "average", alpha=alpha)
    assert np.allclose(wedge, rotate(halves.mean(0), 0), atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        make_n2n_pair(halves, 0, False, (-60.0, 60.0), 32, alpha=0.0)
