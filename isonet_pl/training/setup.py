"""Settings derived from the method and the data (rules beside their help), and the module they build."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from isonet_pl import __version__
from isonet_pl.compute import usable_cpus
from isonet_pl.config import Method, RefineConfig
from isonet_pl.errors import InputError
from isonet_pl.model.card import ModelCard
from isonet_pl.model.checkpoint import read_checkpoint
from isonet_pl.training.subtomograms import Subtomograms

logger = logging.getLogger(__name__)


def derived_settings(cfg: RefineConfig, n_subtomos: int, n_devices: int) -> tuple[int, int]:
    """(batch_size, steps_per_epoch) with IsoNet's defaults; checks divisibility by the devices."""
    batch = cfg.batch_size or max(4, 2 * n_devices)
    if batch % n_devices:
        raise InputError(f"batch_size {batch} is not divisible by the {n_devices} devices",
                         fix=f"use a multiple of {n_devices}")
    n = min(n_subtomos, cfg.select_subtomo_number or n_subtomos)
    steps = cfg.steps_per_epoch or max(1, min(int(6 * n / batch), 200))
    return batch, steps


def method_of(cfg: RefineConfig, subs: Subtomograms) -> str:
    """``isonet`` or ``n2n`` (auto: n2n when the subtomograms have even/odd halves)."""
    if cfg.method == Method.N2N and subs.halves is None:
        raise InputError("--method n2n needs even/odd half subtomograms (_rlnImageNameHalf1/2)",
                         fix="prepare_star --even/--odd, then deconv/make_mask/extract again")
    if cfg.method == "auto":
        return Method.N2N if subs.halves is not None else Method.ISONET
    return Method(cfg.method)


def uses_residual(cfg: RefineConfig, method: str) -> bool:
    """``--residual``, unset: IsoNet's residual U-Net for ``isonet``, none for ``n2n`` (bench/RESULTS.md)."""
    return cfg.residual if cfg.residual is not None else method != Method.N2N


def ema_decay(cfg: RefineConfig, method: str) -> float:
    """``--ema_decay``, unset: 0.99 for ``n2n``, 0 (off) for ``isonet`` (bench/RESULTS.md)."""
    return cfg.ema_decay if cfg.ema_decay is not None else (0.99 if method == Method.N2N else 0.0)


def learning_rate(cfg: RefineConfig, method: str) -> float:
    """``--learning_rate``, unset: 1e-3 for ``n2n``, IsoNet's 4e-4 for ``isonet`` (bench/RESULTS.md)."""
    return cfg.learning_rate if cfg.learning_rate is not None else (1e-3 if method == Method.N2N else 4e-4)


def dropout(cfg: RefineConfig, method: str) -> float:
    """``--drop_out``, unset: IsoNet's 0.3 for ``isonet``, 0 for ``n2n`` (bench/RESULTS.md)."""
    return cfg.drop_out if cfg.drop_out is not None else (0.0 if method == Method.N2N else 0.3)


def lr_schedule(cfg: RefineConfig, method: str) -> str:
    """``--lr_schedule``, auto: constant (a cosine scored lower for n2n at a small budget, bench/RESULTS.md)."""
    return cfg.lr_schedule if cfg.lr_schedule != "auto" else "constant"


def renormalizes(cfg: RefineConfig, method: str, subs: Subtomograms) -> bool:
    """Whether the filled subtomograms are renormalised each on its own (``--fill_normalization``)."""
    mode = cfg.fill_normalization if cfg.fill_normalization != "auto" else \
        ("tomogram" if method == Method.N2N else "subtomogram")
    return mode == "subtomogram" or not subs.per_tomogram


def recalibrates_bn(cfg: RefineConfig, method: str) -> bool:
    """``--recalibrate_bn``, unset: on for ``n2n``, off for ``isonet`` (as IsoNet)."""
    return cfg.recalibrate_bn if cfg.recalibrate_bn is not None else method == Method.N2N


def frequency_power(cfg: RefineConfig, method: str) -> float:
    """``--frequency_power`` for ``n2n`` (its Fourier loss), 0 for ``isonet`` (IsoNet's real-space MAE)."""
    if method != Method.N2N:
        if cfg.frequency_power:
            logger.warning("--frequency_power %g applies to --method n2n only; isonet's loss is IsoNet's mean "
                           "absolute error", cfg.frequency_power)
        return 0.0
    return cfg.frequency_power


def max_shift(cfg: RefineConfig, method: str, subs: Subtomograms) -> int:
    """``--max_shift`` for ``n2n`` (bench/RESULTS.md), 0 for ``isonet``.

    Raises
    ------
    InputError
        When the shift given reaches beyond the subtomograms.
    """
    if method != Method.N2N:
        if cfg.max_shift:
            logger.warning("--max_shift %d applies to --method n2n only; isonet trains on the centre of each "
                           "subtomogram (IsoNet's)", cfg.max_shift)
        return 0
    if 2 * cfg.max_shift > subs.crop - subs.cube:
        raise InputError(f"--max_shift {cfg.max_shift} moves {subs.cube}³ cubes beyond the {subs.crop}³ subtomograms",
                         None, f"use --max_shift {(subs.crop - subs.cube) // 2} or less, or extract a larger "
                               "--crop_size")
    return cfg.max_shift


