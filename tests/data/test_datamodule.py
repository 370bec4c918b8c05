"""The refinement DataModule: new pairs each epoch from one DataLoader whose workers persist."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from isonet_pl.data import datamodule as dm_mod
from isonet_pl.data.datamodule import IsoNetDataModule, PairDataset, PairSettings


def _module(workers: int, halves: bool = False) -> IsoNetDataModule:
    rng = np.random.default_rng(0)
    shape = (6, 2, 16, 16, 16) if halves else (6, 16, 16, 16)
    filled = rng.normal(size=shape).astype(np.float32)
    tilts = np.tile([-60.0, 60.0], (6, 1))
    dm = IsoNetDataModule(filled, tilts, np.arange(5), np.array([5]), PairSettings(16), 2, 3, workers, (7, 4))
    dm.setup("fit")
    return dm


def _epoch(loader) -> list[dict[str, torch.Tensor]]:
    return list(loader)


@pytest.mark.parametrize("workers", [0, 2])
def test_train_pairs_keyed_by_steps_at_epoch_start(workers):
    """Each epoch's pairs are those of (seed, iteration, 0, steps done, k) — the keys before the loader was kept
    across epochs — and two epochs at different step counts differ."""
    dm = _module(workers, halves=True)
    dm.trainer = SimpleNamespace(global_step=0)
    loader = dm.train_dataloader()
    first = _epoch(loader)
    dm.trainer.global_step = 3
    second = _epoch(loader)
    for steps, batches in ((0, first), (3, second)):
        direct = PairDataset(dm.filled, dm.tilt_ranges, dm.train_indices, 6, PairSettings(16), (7, 4, 0, steps))
        expected = torch.stack([direct[k]["input"] for k in range(6)])
        got = torch.cat([b["input"] for b in batches])
        assert torch.equal(got, expected)
    assert not torch.equal(first[0]["input"], second[0]["input"])
    assert sum(b["input"].shape[0] for b in first) == 6  # steps_per_epoch × batch_size


def test_workers_persist_across_epochs(monkeypatch):
    """The same worker processes make the pairs of consecutive epochs (no new processes per epoch)."""
    real = dm_mod.PairDataset.__getitem__

    def with_pid(self, key):
        sample = real(self, key)
        sample["pid"] = torch.tensor(os.getpid())
        return sample

    monkeypatch.setattr(dm_mod.PairDataset, "__getitem__", with_pid)
    dm = _module(2)
    dm.trainer = SimpleNamespace(global_step=0)
    loader = dm.train_dataloader()
    pids = []
    for steps in (0, 3, 6):
        dm.trainer.global_step = steps
        pids.append({int(p) for b in _epoch(loader) for p in b["pid"]})
    assert pids[0] and pids[0] == pids[1] == pids[2] and os.getpid() not in pids[0]


@pytest.mark.parametrize("halves", [False, True])
def test_continuous_rotations(halves):
    """rotations=continuous: pairs of the usual shapes (and loss regions for halves), the same for the same key,
    and not one of the 20 rotations by 90° (whose target would be an exact voxel permutation)."""
    from isonet_pl.data.pairs import ROTATIONS, centre_crop, rotate

    rng = np.random.default_rng(1)
    filled = rng.normal(size=(3, 2, 24, 24, 24) if halves else (3, 24, 24, 24)).astype(np.float32)
    tilts = np.tile([-45.0, 60.0], (3, 1))
    data = PairDataset(filled, tilts, np.arange(3), 4, PairSettings(16, rotations="continuous"), (0, 1))
    a, b = data[(5, 2)], data[(5, 2)]
    assert a["input"].shape == a["target"].shape == (1, 16, 16, 16)
    assert all(torch.equal(a[k], b[k]) for k in a)
    if halves:
        assert a["regions"].shape == (2, 16, 16, 9) and a["regions"][1].sum() > 0
    candidates = [centre_crop(rotate(v, r), 16) for v in filled.reshape(-1, 24, 24, 24) for r in range(len(ROTATIONS))]
    assert not any(np.allclose(a["target"][0].numpy(), c, atol=1e-4) for c in candidates)


def test_max_shift_cuts_input_and_target_at_one_offset():
    """max_shift: each even/odd cube is cut at a random offset (≤ max_shift voxels per axis) of the rotated
    subtomogram, the same for input and target; the subtomogram, rotation and swap drawn for a key are those of
    max_shift 0; a shift beyond the crop is refused."""
    from isonet_pl.data.pairs import crop_at, draw_rotation, rotate

    rng = np.random.default_rng(2)
    filled = rng.normal(size=(3, 2, 24, 24, 24)).astype(np.float32)
    tilts = np.tile([-60.0, 60.0], (3, 1))
    centred = PairDataset(filled, tilts, np.arange(3), 8, PairSettings(16), (0, 1))
    shifted = PairDataset(filled, tilts, np.arange(3), 8, PairSettings(16, max_shift=3), (0, 1))
    moved = 0
    for key in range(8):
        draw = np.random.default_rng((0, 1, key))
        i = int(draw.integers(3))
        rotation = draw_rotation("cube", draw)
        swap = bool(draw.random() < 0.5)
        offset = tuple(int(v) for v in draw.integers(-3, 4, 3))
        target = crop_at(np.asarray(rotate(filled[i, 0 if swap else 1], rotation)), 16, offset)
        assert np.array_equal(shifted[key]["target"][0].numpy(), target)
        assert torch.equal(shifted[key]["regions"], centred[key]["regions"])
        moved += any(offset)
    assert moved >= 6
    same = np.repeat(filled[:, :1], 2, axis=1)  # both halves equal, no missing wedge: input = target anywhere
    whole = PairDataset(same, np.tile([-90.0, 90.0], (3, 1)), np.arange(3), 4, PairSettings(16, max_shift=4), (0, 1))
    for key in range(4):
        assert np.allclose(whole[key]["input"].numpy(), whole[key]["target"].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="max_shift 5"):
        PairDataset(filled, tilts, np.arange(3), 4, PairSettings(16, max_shift=5), (0, 1))


def test_input_noise_draws_recorrupted_pairs_and_leaves_validation_alone():
    """--input_noise below 1: every training sample carries a wedge target (so batches collate) and inputs less
    noisy than a half; 1 draws exactly the pairs of before; the validation set keeps the halves."""
    rng = np.random.default_rng(4)
    filled = rng.normal(size=(3, 2, 24, 24, 24)).astype(np.float32)
    tilts = np.tile([-60.0, 60.0], (3, 1))
    plain = PairDataset(filled, tilts, np.arange(3), 16, PairSettings(16), (0, 1))
    default = PairDataset(filled, tilts, np.arange(3), 16, PairSettings(16, input_noise=1.0), (0, 1))
    mixed = PairDataset(filled, tilts, np.arange(3), 16, PairSettings(16, input_noise=0.6), (0, 1))
    assert all(torch.equal(plain[k]["input"], default[k]["input"]) for k in range(4))
    batch = torch.utils.data.default_collate([mixed[k] for k in range(16)])
    assert batch["target_wedge"].shape == batch["target"].shape
    ratio = batch["input"].var() / torch.stack([plain[k]["input"] for k in range(16)]).var()
    assert 0.6 < ratio < 0.95
    dm = IsoNetDataModule(filled, tilts, np.arange(2), np.array([2]), PairSettings(16, input_noise=0.6), 2, 3, 0,
                          (7, 4))
    dm.setup()
    assert dm.val_set.pairs.input_noise == 1.0
    with pytest.raises(ValueError, match="input_noise"):
        PairSettings(16, input_noise=0.5)
