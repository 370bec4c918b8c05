"""Batched inference over the subtomograms and the wedge refill C = N(Wmiss(B) + Wmeas(A))."""

from __future__ import annotations

import logging

import numpy as np
import torch

from isonet_pl.config import Method
from isonet_pl.data.pairs import wedge_mask
from isonet_pl.data.wedge import apply_wedge, fill_wedge
from isonet_pl.normalization import rescale
from isonet_pl.predict.predictor import run_network
from isonet_pl.training.devices import dist_info
from isonet_pl.training.subtomograms import Subtomograms

logger = logging.getLogger(__name__)


def predict_volumes(module, volumes: np.ndarray, batch_size: int, device: torch.device,
                    precision: str = "32", renormalize: bool = True) -> np.ndarray:
    """Run the network on whole subtomograms (:func:`run_network`, by batches), returning N(output).

    ``precision`` is refine's: with ``bf16-mixed`` / ``16-mixed`` the forward runs under autocast
    (as training does; about 2x faster on CPUs with bf16 instructions). ``renormalize=False``
    returns the outputs as they are (in the units of the input) instead of N(output).
    """
    module.eval()
    out = np.empty_like(volumes)
    for start in range(0, len(volumes), batch_size):
        pred = run_network(module, volumes[start:start + batch_size], device, precision)
        out[start:start + len(pred)] = [rescale(v) for v in pred] if renormalize else pred
    module.train()
    return out


def predict_all(module, volumes: np.ndarray, batch_size: int, device: torch.device,
                precision: str = "32", renormalize: bool = True) -> np.ndarray:
    """Predict every subtomogram (or half: (n, 2, p, p, p)), split across DDP ranks and gathered."""
    if volumes.ndim == 5:
        n = volumes.shape[0]
        flat = predict_all(module, volumes.reshape(-1, *volumes.shape[2:]), batch_size, device, precision,
                           renormalize)
        return flat.reshape(n, 2, *volumes.shape[2:])
    rank, world = dist_info()
    if world == 1:
        return predict_volumes(module, volumes, batch_size, device, precision, renormalize)
    mine = np.arange(rank, len(volumes), world)
    part = predict_volumes(module, volumes[mine], max(1, batch_size // world), device, precision, renormalize)
    gathered: list = [None] * world
    torch.distributed.all_gather_object(gathered, (mine, part))
    out = np.empty_like(volumes)
    for idx, values in gathered:
        out[idx] = values
    return out


def originals(subs: Subtomograms, method: str) -> np.ndarray:
    """What the estimates stand for: (n, p, p, p) data, or (n, 2, p, p, p) halves for n2n."""
    return subs.halves if method == Method.N2N else subs.data


def first_estimates(subs: Subtomograms, method: str = Method.ISONET, renormalize: bool = True) -> np.ndarray:
    """IsoNet's FIRST_ITER: the wedge-filtered originals (each half for n2n), normalised (unless not
    ``renormalize``)."""
    data = originals(subs, method)
    norm = rescale if renormalize else _same
    return np.stack([_per_volume(lambda a, m: norm(apply_wedge(a, m)), a, wedge_mask(subs.crop, *t))
                     for a, t in zip(data, subs.tilt_ranges, strict=False)])


def filled_volumes(subs: Subtomograms, estimates: np.ndarray, method: str = Method.ISONET,
                   renormalize: bool = True) -> np.ndarray:
    """C = N(Wmiss(B) + Wmeas(A)) for every subtomogram (every half for n2n); without N unless ``renormalize``."""
    data = originals(subs, method)
    norm = rescale if renormalize else _same
    return np.stack([_per_volume(lambda a, b, m: norm(fill_wedge(a, b, m)), a, b, wedge_mask(subs.crop, *t))
                     for a, b, t in zip(data, estimates, subs.tilt_ranges, strict=False)])


def _same(volume: np.ndarray) -> np.ndarray:
    return volume


def _per_volume(func, *arrays_and_mask):
    """Apply ``func(volumes..., mask)`` to one volume, or to each half of a (2, p, p, p) stack."""
    *arrays, mask = arrays_and_mask
    if arrays[0].ndim == 4:
        return np.stack([func(*(a[k] for a in arrays), mask) for k in range(arrays[0].shape[0])])
    return func(*arrays, mask)
