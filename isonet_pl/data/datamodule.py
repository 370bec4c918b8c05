"""The LightningDataModule of refinement: missing-wedge training pairs made on the fly, no pair files.

Each sample is drawn from a seeded generator keyed by (seed, iteration, optimiser steps done when its
epoch started, sample index), so a run is reproducible and a resumed run sees the same pairs. The keys
come from a sampler read at each epoch's start, so one DataLoader, and its worker processes, serve all
the epochs of an iteration. The filled subtomograms are numpy arrays in the main process; DataLoader
workers (forked) share them copy-on-write.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from isonet_pl.data.pairs import draw_rotation, make_n2n_pair, make_pair


@dataclass(frozen=True)
class PairSettings:
    """How training pairs are made from a filled subtomogram (one iteration's settings, fixed).

    Attributes
    ----------
    cube : int
        Edge of the training cubes.
    noise_level : float
        Noise std (normalised units) added to the inputs (single-tomogram pairs).
    noise_mode : str
        Back-projection filter of the noise.
    wedge_target : str
        Even/odd pairs: ``half`` or ``average`` (see :func:`isonet_pl.data.pairs.make_n2n_pair`).
    rotations : str
        ``cube`` (IsoNet's 20 rotations by 90°) or ``continuous`` (uniform; see
        :func:`isonet_pl.data.pairs.draw_rotation`).
    max_shift : int
        Even/odd pairs: each cube is cut at a random offset of up to this many voxels from the rotated
        subtomogram's centre along each axis (uniform; :func:`isonet_pl.data.pairs.crop_at`); 0: the centre.
    input_noise : float
        Even/odd pairs: the noise variance of each input, relative to one half's, is drawn uniformly between
        this and 1 (recorrupted pairs, :func:`isonet_pl.data.pairs.make_n2n_pair`'s ``alpha``), so training
        also sees inputs nearer the average's noise (0.5), which is what predict runs on; 1: the halves.
    """

    cube: int
    noise_level: float = 0.0
    noise_mode: str = "noFilter"
    wedge_target: str = "half"
    rotations: str = "cube"
    max_shift: int = 0
    input_noise: float = 1.0

    def __post_init__(self):
        if not 0.5 < self.input_noise <= 1:
            raise ValueError(f"input_noise must lie in (0.5, 1], got {self.input_noise}")


class PairDataset(Dataset):
    """``length`` training pairs from the filled subtomograms ``indices``.

    Parameters
    ----------
    filled : numpy.ndarray
        (n, p, p, p) float32, the filled volumes C of all subtomograms; or (n, 2, p, p, p) for
        even/odd halves, which gives Noise2Noise pairs (one half in, the other as target, with
        the loss regions of :func:`isonet_pl.data.pairs.split_regions`).
    tilt_ranges : numpy.ndarray
        (n, 2) tilt range of each subtomogram's tomogram (degrees).
    indices : numpy.ndarray
        Subtomograms this dataset draws from.
    length : int
        Number of samples.
    pairs : PairSettings
        How the pairs are made.
    seed : tuple of int
        Keys the generator of every sample, with the sample's key (its index, or a tuple such as
        :class:`StepKeys` yields).
    """

    def __init__(self, filled: np.ndarray, tilt_ranges: np.ndarray, indices: np.ndarray, length: int,
                 pairs: PairSettings, seed: tuple[int, ...]):
        self.filled = filled
        self.tilt_ranges = tilt_ranges
        self.indices = np.asarray(indices)
        self.length = int(length)
        self.pairs = pairs
        self.seed = tuple(int(s) for s in seed)
        if pairs.max_shift and 2 * pairs.max_shift > filled.shape[-1] - pairs.cube:
            raise ValueError(f"max_shift {pairs.max_shift} reaches beyond the {filled.shape[-1]}³ subtomograms "
                             f"for cubes of {pairs.cube}")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, torch.Tensor]:
        key = tuple(int(k) for k in key) if isinstance(key, tuple) else (int(key),)
        rng = np.random.default_rng((*self.seed, *key))
        i = int(self.indices[rng.integers(len(self.indices))])
        p = self.pairs
        rotation = draw_rotation(p.rotations, rng)
        tilt = (float(self.tilt_ranges[i, 0]), float(self.tilt_ranges[i, 1]))
        if self.filled.ndim == 5:  # even/odd halves: (n, 2, p, p, p)
            swap = bool(rng.random() < 0.5)
            m = p.max_shift
            offset = tuple(int(v) for v in rng.integers(-m, m + 1, 3)) if m else (0, 0, 0)
            alpha = 1.0
            if p.input_noise < 1:  # drawn only then, so runs without it draw as before; v < 1 so alpha < 1
                alpha = float(np.sqrt(2 * rng.uniform(p.input_noise, 1.0) - 1))
            inp, target, regions, *wedge = make_n2n_pair(self.filled[i], rotation, swap, tilt, p.cube,
                                                         p.wedge_target, offset, alpha)
            sample = {"input": torch.from_numpy(inp)[None], "target": torch.from_numpy(target)[None],
                      "regions": torch.from_numpy(regions)}
            if wedge:
                sample["target_wedge"] = torch.from_numpy(wedge[0])[None]
            return sample
        inp, target = make_pair(self.filled[i], rotation, tilt, p.cube, p.noise_level, p.noise_mode, rng)
        return {"input": torch.from_numpy(inp)[None], "target": torch.from_numpy(target)[None]}


class StepKeys(Sampler):
    """The sample keys of one training epoch: ``(steps, k)`` for k < ``length``, where ``steps`` is the number
    of optimiser steps done when the epoch starts (read from the trainer then, so restored on resume).

    Iterated in the main process at the start of each epoch (under DDP, Lightning's sampler wrapper lists
    it then and shards the list), so the same DataLoader and its persistent workers draw new pairs each
    epoch. Lightning first iterates it after restoring a checkpoint's step count; a module that asked for
    ``trainer.estimated_stepping_batches`` in ``configure_optimizers`` would make it iterate earlier (with
    step 0 on resume), so the module does not.
    """

    def __init__(self, length: int, datamodule: pl.LightningDataModule):
        self.length = int(length)
        self.datamodule = datamodule

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        trainer = self.datamodule.trainer
        steps = int(trainer.global_step) if trainer is not None else 0
        return iter([(steps, k) for k in range(self.length)])


class IsoNetDataModule(pl.LightningDataModule):
    """Training and validation pairs of one refinement iteration.

    The subtomograms are split once (seeded) into training and validation ones, so a
    validation loss measures subtomograms the network never trained on (IsoNet split the
    rotated pairs, putting the same subtomogram on both sides).

    Parameters
    ----------
    filled, tilt_ranges : numpy.ndarray
        See :class:`PairDataset`.
    train_indices, val_indices : numpy.ndarray
        The split of the subtomograms.
    pairs : PairSettings
        How this iteration's pairs are made (validation pairs always use the halves themselves, input_noise 1).
    batch_size, steps_per_epoch : int
        Per device.
    num_workers : int
        DataLoader worker processes.
    seed : tuple of int
        (run seed, iteration).
    """

    def __init__(self, filled: np.ndarray, tilt_ranges: np.ndarray, train_indices: np.ndarray,
                 val_indices: np.ndarray, pairs: PairSettings, batch_size: int, steps_per_epoch: int,
                 num_workers: int, seed: tuple[int, ...]):
        super().__init__()
        self.filled, self.tilt_ranges = filled, tilt_ranges
        self.train_indices, self.val_indices = train_indices, val_indices
        self.pairs, self.batch_size, self.steps_per_epoch = pairs, batch_size, steps_per_epoch
        self.num_workers, self.seed = num_workers, tuple(seed)

    def setup(self, stage: str | None = None) -> None:
        """Build the validation set (training pairs are drawn anew each epoch, see train_dataloader)."""
        n_val = max(self.batch_size, int(np.ceil(0.1 * self.steps_per_epoch)) * self.batch_size)
        self.val_set = PairDataset(self.filled, self.tilt_ranges, self.val_indices, n_val,
                                   replace(self.pairs, input_noise=1.0), (*self.seed, 1))

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.num_workers, drop_last=False, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        """``steps_per_epoch`` batches of new pairs each epoch, keyed by the optimiser steps done when the epoch
        starts (:class:`StepKeys`).

        Made once per ``fit`` (one refinement iteration); its worker processes persist across the epochs. The
        step count (restored from a checkpoint) makes a resumed run draw the same pairs.
        """
        n_train = self.steps_per_epoch * self.batch_size
        train_set = PairDataset(self.filled, self.tilt_ranges, self.train_indices, n_train, self.pairs,
                                (*self.seed, 0))
        return self._loader(train_set, StepKeys(n_train, self))

    def val_dataloader(self) -> DataLoader:
        """Validation pairs from held-out subtomograms (fixed across epochs)."""
        return self._loader(self.val_set)