def input_noise(cfg: RefineConfig, method: str) -> float:
    """``--input_noise`` for ``n2n``, unset: 0.6 (recorrupted pairs, bench/RESULTS.md); 1 for ``isonet``."""
    if method != Method.N2N:
        if cfg.input_noise is not None and cfg.input_noise != 1:
            logger.warning("--input_noise %g applies to --method n2n only; isonet's inputs carry the tomogram's "
                           "own noise (and the noise it adds)", cfg.input_noise)
        return 1.0
    return 0.6 if cfg.input_noise is None else cfg.input_noise


@dataclass(frozen=True)
class Resolved:
    """The settings whose default depends on the method or the data, as this run uses them.

    Logged in refine's first line, stored in every ``refine_iterNN.json`` and in the model card.
    """

    method: str
    batch_size: int
    steps_per_epoch: int
    residual: bool
    drop_out: float
    learning_rate: float
    lr_schedule: str
    ema_decay: float
    fill_normalization: str
    recalibrate_bn: bool
    preprocessing_ncpus: int
    max_shift: int = 0
    input_noise: float = 1.0

    def describe(self) -> str:
        return (f"method {self.method}, batch {self.batch_size}, {self.steps_per_epoch} steps per epoch, residual "
                f"{'on' if self.residual else 'off'}, dropout {self.drop_out:g}, learning rate {self.learning_rate:g} "
                f"({self.lr_schedule}), EMA "
                f"{self.ema_decay or 'off'}, fill normalisation {self.fill_normalization}, batch-norm recalibration "
                f"{'on' if self.recalibrate_bn else 'off'}, cube shift up to {self.max_shift} voxels, "
                f"input noise from {self.input_noise:g} of a half's, "
                f"{self.preprocessing_ncpus} worker(s)")


def resolve(cfg: RefineConfig, subs: Subtomograms, n_devices: int) -> Resolved:
    """Apply every derived-default rule above to ``cfg`` for these subtomograms and devices."""
    method = method_of(cfg, subs)
    batch, steps = derived_settings(cfg, len(subs.data), n_devices)
    workers = cfg.preprocessing_ncpus if cfg.preprocessing_ncpus is not None else min(8, max(0, usable_cpus() - 1))
    return Resolved(method, batch, steps, uses_residual(cfg, method), dropout(cfg, method), learning_rate(cfg, method),
                    lr_schedule(cfg, method), ema_decay(cfg, method),
                    "subtomogram" if renormalizes(cfg, method, subs) else "tomogram", recalibrates_bn(cfg, method),
                    workers, max_shift(cfg, method, subs), input_noise(cfg, method))


def with_precision(cfg: RefineConfig, subs: Subtomograms, accelerator: str) -> RefineConfig:
    """``cfg`` with ``precision auto`` resolved for this network and device (:func:`fastest_precision` of predict:
    bf16-mixed where it runs the network faster, timed once per network and machine). The resolved value is what
    the run saves, so a resumed run trains in the same precision."""
    if cfg.precision != "auto":
        return cfg
    from isonet_pl.predict.predictor import fastest_precision

    device = "cuda" if accelerator == "gpu" else "cpu"
    precision = fastest_precision(build_module(cfg, subs), device)
    logger.info("training precision auto: %s", precision)
    return cfg.model_copy(update={"precision": precision})


def build_module(cfg: RefineConfig, subs: Subtomograms):
    """A fresh IsoNetModule with the network of ``cfg`` and the metadata predict needs."""
    from isonet_pl.model.module import IsoNetModule

    method = method_of(cfg, subs)
    net = {"depth": cfg.unet_depth, "base_channels": cfg.filter_base, "convs_per_level": cfg.convs_per_depth,
           "kernel_size": cfg.kernel, "batch_norm": cfg.batch_normalization, "dropout": dropout(cfg, method),
           "residual": uses_residual(cfg, method), "pool": cfg.pool}
    meta = {"method": method, "mw_weight": cfg.mw_weight,
            "normalize_percentile": cfg.normalize_percentile,
            "normalization": "tomogram" if subs.per_tomogram else "subtomogram", "cube_size": subs.cube,
            "crop_size": subs.crop, "tilt_ranges": sorted({tuple(t) for t in subs.tilt_ranges.tolist()}),
            "pixel_size": subs.pixel_size, "version": __version__, "settings": cfg.model_dump(mode="json")}
    return IsoNetModule(net=net, learning_rate=learning_rate(cfg, method),
                        meta=ModelCard.model_validate(meta).model_dump(),
                        loss="fourier_split" if method == Method.N2N else "mae", mw_weight=cfg.mw_weight,
                        lr_schedule=lr_schedule(cfg, method), frequency_power=frequency_power(cfg, method))


def load_pretrained(module, path: str | Path) -> None:
    """Start ``module`` (this run's network, settings and metadata) from the weights of a checkpoint.

    Only the weights are taken; ``meta["pretrained_model"]`` records where they came from.

    Raises
    ------
    InputError
        When the file is not one of our checkpoints, or its network differs in shape from this run's.
    """
    path = Path(path)
    fix = "give a model_iterNN.ckpt made by isonet-pl refine"
    checkpoint = read_checkpoint(path, fix)
    try:
        weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
        theirs = checkpoint["hyper_parameters"]["net"]
    except Exception as exc:
        raise InputError(f"not an isonet-pl checkpoint ({exc.__class__.__name__})", path, fix) from None
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
