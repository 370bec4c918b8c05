"""Halves with independent noise from the even and odd Y planes of one tomogram."""

import dask.array as da
import numpy as np
import pytest

from isonet_pl.preprocess.split import plane_half, split_planes


def test_each_half_keeps_its_planes_and_interpolates_the_others():
    volume = np.random.default_rng(0).standard_normal((5, 7, 6)).astype(np.float32)
    even, odd = split_planes(volume)
    np.testing.assert_array_equal(even[:, 0::2], volume[:, 0::2])
    np.testing.assert_array_equal(odd[:, 1::2], volume[:, 1::2])
    np.testing.assert_allclose(even[:, 3], 0.5 * (volume[:, 2] + volume[:, 4]), rtol=1e-6)
    np.testing.assert_allclose(odd[:, 0], volume[:, 1])  # at a face: its one neighbour
    np.testing.assert_allclose(odd[:, 6], volume[:, 5])
    # the mean of the halves is the volume smoothed by [1/4, 1/2, 1/4] along Y
    np.testing.assert_allclose(0.5 * (even + odd)[:, 3], 0.25 * volume[:, 2] + 0.5 * volume[:, 3] + 0.25 * volume[:, 4],
                               rtol=1e-5, atol=1e-6)


def test_halves_of_plane_independent_noise_share_none_of_it():
    """Noise independent from plane to plane (a back-projection's across the tilt axis): the halves' noises do not
    correlate, while a smooth signal stays in both."""
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((16, 64, 64)).astype(np.float32)
    even, odd = split_planes(noise)
    assert abs(np.corrcoef(even.ravel(), odd.ravel())[0, 1]) < 0.01
    y = np.arange(64)[None, :, None]
    signal = np.broadcast_to(np.sin(2 * np.pi * y / 16), noise.shape).astype(np.float32)
    a, b = split_planes(signal)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    with pytest.raises(ValueError):
        split_planes(np.zeros((4, 1, 4)))


@pytest.mark.parametrize("chunks", [(3, 5, 7), (16, 64, 64)])
def test_lazy_halves_equal_the_whole_volume_split(chunks):
    volume = np.random.default_rng(2).standard_normal((20, 33, 10)).astype(np.float32)
    for k, half in enumerate(split_planes(volume)):
        np.testing.assert_array_equal(plane_half(da.from_array(volume, chunks=chunks), k).compute(), half)
