"""refine: IsoNet's iterative refinement with on-the-fly pairs, Lightning training and exact resume.

Per iteration ``it`` (SPEC §6.2, reorganised):

1. fill each subtomogram's wedge with the current estimate: ``C = N(Wmiss(B) + Wmeas(A))``;
2. train for ``epochs`` more epochs on pairs made on the fly from C (new pairs every epoch,
   noise from the schedule), continuing the previous iteration's optimiser state;
3. save ``model_iterNN.ckpt`` and ``refine_iterNN.json`` (all settings, losses, timing);
4. predict every subtomogram with the new model: the next estimates B (split across the
   DDP ranks, gathered in memory, saved once by rank 0 for resuming).

Resuming (``continue_from``) restores the settings saved in the JSON, the estimates of the
last completed iteration and, if the process was killed during an iteration, the
Lightning checkpoint of its last completed epoch; pairs are keyed by (seed, iteration,
epoch, sample), so the resumed run trains on the same pairs. Of the settings given with
``continue_from`` explicitly (``model_fields_set``: options, config file), only
:data:`RESUME_SETTINGS` apply: ``iterations`` extends a finished run (or shortens one), the
others say where to run it now.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from isonet_pl import __version__
from isonet_pl.compute import usable_cpus
from isonet_pl.config import RefineConfig
from isonet_pl.data.pairs import apply_measured, fill_wedge, noise_schedule, wedge_mask
from isonet_pl.errors import InputError, Interrupted, IsoNetError
from isonet_pl.io.mrc import read_mrc
from isonet_pl.io.paths import atomic_path, check_output_dir
from isonet_pl.io.star import read_subtomo_star
from isonet_pl.model.card import ModelCard
from isonet_pl.normalization import Normalization, rescale
from isonet_pl.predict.predictor import AUTOCAST

logger = logging.getLogger(__name__)

#: settings a resumed run takes from the call (when given explicitly) instead of its saved settings
RESUME_SETTINGS = ("iterations", "gpuID", "accelerator", "devices", "num_nodes", "preprocessing_ncpus",
                   "remove_intermediate", "log_level")

STATE = "state"  # sub-folder of result_dir with the resume state
#: Lightning warnings that are expected here: the state folder is reused on purpose; a deprecation inside Lightning.
SPURIOUS_WARNINGS = (r"Checkpoint directory .* exists and is not empty", r".*isinstance\(treespec, LeafSpec\).*",
                     r"The dirpath has changed from")
BN_SAMPLES = 128  # training inputs over which --recalibrate_bn averages the batch-norm statistics


def _epoch_seed_callback(seed: int):
    """A callback seeding torch before every training step from (seed, step): dropout is then the
    same whether a run was interrupted and resumed or not (whatever else drew random numbers)."""
    import pytorch_lightning as pl

    class StepSeed(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            torch.manual_seed(int(np.random.default_rng((seed, trainer.global_step, 11)).integers(2**31)))

    return StepSeed()


class TrainingDiverged(IsoNetError):
    """The training loss or the weights became NaN or infinite."""


def _finite_guard(iteration: int, epochs: int):
    """A callback that stops training at the first non-finite loss (or weights at an epoch's end)
    with an error naming the iteration, epoch and step and the likely cause."""
    import pytorch_lightning as pl

    def fail(trainer, what: str) -> None:
        epoch = trainer.current_epoch - (iteration - 1) * epochs + 1
        raise TrainingDiverged(
            f"iteration {iteration}, epoch {epoch}/{epochs}, step {trainer.global_step}: {what}; training diverged "
            "(likely a too high --learning_rate, or --precision 16-mixed overflowing); the last completed "
            f"iteration's model_iterNN.ckpt is kept: lower --learning_rate or use --precision 32")

    class FiniteGuard(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            if loss is not None and not bool(torch.isfinite(loss.detach()).all()):
                fail(trainer, f"the training loss is {float(loss.detach()):g}")

        def on_train_epoch_end(self, trainer, pl_module):
            for name, value in pl_module.named_parameters():
                if not bool(torch.isfinite(value.detach()).all()):
                    fail(trainer, f"the weights {name} hold NaN or infinite values")

    return FiniteGuard()


def warm_ema(average: torch.Tensor, current: torch.Tensor, n_averaged, decay: float) -> torch.Tensor:
    """One EMA update whose decay warms up with the updates done: ``min(decay, (1 + n) / (10 + n))``.

    A fixed decay d keeps a weight of d^n on the initial weights after n steps (0.99^54 = 0.58 after the
    54 steps of a 4,320-sample run's first iteration), and those weights refill the wedges and are saved.
    """
    n = float(n_averaged)
    d = min(decay, (1.0 + n) / (10.0 + n))
    return d * average + (1.0 - d) * current


def _ema_callback(decay: float):
    """Lightning's EMA of the weights with a warmed-up decay (:func:`warm_ema`), whose checkpoint after fit
    keeps the trained (not averaged) weights as the state the next iteration continues from.

    Lightning copies the average over the trained weights at the end of ``fit``, so each iteration would
    restart from the lagging average: with decay 0.99 and 54 steps per iteration only ~12 steps' worth of
    progress per iteration would remain. The averaged weights are still what refills the wedges, is
    validated and is saved (``state_dict``); the trained ones go to ``current_model_state``.
    """
    import functools

    from pytorch_lightning.callbacks import EMAWeightAveraging

    class WarmEMA(EMAWeightAveraging):
        def __init__(self):
            super().__init__(decay=decay)
            self._kwargs["avg_fn"] = functools.partial(warm_ema, decay=decay)
            self._trained = None

        def on_train_end(self, trainer, pl_module):
            self._trained = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            super().on_train_end(trainer, pl_module)

        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
            if self._trained is not None and "current_model_state" in checkpoint:
                checkpoint["current_model_state"] = self._trained

        def take_buffers(self, pl_module):
            """Copy the module's buffers (recalibrated batch-norm statistics) into the average and the trained
            state, so that the saved checkpoint and the next iteration use them."""
            buffers = zip(pl_module.named_buffers(), self._average_model.module.buffers(), strict=True)
            for (name, value), average in buffers:
                average.data.copy_(value.data)
                if self._trained is not None and name in self._trained:
                    self._trained[name] = value.detach().clone()

    return WarmEMA()


def recalibrates_bn(cfg: RefineConfig, method: str) -> bool:
    """``--recalibrate_bn``, unset: on for ``n2n``, off for ``isonet`` (as IsoNet)."""
    return cfg.recalibrate_bn if cfg.recalibrate_bn is not None else method == "n2n"


@torch.no_grad()
def recalibrate_batch_norm(module, dataset, batch_size: int, device: torch.device, precision: str = "32") -> None:
    """Set every batch norm's running statistics to their mean over ``dataset``'s inputs, for the weights the
    module holds now (dropout off, as in prediction).

    Keras's momentum (0.01 per step in torch's terms) lets the running statistics that prediction uses
    follow the batch statistics that training uses only after some thousand steps: starting from variance
    1, with activations whose variance is orders of magnitude smaller, they are still far off after the
    540 steps of a 4,320-sample run, and the averaged weights of EMA lag further. The network then predicts
    (refill, validation, predict) with statistics it never trained with.
    """
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or len(dataset) == 0:
        return
    was_training = module.training
    module.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    autocast = AUTOCAST[precision]
    for start in range(0, len(dataset), batch_size):
        batch = torch.stack([dataset[k]["input"] for k in range(start, min(start + batch_size, len(dataset)))])
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            module(batch.to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    module.train(was_training)


@dataclass
class Subtomograms:
    """The subtomograms of a refinement, normalised (protein bright), in memory.

    Attributes
    ----------
    data : numpy.ndarray
        (n, p, p, p) float32, ``N(-x)``.
    tilt_ranges : numpy.ndarray
        (n, 2) degrees.
    names : list of str
        File names.
    cube, crop : int
        Training cube edge and subtomogram edge.
    per_tomogram : bool
        Whether the normalisation used whole-tomogram statistics (our extract) or each
        subtomogram's own (IsoNet's subtomo.star).
    halves : numpy.ndarray or None
        (n, 2, p, p, p) float32, the even/odd half subtomograms normalised like ``data``.
    pixel_size : float or None
        Å per voxel (the STAR file's ``_rlnPixelSize``, else the first subtomogram's header), if known.
    """

    data: np.ndarray
    tilt_ranges: np.ndarray
    names: list[str]
    cube: int
    crop: int
    per_tomogram: bool
    halves: np.ndarray | None = None
    pixel_size: float | None = None


def load_subtomograms(star_file: str | Path, percentile: bool = True) -> Subtomograms:
    """Read every subtomogram of a subtomo.star (ours, IsoNet's or prepare_subtomo_star's) into memory."""
    table = read_subtomo_star(star_file)
    df = table.df
    crop = int(df["rlnCropSize"].iloc[0]) if "rlnCropSize" in df.columns else None
    cube = int(df["rlnCubeSize"].iloc[0]) if "rlnCubeSize" in df.columns else None
    volumes, tilts, names, per_tomogram, halves = [], [], [], True, []
    half_columns = ("rlnImageNameHalf1", "rlnImageNameHalf2")
    with_halves = all(c in df.columns for c in half_columns)
    pixel_size = float(df["rlnPixelSize"].median()) if "rlnPixelSize" in df.columns else None
    for row in range(len(df)):
        path = table.get_path(row, "rlnImageName")
        vol, info = read_mrc(path)
        if pixel_size is None and info.voxel_size[2] > 0:
            pixel_size = float(info.voxel_size[2])
        if vol.ndim != 3 or len(set(vol.shape)) != 1:
            raise InputError(f"subtomogram is not a cube ({'x'.join(map(str, vol.shape))})", path,
                             "extract cubic subtomograms")
        if crop is None:
            crop = vol.shape[0]
        if vol.shape[0] != crop:
            raise InputError(f"subtomogram edge {vol.shape[0]} differs from _rlnCropSize {crop}", path,
                             "use subtomograms of one size per STAR file")
        vol = vol.astype(np.float32)
        if not np.isfinite(vol).all():
            raise InputError("subtomogram contains NaN or infinite values", path, "extract it again")
        norm = Normalization.from_row(df.iloc[row], percentile)
        per_tomogram &= norm is not None
        norm = norm or Normalization.of_volume(vol, percentile)
        volumes.append(norm.apply(vol))
        if with_halves:
            pair = [read_mrc(table.get_path(row, c))[0].astype(np.float32) for c in half_columns]
            if any(h.shape != vol.shape or not np.isfinite(h).all() for h in pair):
                raise InputError("half subtomograms differ in shape from the subtomogram or hold NaN",
                                 table.get_path(row, half_columns[0]), "extract again")
            halves.append(np.stack([norm.apply(h) for h in pair]))
        tilts.append(table.tilt_range(row))
        names.append(path.name)
    if not per_tomogram:
        logger.warning("%s has no tomogram statistics (not made by our extract): each subtomogram is normalised "
                       "on its own, as IsoNet 0.2 does", table.path)
    if cube is None:
        cube = int(crop / 1.5 + 1) // 16 * 16
    return Subtomograms(np.stack(volumes), np.asarray(tilts, dtype=np.float64), names, cube, crop, per_tomogram,
                        np.stack(halves) if with_halves else None, pixel_size)


def resolve_devices(cfg: RefineConfig) -> dict:
    """Lightning's accelerator, devices and strategy from gpuID / accelerator / devices."""
    has_gpu = torch.cuda.is_available()
    if cfg.gpuID:
        ids = sorted({int(g) for g in str(cfg.gpuID).replace(" ", "").split(",") if g != ""})
        if not has_gpu:
            logger.warning("--gpuID %s given but no CUDA device is visible: training on the CPU", cfg.gpuID)
            accelerator, devices = "cpu", 1
        else:
            if max(ids) >= torch.cuda.device_count():
                raise InputError(f"--gpuID {cfg.gpuID}: only {torch.cuda.device_count()} GPU(s) visible",
                                 fix="choose existing GPU ids (see isonet-pl check)")
            accelerator, devices = "gpu", ids
    else:
        accelerator = cfg.accelerator
        if accelerator == "auto":
            accelerator = "gpu" if has_gpu else "cpu"
        if accelerator == "gpu" and not has_gpu:
            raise InputError("--accelerator gpu but no CUDA device is visible", fix="use --accelerator cpu")
        if accelerator == "cpu" and cfg.devices is None:
            logger.warning("no GPU: training on the CPU (slow for the default network; see README)")
        devices = cfg.devices or (torch.cuda.device_count() if accelerator == "gpu" else 1)
    count = len(devices) if isinstance(devices, list) else int(devices)
    strategy = "ddp" if count * cfg.num_nodes > 1 else "auto"
    return {"accelerator": accelerator, "devices": devices, "strategy": strategy, "count": count * cfg.num_nodes}


