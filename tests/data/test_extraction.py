"""Subtomogram centres (inside the mask, and the background share) and the crops around them."""

import dask.array as da
import numpy as np
import pytest

from isonet_pl.data.extraction import crop_around, sample_centres, valid_box


def _slab_mask(shape):
    """A mask that holds only the middle third along Z, as make_mask's for a specimen slab."""
    m = np.zeros(shape, np.uint8)
    m[shape[0] // 3: 2 * shape[0] // 3] = 1
    return da.from_array(m, chunks=(8, 16, 16))


def _inside(centres, mask, shape, crop):
    box = valid_box(shape, crop)
    in_box = np.all([(centres[:, a] >= lo) & (centres[:, a] < hi) for a, (lo, hi) in enumerate(box)], axis=0)
    m = mask.compute()
    return in_box & (m[tuple(centres.T)] != 0)


def test_without_background_share_every_centre_is_inside_the_mask_and_the_valid_box():
    shape, crop = (48, 40, 40), 16
    mask = _slab_mask(shape)
    c = sample_centres(mask, shape, crop, 60, np.random.default_rng(0))
    assert c.shape == (60, 3) and _inside(c, mask, shape, crop).all()


def test_the_background_share_is_drawn_from_the_whole_valid_box_and_the_rest_from_the_mask():
    """The background centres lie anywhere, mask or not, but never so near a face that the crop would need
    mirrored content (the valid box)."""
    shape, crop, n = (48, 40, 40), 16, 200
    mask = _slab_mask(shape)
    c = sample_centres(mask, shape, crop, n, np.random.default_rng(1), background_share=0.25)
    box = valid_box(shape, crop)
    assert c.shape == (n, 3) and all(((c[:, a] >= lo) & (c[:, a] < hi)).all() for a, (lo, hi) in enumerate(box))
    assert all(c[:, a].min() - crop // 2 >= 0 and c[:, a].max() + crop - crop // 2 <= shape[a] for a in range(3))
    inside = _inside(c, mask, shape, crop)
    # 150 from the mask; of the 50 drawn anywhere in the box about half falls in the slab (z 16-31 of 8-40)
    assert 160 <= inside.sum() < 190
    assert (~inside).sum() >= 10 and (c[~inside, 0] < 16).any() and (c[~inside, 0] >= 32).any()
    again = sample_centres(mask, shape, crop, n, np.random.default_rng(1), background_share=0.25)
    np.testing.assert_array_equal(c, again)


@pytest.mark.parametrize("share", [0.0, 0.1])
def test_a_single_centre_stays_in_the_mask(share):
    shape, crop = (48, 40, 40), 16
    mask = _slab_mask(shape)
    c = sample_centres(mask, shape, crop, 1, np.random.default_rng(2), background_share=share)
    assert _inside(c, mask, shape, crop).all()


def test_a_crop_beyond_the_faces_is_the_mirrored_volume():
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(20, 24, 28)).astype(np.float32)
    padded = np.pad(vol, 8, mode="symmetric")
    for centre in ([0, 0, 0], [19, 5, 27], [10, 12, 14], [3, 23, 1]):
        got = crop_around(vol, np.array(centre), 16)
        want = padded[centre[0]:centre[0] + 16, centre[1]:centre[1] + 16, centre[2]:centre[2] + 16]
        np.testing.assert_array_equal(got, want)
    inner = crop_around(vol, np.array([10, 12, 14]), 16)  # inside: the plain slice
    np.testing.assert_array_equal(inner, vol[2:18, 4:20, 6:22])
