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

import logging
import math
import signal
import threading
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from isonet_pl.config import Method, RefineConfig
from isonet_pl.data.pairs import noise_schedule
from isonet_pl.errors import InputError, Interrupted
from isonet_pl.heap import reused_heap
from isonet_pl.io.paths import check_output_dir
from isonet_pl.model.batchnorm import track_batch_norm
from isonet_pl.model.checkpoint import WEIGHTS_ONLY
from isonet_pl.training import callbacks, devices, estimates, progress, resume, setup, subtomograms

logger = logging.getLogger(__name__)


@reused_heap()
def refine(subtomo_star: str | Path, cfg: RefineConfig | None = None) -> Path:
    """Train the U-Net iteratively on the subtomograms of ``subtomo_star`` (IsoNet's refine).

    Returns
    -------
    Path
        The checkpoint of the last iteration.
    """
    with warnings.catch_warnings():
        for message in progress.SPURIOUS_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        return _refine(subtomo_star, cfg or RefineConfig())


def _refine(subtomo_star: str | Path, cfg: RefineConfig) -> Path:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from isonet_pl.data.datamodule import IsoNetDataModule, PairDataset, PairSettings

    done = 0
    if cfg.continue_from:
        overrides = {k: getattr(cfg, k) for k in resume.RESUME_SETTINGS if k in cfg.model_fields_set}
        overrides["continue_from"] = cfg.continue_from
        cfg, done = resume.resume_point(cfg)
        changed = {k: v for k, v in overrides.items() if k != "continue_from" and getattr(cfg, k) != v}
        cfg = cfg.model_copy(update=overrides)
        logger.info("resuming %s after iteration %d with its saved settings%s", cfg.result_dir, done,
                    "".join(f", {k} {v}" for k, v in changed.items()))
    if done >= cfg.iterations:
        logger.info("all %d iterations are done in %s", cfg.iterations, cfg.result_dir)
        return Path(cfg.result_dir) / f"model_iter{cfg.iterations:02d}.ckpt"
    if not cfg.continue_from and devices.launch_rank() == 0:  # other ranks start after rank 0 has begun writing
        resume.check_fresh_result_dir(Path(cfg.result_dir))
    result_dir = check_output_dir(cfg.result_dir, option="--result_dir")
    state = result_dir / resume.STATE
    state.mkdir(exist_ok=True)
    subs = subtomograms.load_subtomograms(subtomo_star, cfg.normalize_percentile)
    if subs.cube % 2**cfg.unet_depth:
        raise InputError(f"cube_size {subs.cube} is not divisible by 2^unet_depth = {2 ** cfg.unet_depth}",
                         subtomo_star, "extract with another --cube_size or lower --unet_depth")
    if subs.crop < subs.cube:
        raise InputError(f"crop size {subs.crop} is smaller than cube size {subs.cube}", subtomo_star,
                         "extract again with crop_size >= cube_size")
    if cfg.rotations == "continuous" and subs.crop < math.ceil(math.sqrt(3) * subs.cube):
        logger.warning("--rotations continuous: the corners of each rotated %d³ cube reach beyond the %d³ subtomograms "
                       "and are mirrored there; extract with --crop_size %d or more to avoid that", subs.cube,
                       subs.crop, math.ceil(math.sqrt(3) * subs.cube))
    dev = devices.resolve_devices(cfg)
    cfg = setup.with_precision(cfg, subs, dev["accelerator"])
    resolved = setup.resolve(cfg, subs, dev["count"])
    method, batch, steps, workers = resolved.method, resolved.batch_size, resolved.steps_per_epoch, \
        resolved.preprocessing_ncpus
    renormalize, decay, recalibrate = resolved.fill_normalization == "subtomogram", resolved.ema_decay, \
        resolved.recalibrate_bn
    logger.info("refine: %d subtomograms (cube %d, crop %d), %d iterations x %d epochs, precision %s; %s",
                len(subs.data), subs.cube, subs.crop, cfg.iterations, cfg.epochs, cfg.precision, resolved.describe())
    train_idx, val_idx = subtomograms.split(len(subs.data), cfg.val_fraction, cfg.seed)
    schedule = noise_schedule(cfg.iterations, cfg.noise_level, cfg.noise_start_iter)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    rank, _ = devices.dist_info()
    if rank == 0:
        resume.save_json(state / "settings.json", cfg.model_dump(mode="json"))

    module, current, previous = resume.starting_point(cfg, subs, result_dir, done, method, batch, renormalize)
    module.schedule_steps = cfg.iterations * cfg.epochs * steps  # the learning-rate schedule's length
    if recalibrate:  # running statistics that follow training, for the validation between epochs
        track_batch_norm(module)
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
            if method != Method.N2N or (it - 1) % cfg.refill_every == 0 or it == done + 1:
                filled = estimates.filled_volumes(subs, current, method, renormalize)
            noise = 0.0 if method == Method.N2N else float(schedule[it])  # n2n: the other half is the noise model
            pairs = PairSettings(subs.cube, noise, cfg.noise_mode, cfg.wedge_target, cfg.rotations,
                                 resolved.max_shift, resolved.input_noise)
            dm = IsoNetDataModule(filled, subs.tilt_ranges, active, val_idx, pairs, batch // dev["count"], steps,
                                  workers, (cfg.seed, it))
            epoch_ckpt = ModelCheckpoint(dirpath=state, filename="epoch", save_last=False, save_top_k=1,
                                         monitor=None, every_n_epochs=1, enable_version_counter=False,
                                         save_on_train_epoch_end=True)
            ema = callbacks.ema_callback(decay) if decay else None
            trainer = pl.Trainer(max_epochs=it * cfg.epochs, accelerator=dev["accelerator"], devices=dev["devices"],
                                 strategy=dev["strategy"], num_nodes=cfg.num_nodes, precision=cfg.precision,
                                 logger=progress.loggers(result_dir, it),
                                 callbacks=[callbacks.finite_guard(it, cfg.epochs), epoch_ckpt,
                                            callbacks.epoch_seed_callback(cfg.seed),
                                            progress.progress_bar(it, cfg.iterations, cfg.epochs)]
                                 + ([ema] if ema else []),
                                 num_sanity_val_steps=0,
                                 log_every_n_steps=max(1, min(50, steps)), enable_model_summary=False,
                                 default_root_dir=result_dir, deterministic=False)
            resume_from = resume.epoch_checkpoint(state, it, cfg.epochs) or previous
            try:
                trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=WEIGHTS_ONLY)
            except SystemExit:  # Lightning ends a Ctrl-C with exit(1)
                if not trainer.interrupted:
                    raise
            if trainer.interrupted:  # stop here, resumable from the last epoch checkpoint
                if threading.current_thread() is threading.main_thread():  # Lightning left Ctrl-C ignored
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                raise Interrupted(progress.resume_hint(it, subtomo_star, result_dir))
            losses = progress.epoch_losses(result_dir / "logs" / f"iter{it:02d}" / "metrics.csv", it, cfg.epochs)
            if recalibrate:  # the statistics of the weights that refill, are saved and predict
                samples = PairDataset(filled, subs.tilt_ranges, active, callbacks.BN_SAMPLES, pairs, (cfg.seed, it, 2))
                callbacks.recalibrate_batch_norm(module, samples, batch, device, cfg.precision)
                if ema:
                    ema.take_buffers(module)
            callbacks.check_finite(module, it)  # never saved otherwise: predict and a resume would take it
            ckpt = result_dir / f"model_iter{it:02d}.ckpt"
            trainer.save_checkpoint(ckpt)  # every rank calls it; Lightning writes from rank 0 only
            if it < cfg.iterations:  # the next iteration refills with them (a resume predicts them if needed)
                current = estimates.predict_all(module, estimates.originals(subs, method), batch, device,
                                                cfg.precision, renormalize)
            if trainer.is_global_zero:
                if it < cfg.iterations:
                    np.save(state / f".estimates_iter{it:02d}.npy", current)
                    (state / f".estimates_iter{it:02d}.npy").replace(state / f"estimates_iter{it:02d}.npy")
                resume.save_json(result_dir / f"refine_iter{it:02d}.json", {
                    "iteration": it, "settings": cfg.model_dump(mode="json"), "resolved": asdict(resolved),
                    "losses": losses["train"],
                    "val_losses": losses["val"], "noise_level": float(schedule[it]), "batch_size": batch,
                    "steps_per_epoch": steps, "n_subtomograms": len(subs.data), "cube_size": subs.cube,
                    "crop_size": subs.crop, "seconds": time.perf_counter() - t0})
                resume.cleanup(state, it, cfg.remove_intermediate)
                progress.plot_losses(result_dir)
            previous = ckpt
            spent.append(time.perf_counter() - t0)
            left = (cfg.iterations - it) * float(np.mean(spent))
            logger.info("iteration %d/%d: loss %.4f, validation loss %.4f, noise %.2f, %.0f s%s", it, cfg.iterations,
                        losses["train"][-1] if losses["train"] else math.nan,
                        losses["val"][-1] if losses["val"] else math.nan, schedule[it], spent[-1],
                        f"; about {progress.duration(left)} left" if it < cfg.iterations else "")
    except Interrupted:
        raise
    except KeyboardInterrupt:  # between the fits: refilling, predicting, saving
        raise Interrupted(progress.resume_hint(it, subtomo_star, result_dir)) from None
    logger.info("refine done: the model is %s; next: %s", previous, progress.next_step(subtomo_star, previous))
    return previous