def derived_settings(cfg: RefineConfig, n_subtomos: int, n_devices: int) -> tuple[int, int]:
    """(batch_size, steps_per_epoch) with IsoNet's defaults; checks divisibility by the devices."""
    batch = cfg.batch_size or max(4, 2 * n_devices)
    if batch % n_devices:
        raise InputError(f"batch_size {batch} is not divisible by the {n_devices} devices",
                         fix=f"use a multiple of {n_devices}")
    n = min(n_subtomos, cfg.select_subtomo_number or n_subtomos)
    steps = cfg.steps_per_epoch or max(1, min(int(6 * n / batch), 200))
    return batch, steps


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of n subtomograms into training and validation ones (validation at least 1 if n > 1).

    Raises
    ------
    InputError
        When ``fraction`` leaves no subtomogram to train on.
    """
    order = np.random.default_rng((seed, 7)).permutation(n)
    n_val = 0 if n < 2 or fraction == 0 else max(1, int(round(fraction * n)))
    if n_val >= n and n > 1:
        raise InputError(f"--val_fraction {fraction:g} holds out all {n} subtomograms, leaving none to train on",
                         fix=f"use a --val_fraction below {(n - 1) / n:.2f}, or extract more subtomograms")
    return np.sort(order[n_val:]), np.sort(order[:n_val] if n_val else order[:1])


def method_of(cfg: RefineConfig, subs: Subtomograms) -> str:
    """``isonet`` or ``n2n`` (auto: n2n when the subtomograms have even/odd halves)."""
    if cfg.method == "n2n" and subs.halves is None:
        raise InputError("--method n2n needs even/odd half subtomograms (_rlnImageNameHalf1/2)",
                         fix="prepare_star --even/--odd, then deconv/make_mask/extract again")
    if cfg.method == "auto":
        return "n2n" if subs.halves is not None else "isonet"
    return cfg.method


def uses_residual(cfg: RefineConfig, method: str) -> bool:
    """``--residual``, unset: IsoNet's residual U-Net for ``isonet``, none for ``n2n`` (bench/RESULTS.md)."""
    return cfg.residual if cfg.residual is not None else method != "n2n"


