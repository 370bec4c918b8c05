"""The LightningDataModule of refinement: missing-wedge training pairs made on the fly, no pair files.

Each sample is drawn from a seeded generator keyed by (seed, iteration, optimiser steps done when its
epoch started, sample index), so a run is reproducible and a resumed run sees the same pairs. The keys
come from a sampler read at each epoch's start, so one DataLoader, and its worker processes, serve all
the epochs of an iteration. The filled subtomograms are numpy arrays in the main process; DataLoader
workers (forked) share them copy-on-write.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from isonet_pl.data.pairs import draw_rotation, make_n2n_pair, make_pair


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
    cube : int
        Edge of the training cubes.
    noise_level : float
        Noise std (normalised units) added to the inputs.
    noise_mode : str
        Back-projection filter of the noise.
    seed : tuple of int
        Keys the generator of every sample, with the sample's key (its index, or a tuple such as
        :class:`StepKeys` yields).
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

    def __init__(self, filled: np.ndarray, tilt_ranges: np.ndarray, indices: np.ndarray, length: int, cube: int,
                 noise_level: float, noise_mode: str, seed: tuple[int, ...], wedge_target: str = "half",
                 rotations: str = "cube", max_shift: int = 0, input_noise: float = 1.0):
        self.filled = filled
        self.tilt_ranges = tilt_ranges
        self.indices = np.asarray(indices)
        self.length = int(length)
        self.cube = cube
        self.noise_level = float(noise_level)
        self.noise_mode = noise_mode
        self.seed = tuple(int(s) for s in seed)
        self.wedge_target = wedge_target
        self.rotations = rotations
        self.max_shift = int(max_shift)
        self.input_noise = float(input_noise)
        if not 0.5 < self.input_noise <= 1:
            raise ValueError(f"input_noise must lie in (0.5, 1], got {input_noise}")
        if self.max_shift and 2 * self.max_shift > filled.shape[-1] - cube:
            raise ValueError(f"max_shift {self.max_shift} reaches beyond the {filled.shape[-1]}³ subtomograms for "
                             f"cubes of {cube}")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, torch.Tensor]:
        key = tuple(int(k) for k in key) if isinstance(key, tuple) else (int(key),)
        rng = np.random.default_rng((*self.seed, *key))
        i = int(self.indices[rng.integers(len(self.indices))])
        rotation = draw_rotation(self.rotations, rng)
        tilt = (float(self.tilt_ranges[i, 0]), float(self.tilt_ranges[i, 1]))
        if self.filled.ndim == 5:  # even/odd halves: (n, 2, p, p, p)
            swap = bool(rng.random() < 0.5)
            m = self.max_shift
            offset = tuple(int(v) for v in rng.integers(-m, m + 1, 3)) if m else (0, 0, 0)
            alpha = 1.0
            if self.input_noise < 1:  # drawn only then, so runs without it draw as before; v < 1 so alpha < 1
                alpha = float(np.sqrt(2 * rng.uniform(self.input_noise, 1.0) - 1))
            inp, target, regions, *wedge = make_n2n_pair(self.filled[i], rotation, swap, tilt, self.cube,
                                                         self.wedge_target, offset, alpha)
            sample = {"input": torch.from_numpy(inp)[None], "target": torch.from_numpy(target)[None],
                      "regions": torch.from_numpy(regions)}
            if wedge:
                sample["target_wedge"] = torch.from_numpy(wedge[0])[None]
            return sample
        inp, target = make_pair(self.filled[i], rotation, tilt, self.cube, self.noise_level, self.noise_mode, rng)
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
    cube, batch_size, steps_per_epoch, noise_level, noise_mode :
        Training settings of this iteration.
    num_workers : int
        DataLoader worker processes.
    seed : tuple of int
        (run seed, iteration).
    wedge_target, rotations, max_shift, input_noise :
        See :class:`PairDataset` (validation pairs always use the halves themselves, input_noise 1).
    """

    def __init__(self, filled: np.ndarray, tilt_ranges: np.ndarray, train_indices: np.ndarray,
                 val_indices: np.ndarray, cube: int, batch_size: int, steps_per_epoch: int, noise_level: float,
                 noise_mode: str, num_workers: int, seed: tuple[int, ...], wedge_target: str = "half",
                 rotations: str = "cube", max_shift: int = 0, input_noise: float = 1.0):
        super().__init__()
        self.filled, self.tilt_ranges = filled, tilt_ranges
        self.train_indices, self.val_indices = train_indices, val_indices
        self.cube, self.batch_size, self.steps_per_epoch = cube, batch_size, steps_per_epoch
        self.noise_level, self.noise_mode = noise_level, noise_mode
        self.num_workers, self.seed = num_workers, tuple(seed)
        self.wedge_target, self.rotations, self.max_shift = wedge_target, rotations, max_shift
        self.input_noise = input_noise

    def setup(self, stage: str | None = None) -> None:
        """Build the validation set (training pairs are drawn anew each epoch, see train_dataloader)."""
        n_val = max(self.batch_size, int(np.ceil(0.1 * self.steps_per_epoch)) * self.batch_size)
        self.val_set = PairDataset(self.filled, self.tilt_ranges, self.val_indices, n_val, self.cube,
                                   self.noise_level, self.noise_mode, (*self.seed, 1), self.wedge_target,
                                   self.rotations, self.max_shift)

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
        train_set = PairDataset(self.filled, self.tilt_ranges, self.train_indices, n_train, self.cube,
                                self.noise_level, self.noise_mode, (*self.seed, 0), self.wedge_target,
                                self.rotations, self.max_shift, self.input_noise)
        return self._loader(train_set, StepKeys(n_train, self))

    def val_dataloader(self) -> DataLoader:
        """Validation pairs from held-out subtomograms (fixed across epochs)."""
        return self._loader(self.val_set)