def ema_decay(cfg: RefineConfig, method: str) -> float:
    """``--ema_decay``, unset: 0.99 for ``n2n``, 0 (off) for ``isonet`` (bench/RESULTS.md)."""
    return cfg.ema_decay if cfg.ema_decay is not None else (0.99 if method == "n2n" else 0.0)


def renormalizes(cfg: RefineConfig, method: str, subs: Subtomograms) -> bool:
    """Whether the filled subtomograms are renormalised each on its own (``--fill_normalization``)."""
    mode = cfg.fill_normalization if cfg.fill_normalization != "auto" else \
        ("tomogram" if method == "n2n" else "subtomogram")
    return mode == "subtomogram" or not subs.per_tomogram


def build_module(cfg: RefineConfig, subs: Subtomograms):
    """A fresh IsoNetModule with the network of ``cfg`` and the metadata predict needs."""
    from isonet_pl.model.module import IsoNetModule

    net = {"depth": cfg.unet_depth, "base_channels": cfg.filter_base, "convs_per_level": cfg.convs_per_depth,
           "kernel_size": cfg.kernel, "batch_norm": cfg.batch_normalization, "dropout": cfg.drop_out,
           "residual": uses_residual(cfg, method_of(cfg, subs)), "pool": cfg.pool}
    meta = {"method": method_of(cfg, subs), "mw_weight": cfg.mw_weight,
            "normalize_percentile": cfg.normalize_percentile,
            "normalization": "tomogram" if subs.per_tomogram else "subtomogram", "cube_size": subs.cube,
            "crop_size": subs.crop, "tilt_ranges": sorted({tuple(t) for t in subs.tilt_ranges.tolist()}),
            "pixel_size": subs.pixel_size, "version": __version__, "settings": cfg.model_dump(mode="json")}
    return IsoNetModule(net=net, learning_rate=cfg.learning_rate, meta=ModelCard.model_validate(meta).model_dump())


def load_pretrained(module, path: str | Path) -> None:
    """Start ``module`` (this run's network, settings and metadata) from the weights of a checkpoint.

    Only the weights are taken; ``meta["pretrained_model"]`` records where they came from.

    Raises
    ------
    InputError
        When the file is not one of our checkpoints, or its network differs in shape from this run's.
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
        theirs = checkpoint["hyper_parameters"]["net"]
    except Exception as exc:
        raise InputError(f"not an isonet-pl checkpoint ({exc.__class__.__name__})", path,
                         "give a model_iterNN.ckpt made by isonet-pl refine") from None
    ours = module.hparams["net"]
    own = module.net.state_dict()
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k) and k != "dropout")
    if set(weights) != set(own) or any(weights[k].shape != own[k].shape for k in own):
        option = {"depth": "unet_depth", "base_channels": "filter_base", "convs_per_level": "convs_per_depth",
                  "kernel_size": "kernel", "batch_norm": "batch_normalization"}
        shown = ", ".join(f"{option.get(k, k)} {theirs.get(k)} vs {ours.get(k)}" for k in differ) or "layer shapes"
        raise InputError(f"its network differs from this run's ({shown})", path,
                         "give the same network options as the run that made it (--unet_depth, --filter_base, "
                         "--convs_per_depth, --kernel, --batch_normalization, --pool, --residual), or drop "
                         "--pretrained_model")
    if any(not bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point()):
        raise InputError("its weights hold NaN or infinite values", path, "start from another checkpoint")
    module.net.load_state_dict(weights)
    module.hparams["meta"]["pretrained_model"] = str(path.resolve())
    logger.info("starting from the weights of %s", path)


@torch.no_grad()
def predict_volumes(module, volumes: np.ndarray, batch_size: int, device: torch.device,
                    precision: str = "32", renormalize: bool = True) -> np.ndarray:
    """Run the network on whole subtomograms (padded to its input multiple), returning N(output).

    ``precision`` is refine's: with ``bf16-mixed`` / ``16-mixed`` the forward runs under autocast
    (as training does; about 2x faster on CPUs with bf16 instructions). ``renormalize=False``
    returns the outputs as they are (in the units of the input) instead of N(output).
    """
    module.eval()
    autocast = AUTOCAST[precision]
    multiple = module.net.min_input_multiple
    p = volumes.shape[1]
    size = -(-p // multiple) * multiple
    pad = size - p
    out = np.empty_like(volumes)
    for start in range(0, len(volumes), batch_size):
        batch = torch.from_numpy(volumes[start:start + batch_size])[:, None].to(device)
        if pad:
            batch = torch.nn.functional.pad(batch, (0, pad, 0, pad, 0, pad), mode="replicate")
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            pred = module(batch)[:, 0, :p, :p, :p].float().cpu().numpy()
        out[start:start + len(pred)] = [rescale(v) for v in pred] if renormalize else pred
    module.train()
    return out


def _dist():
    """(rank, world size) of the running torch.distributed group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _launch_rank() -> int:
    """This process's global rank as set by its launcher (Lightning's DDP, torchrun, SLURM); 0 if none."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        if os.environ.get(name, "0") not in ("", "0"):
            return int(os.environ[name])
    return 0


def predict_all(module, volumes: np.ndarray, batch_size: int, device: torch.device,
                precision: str = "32", renormalize: bool = True) -> np.ndarray:
    """Predict every subtomogram (or half: (n, 2, p, p, p)), split across DDP ranks and gathered."""
    if volumes.ndim == 5:
        n = volumes.shape[0]
        flat = predict_all(module, volumes.reshape(-1, *volumes.shape[2:]), batch_size, device, precision,
                           renormalize)
        return flat.reshape(n, 2, *volumes.shape[2:])
    rank, world = _dist()
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


def _originals(subs: Subtomograms, method: str) -> np.ndarray:
    """What the estimates stand for: (n, p, p, p) data, or (n, 2, p, p, p) halves for n2n."""
    return subs.halves if method == "n2n" else subs.data


def first_estimates(subs: Subtomograms, method: str = "isonet", renormalize: bool = True) -> np.ndarray:
    """IsoNet's FIRST_ITER: the wedge-filtered originals (each half for n2n), normalised (unless not
    ``renormalize``)."""
    data = _originals(subs, method)
    norm = rescale if renormalize else _same
    return np.stack([_per_volume(lambda a, m: norm(apply_measured(a, m)), a, wedge_mask(subs.crop, *t))
                     for a, t in zip(data, subs.tilt_ranges, strict=False)])


def filled_volumes(subs: Subtomograms, estimates: np.ndarray, method: str = "isonet",
                   renormalize: bool = True) -> np.ndarray:
    """C = N(Wmiss(B) + Wmeas(A)) for every subtomogram (every half for n2n); without N unless ``renormalize``."""
    data = _originals(subs, method)
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


def _save_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))


def _resume_point(cfg: RefineConfig) -> tuple[RefineConfig, int]:
    """Settings and last completed iteration of a run given by ``continue_from``.

    The run continues in the folder given (or the folder of the JSON file given), wherever it
    now lies: its saved ``result_dir`` is replaced by it, so a copied or renamed run folder
    resumes in place and never writes into the original.
    """
    saved, done = _saved_run(cfg)
    src = Path(cfg.continue_from)
    folder = src if src.is_dir() else src.parent
    return saved.model_copy(update={"result_dir": str(folder)}), done


def _saved_run(cfg: RefineConfig) -> tuple[RefineConfig, int]:
    src = Path(cfg.continue_from)
    if not src.exists():
        raise InputError("does not exist", src, "give the result_dir of a refine run (or one of its "
                         "refine_iterNN.json)")
    if src.is_dir():
        found = sorted(src.glob("refine_iter*.json"))
        src = found[-1] if found else src / "none.json"
        if not found:  # killed during the first iteration: restart it from its epoch checkpoint
            saved = Path(cfg.continue_from) / STATE / "settings.json"
            if not saved.exists():
                raise InputError("no refine_iterNN.json or saved settings in this folder", cfg.continue_from,
                                 "give the result_dir of a refine run")
            return RefineConfig.model_validate(json.loads(saved.read_text())), 0
    try:
        payload = json.loads(src.read_text())
        saved = RefineConfig.model_validate(payload["settings"])
        done = int(payload["iteration"])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"not a refine_iterNN.json of isonet-pl ({exc.__class__.__name__})", src,
                         "give a refine_iterNN.json or the result_dir") from None
    return saved, done


def _check_fresh_result_dir(folder: Path) -> None:
    """Refuse a result folder that holds another refine run (its checkpoints, settings or state)."""
    if not folder.is_dir():
        return
    found = [p.name for p in (*folder.glob("refine_iter*.json"), *folder.glob("model_iter*.ckpt"),
                              folder / STATE / "settings.json") if p.exists()]
    if found:
        raise InputError(f"holds another refine run ({found[0]})", folder,
                         f"resume it with --continue_from {folder}, or choose another --result_dir (or delete it)")


def refine(subtomo_star: str | Path, cfg: RefineConfig | None = None) -> Path:
    """Train the U-Net iteratively on the subtomograms of ``subtomo_star`` (IsoNet's refine).

    Returns
    -------
    Path
        The checkpoint of the last iteration.
    """
    with warnings.catch_warnings():
        for message in SPURIOUS_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        return _refine(subtomo_star, cfg or RefineConfig())


def _refine(subtomo_star: str | Path, cfg: RefineConfig) -> Path:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from isonet_pl.data.datamodule import IsoNetDataModule, PairDataset
    from isonet_pl.model.module import IsoNetModule

    done = 0
    if cfg.continue_from:
        overrides = {k: getattr(cfg, k) for k in RESUME_SETTINGS if k in cfg.model_fields_set}
        overrides["continue_from"] = cfg.continue_from
        cfg, done = _resume_point(cfg)
        changed = {k: v for k, v in overrides.items() if k != "continue_from" and getattr(cfg, k) != v}
        cfg = cfg.model_copy(update=overrides)
        logger.info("resuming %s after iteration %d with its saved settings%s", cfg.result_dir, done,
                    "".join(f", {k} {v}" for k, v in changed.items()))
    if done >= cfg.iterations:
        logger.info("all %d iterations are done in %s", cfg.iterations, cfg.result_dir)
        return Path(cfg.result_dir) / f"model_iter{cfg.iterations:02d}.ckpt"
    if not cfg.continue_from and _launch_rank() == 0:  # other ranks start after rank 0 has begun writing
        _check_fresh_result_dir(Path(cfg.result_dir))
    result_dir = check_output_dir(cfg.result_dir, option="--result_dir")
    state = result_dir / STATE
    state.mkdir(exist_ok=True)
    subs = load_subtomograms(subtomo_star, cfg.normalize_percentile)
    if subs.cube % 2**cfg.unet_depth:
        raise InputError(f"cube_size {subs.cube} is not divisible by 2^unet_depth = {2 ** cfg.unet_depth}",
                         subtomo_star, "extract with another --cube_size or lower --unet_depth")
    if subs.crop < subs.cube:
        raise InputError(f"crop size {subs.crop} is smaller than cube size {subs.cube}", subtomo_star,
                         "extract again with crop_size >= cube_size")
    method = method_of(cfg, subs)
    renormalize = renormalizes(cfg, method, subs)
    decay = ema_decay(cfg, method)
    recalibrate = recalibrates_bn(cfg, method)
    dev = resolve_devices(cfg)
    batch, steps = derived_settings(cfg, len(subs.data), dev["count"])
    workers = cfg.preprocessing_ncpus if cfg.preprocessing_ncpus is not None else min(8, max(0, usable_cpus() - 1))
    logger.info("refine: method %s on %d subtomograms (cube %d, crop %d); %d iterations x %d epochs x %d steps of "
                "batch %d; residual %s, EMA %s, fill normalisation %s, precision %s, %d worker(s)", method,
                len(subs.data), subs.cube, subs.crop, cfg.iterations, cfg.epochs, steps, batch,
                "on" if uses_residual(cfg, method) else "off", decay or "off",
                "per subtomogram" if renormalize else "tomogram", cfg.precision, workers)
    train_idx, val_idx = split(len(subs.data), cfg.val_fraction, cfg.seed)
    schedule = noise_schedule(cfg.iterations, cfg.noise_level, cfg.noise_start_iter)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    rank, _ = _dist()
    if rank == 0:
        _save_json(state / "settings.json", cfg.model_dump(mode="json"))

    if done:
        try:
            module = IsoNetModule.load_from_checkpoint(result_dir / f"model_iter{done:02d}.ckpt", map_location="cpu")
            estimates = np.load(state / f"estimates_iter{done:02d}.npy")
        except Exception as exc:
            raise InputError(f"cannot resume after iteration {done} ({exc.__class__.__name__}: {exc})", result_dir,
                             "the checkpoint or the saved estimates are damaged; resume from an earlier "
                             "refine_iterNN.json") from None
        previous = result_dir / f"model_iter{done:02d}.ckpt"
    else:
        module = build_module(cfg, subs)
        previous = None
        if cfg.pretrained_model:
            load_pretrained(module, cfg.pretrained_model)
            estimates = predict_all(module, _originals(subs, method), batch, torch.device("cpu"),
                                    renormalize=renormalize)
        else:
            estimates = first_estimates(subs, method, renormalize)
    device = torch.device("cuda", dev["devices"][0] if isinstance(dev["devices"], list) else 0) \
        if dev["accelerator"] == "gpu" else torch.device("cpu")

    it, spent = done + 1, []
    try:
        for it in range(done + 1, cfg.iterations + 1):
            t0 = time.perf_counter()
            rng = np.random.default_rng((cfg.seed, it, 3))
            active = train_idx
            if cfg.select_subtomo_number and cfg.select_subtomo_number < len(train_idx):
                active = np.sort(rng.choice(train_idx, cfg.select_subtomo_number, replace=False))
            if method != "n2n" or (it - 1) % cfg.refill_every == 0 or it == done + 1:
                filled = filled_volumes(subs, estimates, method, renormalize)
            noise = 0.0 if method == "n2n" else float(schedule[it])  # n2n: the other half is the noise model
            dm = IsoNetDataModule(filled, subs.tilt_ranges, active, val_idx, subs.cube, batch // dev["count"], steps,
                                  noise, cfg.noise_mode, workers, (cfg.seed, it), cfg.wedge_target)
            epoch_ckpt = ModelCheckpoint(dirpath=state, filename="epoch", save_last=False, save_top_k=1,
                                         monitor=None, every_n_epochs=1, enable_version_counter=False,
                                         save_on_train_epoch_end=True)
            ema = _ema_callback(decay) if decay else None
            trainer = pl.Trainer(max_epochs=it * cfg.epochs, accelerator=dev["accelerator"], devices=dev["devices"],
                                 strategy=dev["strategy"], num_nodes=cfg.num_nodes, precision=cfg.precision,
                                 logger=_loggers(result_dir, it),
                                 callbacks=[_finite_guard(it, cfg.epochs), epoch_ckpt, _epoch_seed_callback(cfg.seed),
                                            _progress_bar(it, cfg.iterations, cfg.epochs)]
                                 + ([ema] if ema else []),
                                 reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0,
                                 log_every_n_steps=max(1, min(50, steps)), enable_model_summary=False,
                                 default_root_dir=result_dir, deterministic=False)
            resume = _epoch_checkpoint(state, it, cfg.epochs) or previous
            try:
                trainer.fit(module, datamodule=dm, ckpt_path=resume)
            except SystemExit:  # Lightning ends a Ctrl-C with exit(1)
                if not trainer.interrupted:
                    raise
            if trainer.interrupted:  # stop here, resumable from the last epoch checkpoint
                if threading.current_thread() is threading.main_thread():  # Lightning left Ctrl-C ignored
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                raise Interrupted(_resume_hint(it, subtomo_star, result_dir))
            losses = _epoch_losses(result_dir / "logs" / f"iter{it:02d}" / "metrics.csv", it, cfg.epochs)
            if recalibrate:  # the statistics of the weights that refill, are saved and predict
                recalibrate_batch_norm(module, PairDataset(filled, subs.tilt_ranges, active, BN_SAMPLES, subs.cube,
                                                           noise, cfg.noise_mode, (cfg.seed, it, 2),
                                                           cfg.wedge_target), batch, device, cfg.precision)
                if ema:
                    ema.take_buffers(module)
            ckpt = result_dir / f"model_iter{it:02d}.ckpt"
            trainer.save_checkpoint(ckpt)  # every rank calls it; Lightning writes from rank 0 only
            estimates = predict_all(module, _originals(subs, method), batch, device, cfg.precision, renormalize)
            if trainer.is_global_zero:
                np.save(state / f".estimates_iter{it:02d}.npy", estimates)
                (state / f".estimates_iter{it:02d}.npy").replace(state / f"estimates_iter{it:02d}.npy")
                _save_json(result_dir / f"refine_iter{it:02d}.json", {
                    "iteration": it, "settings": cfg.model_dump(mode="json"), "losses": losses["train"],
                    "val_losses": losses["val"], "noise_level": float(schedule[it]), "batch_size": batch,
                    "steps_per_epoch": steps, "n_subtomograms": len(subs.data), "cube_size": subs.cube,
                    "crop_size": subs.crop, "seconds": time.perf_counter() - t0})
                _cleanup(state, it, cfg.remove_intermediate)
                _plot_losses(result_dir)
            previous = ckpt
            spent.append(time.perf_counter() - t0)
            left = (cfg.iterations - it) * float(np.mean(spent))
            logger.info("iteration %d/%d: loss %.4f, validation loss %.4f, noise %.2f, %.0f s%s", it, cfg.iterations,
                        losses["train"][-1] if losses["train"] else math.nan,
                        losses["val"][-1] if losses["val"] else math.nan, schedule[it], spent[-1],
                        f"; about {_duration(left)} left" if it < cfg.iterations else "")
    except Interrupted:
        raise
    except KeyboardInterrupt:  # between the fits: refilling, predicting, saving
        raise Interrupted(_resume_hint(it, subtomo_star, result_dir)) from None
    logger.info("refine done: the model is %s; next: isonet-pl predict TOMOGRAMS_STAR %s", previous, previous)
    return previous


def _resume_hint(iteration: int, subtomo_star, result_dir: Path) -> str:
    """What an interrupted refine says: where it stopped and the command that resumes it."""
    return (f"during iteration {iteration}; completed iterations and epochs are saved. Resume with: isonet-pl "
            f"refine {subtomo_star} --continue_from {result_dir}")


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min`` or ``3.2 h``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def _progress_bar(iteration: int, iterations: int, epochs: int):
    """Lightning's bar labelled ``iteration k/N · epoch e/E``, without ``v_num`` and without validation bars
    (their losses show on the training bar); in logs (no terminal) it is redrawn every 10 steps only."""
    import sys

    from pytorch_lightning.callbacks import TQDMProgressBar
    from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm

    class Bar(TQDMProgressBar):
        def on_train_epoch_start(self, trainer, *args) -> None:
            super().on_train_epoch_start(trainer, *args)
            epoch = trainer.current_epoch - (iteration - 1) * epochs + 1
            self.train_progress_bar.set_description(f"iteration {iteration}/{iterations} · epoch {epoch}/{epochs}")

        def init_validation_tqdm(self):
            return Tqdm(disable=True)

        def get_metrics(self, trainer, pl_module):
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)
            return metrics

    return Bar(refresh_rate=1 if sys.stderr.isatty() else 10)


def _loggers(result_dir: Path, it: int) -> list:
    """CSV logs always, TensorBoard logs too when tensorboard is installed."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(result_dir, name="logs", version=f"iter{it:02d}")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(result_dir, name="tensorboard", version=f"iter{it:02d}"))
    except ImportError:
        pass
    return loggers


def _epoch_checkpoint(state: Path, it: int, epochs: int) -> Path | None:
    """The epoch checkpoint of iteration ``it`` left by a killed run, if any."""
    path = state / "epoch.ckpt"
    if not path.exists():
        return None
    try:
        epoch = int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except Exception:
        return None
    if (it - 1) * epochs <= epoch < it * epochs:
        logger.info("resuming iteration %d from its epoch checkpoint (epoch %d)", it, epoch + 1)
        return path
    return None


def _epoch_losses(csv: Path, it: int, epochs: int) -> dict[str, list[float]]:
    """Per-epoch training and validation losses of iteration ``it`` from Lightning's CSV log."""
    import csv as csvlib

    train, val = {}, {}
    if csv.exists():
        with open(csv) as fh:
            for row in csvlib.DictReader(fh):
                epoch = int(float(row.get("epoch") or -1))
                if not (it - 1) * epochs <= epoch < it * epochs:
                    continue
                if row.get("train/loss_epoch"):
                    train[epoch] = float(row["train/loss_epoch"])
                if row.get("val/loss"):
                    val[epoch] = float(row["val/loss"])
    return {"train": [train[k] for k in sorted(train)], "val": [val[k] for k in sorted(val)]}


def _cleanup(state: Path, it: int, remove_intermediate: bool) -> None:
    """Drop the estimates of older iterations (all but the latest when remove_intermediate)."""
    for path in state.glob("estimates_iter*.npy"):
        n = int(path.stem.removeprefix("estimates_iter"))
        if n < it and (remove_intermediate or n < it - 1):
            path.unlink()


def _plot_losses(result_dir: Path) -> None:
    """losses.svg: training and validation loss per epoch over all iterations, with the iteration boundaries and
    noise-stage starts (:func:`isonet_pl.plot.loss_figure`)."""
    from isonet_pl.plot import loss_figure

    train, val, noise, epochs = [], [], [], 1
    for path in sorted(result_dir.glob("refine_iter*.json")):
        payload = json.loads(path.read_text())
        train += payload.get("losses", [])
        val += payload.get("val_losses", [])
        noise.append(float(payload.get("noise_level", 0.0)))
        epochs = int(payload.get("settings", {}).get("epochs", epochs))
    with atomic_path(result_dir / "losses.svg") as tmp:
        tmp.write_text(loss_figure(train, val, epochs, noise))
