"""predict: correct the tomograms of a STAR file with a trained model, tile by tile, streamed to MRC."""

from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path

import torch

from isonet_pl.compute import dask_context, progress_bar
from isonet_pl.config import IOConfig, Method, PredictConfig
from isonet_pl.errors import InputError
from isonet_pl.evaluate import z_profile_correlation
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.paths import check_output_dir, check_readable_file, remove
from isonet_pl.io.star import CORRECTED_COLUMN, DECONV_COLUMN
from isonet_pl.io.zarr_store import (
    NonFiniteError,
    open_tomogram,
    write_tomogram,
)
from isonet_pl.model.batchnorm import batch_norms
from isonet_pl.model.card import check_tomogram, read_card
from isonet_pl.model.checkpoint import load_module
from isonet_pl.normalization import Normalization
from isonet_pl.predict.adapt import adapt_batch_norm
from isonet_pl.predict.predictor import fastest_precision, predict_tomogram, tile_plan
from isonet_pl.preprocess.spectral import EMPTY_SLICES, NoNoiseEstimate, power_ratio, refusals, wiener_denoise
from isonet_pl.project import Tomogram, check_writable, tomograms

logger = logging.getLogger(__name__)


def load_model(path: str | Path):
    """An IsoNetModule from one of our checkpoints, with a clear error for anything else."""
    path = check_readable_file(path, what="model checkpoint")
    module = load_module(path)
    bad = [name for name, value in module.state_dict().items()
           if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise InputError(f"the model's weights hold NaN or infinite values ({bad[0]}): its training diverged", path,
                         "use a checkpoint of an earlier iteration, or refine again with a lower --learning_rate")
    read_card(module, path)  # a clear error now rather than a KeyError later
    module.eval()
    return module


def _devices(cfg: PredictConfig) -> list[str]:
    """The torch devices that share the tiles: the GPUs of --gpuID (or the first visible), else the CPU."""
    if torch.cuda.is_available():
        ids = [int(g) for g in str(cfg.gpuID).replace(" ", "").split(",") if g] if cfg.gpuID else [0]
        if max(ids) >= torch.cuda.device_count():
            raise InputError(f"--gpuID {cfg.gpuID}: only {torch.cuda.device_count()} GPU(s) visible",
                             fix="choose existing GPU ids (see isonet-pl check)")
        return [f"cuda:{i}" for i in ids]
    logger.warning("no GPU: predicting on the CPU")
    return ["cpu"]


def predict(star_file: str | Path, model: str | Path, cfg: PredictConfig | None = None, io: IOConfig | None = None,
            tomo_idx: str | None = None, progress: bool = False) -> Path:
    """Correct each selected tomogram with ``model``; write ``<output_dir>/<name>_corrected.mrc``.

    The normalisation is the one the model was trained with (mode from the checkpoint,
    statistics of the whole tomogram), and the output is mapped back to the input's
    intensity scale and contrast. Sets ``_rlnCorrectedTomoName``. With even/odd halves the
    network can run on each half and average the two outputs (``cfg.halves``), and write the
    per-voxel disagreement of the two (``cfg.disagreement_map``).

    Returns
    -------
    Path
        The STAR file.
    """
    cfg = cfg or PredictConfig()
    io = io or IOConfig()
    module = load_model(model)
    card = read_card(module, model)
    percentile = card.normalize_percentile
    if card.normalization == "subtomogram":
        logger.warning("%s was trained on subtomograms normalised each on its own (a subtomo.star without tomogram "
                       "statistics, as IsoNet 0.2's); predict normalises each tomogram with its own statistics",
                       Path(model).name)
    if cfg.normalize_percentile is not None and cfg.normalize_percentile != percentile:
        logger.warning("the model was trained with normalize_percentile=%s; using that, not %s", percentile,
                       cfg.normalize_percentile)
    devices = _devices(cfg)
    precision = fastest_precision(module, devices[0]) if cfg.precision == "auto" else \
        card.settings.get("precision", "32") if cfg.precision in (None, "model") else cfg.precision
    cube, halo = tile_plan(module.net, devices[0], cfg.cube_size, cfg.crop_size)
    logger.info("tiles: core %d³ with %d voxels of context (the network's receptive radius is %d); precision %s%s",
                cube, halo, module.net.receptive_radius, precision,
                f"; each tile averaged over {cfg.flips} flips" if cfg.flips > 1 else "")
    table = read_tomogram_star(star_file)
    rows = tomograms(table, io, tomo_idx)
    check_writable(table, io)
    trained = copy.deepcopy(module.state_dict()) if batch_norms(module) else None
    out_dir = check_output_dir(cfg.output_dir, option="--output_dir")
    table.ensure_column(CORRECTED_COLUMN, "None")
    outputs = {tomo.row: _output_files(tomo, out_dir, cfg) for tomo in rows}  # before any work
    unfiltered: list[tuple[str, NoNoiseEstimate, float, bool]] = []
    for number, tomo in enumerate(rows, 1):
        column = tomo.source_column(cfg.use_deconv_tomo)
        source = tomo.path(column, required=True)
        t0 = time.perf_counter()
        store = tomo.store(column)
        check_tomogram(card, source.name, tomo.tilt_range, tomo.pixel_size or store.voxel_size[2])
        if min(store.shape) < 2 * module.net.min_input_multiple:
            raise InputError(f"tomogram {'x'.join(map(str, store.shape))} is smaller than one tile", source,
                             "predict on a larger tomogram")
        norm = Normalization.of_store(store, percentile)
        out_mrc = outputs[tomo.row]
        out_zarr = tomo.output_zarr(out_mrc)
        inputs = _inputs(tomo, column, store, cfg)
        _batch_norm_statistics(module, trained, tomo, column, store, inputs, cfg, norm, (cube, halo),
                               devices[0], precision)

        def run(arr, path, row=tomo.row, source=source, store=store, number=number, **extra):  # this row's values
            label = f"predict {source.name} ({number}/{len(rows)})"
            # two threads per network copy: one reads and normalises the next tile (and writes the last) while
            # the other runs the network (the copy's lock serialises the network calls)
            with dask_context(2 * len(devices)), progress_bar(progress, label):
                try:
                    write_tomogram(arr, path, store.voxel_size, store.origin, chunks=io.zarr_chunks,
                                   levels=io.zarr_levels, compression_level=io.compression_level,
                                   extra={"model": str(Path(model).resolve()), **extra}, require_finite=True)
                except NonFiniteError:
                    raise InputError(f"the prediction of row {row + 1} holds NaN or infinite values (nothing "
                                     "written)", model, "check the tomogram's values, or use another checkpoint "
                                     "(--precision 32 if it ran in 16-mixed)") from None

        predictions = [predict_tomogram(a, module, norm, chunk=cube, halo=halo, device=devices,
                                        precision=precision, flips=cfg.flips) for a in inputs]
        if len(predictions) == 1:
            run(predictions[0], out_zarr)
        elif not cfg.disagreement_map:  # each block predicts both halves and keeps the mean
            run((predictions[0] + predictions[1]) / 2, out_zarr, input="mean of the predictions of both halves")
        else:  # both predictions stored once, then combined lazily
            half_zarrs = [out_zarr.with_name(f"{out_zarr.stem}_half{k + 1}.zarr") for k in (0, 1)]
            for pred, path in zip(predictions, half_zarrs, strict=False):
                run(pred, path)
            a, b = (open_tomogram(p).dask() for p in half_zarrs)
            run((a + b) / 2, out_zarr, input="mean of the predictions of both halves")
            _write_disagreement(abs(a - b), out_mrc, tomo, run)
            for path in half_zarrs:
                remove(path)
        if cfg.denoise:
            n2n = card.method == Method.N2N
            refused = _denoise(out_zarr, tomo.tilt_range, source, run, NOISY_BACKGROUND if n2n else None,
                               reference=store.dask() if n2n else None, network_input=store.dask())
            if refused is not None:
                unfiltered.append((f"row {tomo.number}, {source.name}", *refused, column == DECONV_COLUMN))
        tomo.record_output(out_zarr, out_mrc, CORRECTED_COLUMN)
        logger.info("corrected %s -> %s in %.1f s", source.name, out_mrc, time.perf_counter() - t0)
    if unfiltered:  # once per command
        logger.warning("%s; or predict with --denoise false to silence this. %s",
                       refusals([u[:2] for u in unfiltered], len(rows), "corrected tomogram(s)"), _kept(unfiltered))
    return table.path


def _kept(unfiltered: list[tuple[str, NoNoiseEstimate, float, bool]]) -> str:
    """What the outputs kept as the network gave them are: their power above 0.25 cycles/voxel against their
    inputs' (noisier when above :data:`NOISIER`) and whether those inputs were deconvolved or filtered."""
    ratios = [u[2] for u in unfiltered]
    span = f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else f"{ratios[0]:.2f}"
    text = f"The network's output is kept as it is: it holds {span} of its input's power above 0.25 cycles/voxel " \
           "(the noise, where the specimen has little)"
    if max(ratios) > NOISIER:
        return text + ": NOISIER than the tomogram it corrected; look at both before using it"
    if all(u[3] for u in unfiltered):
        return text + ", no noisier than the tomogram it corrected, which deconv deconvolved or filtered"
    return text + ", no noisier than the tomogram it corrected, which was not filtered (deconv could not, or was " \
                  "not run): it is as noisy as a raw tomogram"


def _output_files(tomo: Tomogram, out_dir: Path, cfg: PredictConfig) -> Path:
    """The corrected tomogram's file (and the disagreement map's, checked), refused where they would replace a
    file the table names."""
    if cfg.disagreement_map:
        tomo.output_file(out_dir, f"{tomo.key}_disagreement.mrc", None, "--output_dir")
    return tomo.output_file(out_dir, f"{tomo.key}_corrected.mrc", CORRECTED_COLUMN, "--output_dir")


def _inputs(tomo: Tomogram, column: str, store, cfg: PredictConfig) -> list:
    """What the network runs on: the tomogram, or its two halves (see ``--halves``)."""
    if cfg.halves == "both" or cfg.disagreement_map:
        halves = tomo.half_arrays(column == DECONV_COLUMN, store.shape)
        if not halves:
            what = "deconvolved " if column == DECONV_COLUMN else ""
            raise InputError(f"row {tomo.number} has no {what}even/odd halves for --halves both / --disagreement_map",
                             tomo.table.path, "prepare_star --even/--odd (and deconv again), or drop those options")
        return halves
    return [store.zarr_array(0)]


def _batch_norm_statistics(module, trained: dict | None, tomo: Tomogram, column: str, store, inputs: list,
                           cfg: PredictConfig, norm: Normalization, plan: tuple[int, int], device: str,
                           precision: str) -> None:
    """Give ``module``'s batch norms the running statistics ``cfg.batch_norm_statistics`` asks for on this
    tomogram: the checkpoint's (``trained``, the module's state as loaded; restored first, so that every
    tomogram starts from them), or measured again through predict's tiles (``plan``) on its even/odd halves
    or on ``inputs`` (:func:`isonet_pl.predict.adapt.adapt_batch_norm`); logged."""
    if trained is None:  # the network has no batch norm
        return
    module.load_state_dict(trained)
    choice = cfg.batch_norm_statistics
    if choice == "model":
        logger.info("batch norms: the checkpoint's running statistics")
        return
    if choice == "input":
        sources, what = inputs, "the " + ("halves" if len(inputs) == 2 else "tomogram")
    else:
        sources = inputs if len(inputs) == 2 else tomo.half_arrays(column == DECONV_COLUMN, store.shape)
        what = "the even/odd halves"
        deconvolved = "deconvolved " if column == DECONV_COLUMN else ""
        if not sources:
            raise InputError(f"row {tomo.number} has no {deconvolved}even/odd halves for --batch_norm_statistics "
                             "halves", tomo.table.path, "prepare_star --even/--odd (and deconv again), or choose "
                             "--batch_norm_statistics model")
    t0 = time.perf_counter()
    module.to(device)
    n = adapt_batch_norm(module, sources, norm, *plan, device=device, precision=precision)
    logger.info("batch norms: running statistics measured on %s through %d of predict's tiles (%.1f s)", what, n,
                time.perf_counter() - t0)


#: ``empty_share`` of an n2n network's output above which predict warns: the good checkpoints of bench/RESULTS.md's
#: runs stay under 0.08, the ones that lost 0.08-0.1 overall in the background reach 0.15-0.18 (raw tomograms ~0.9).
NOISY_BACKGROUND = 0.1


#: The output's power over its input's above 0.25 cycles/voxel above which an output predict could not filter is
#: called noisier than its input: the single-tomogram networks of bench/RESULTS.md keep 0.91-0.92 of it (they
#: reproduce the input where it was measured), n2n networks far less.
NOISIER = 1.2


#: Correlation of the Z profiles of an n2n network's output and its input below which predict warns (checked where
#: the tomogram has empty slices, i.e. a slab with margins): bench/RESULTS.md's runs with the slab kept agree at
#: 0.87-0.97; two that bent or lost it (profile correlation with the truth 0.10 and 0.65) at 0.09 and 0.57.
SLAB_PROFILE = 0.7


def _denoise(out_zarr: Path, tilt_range: tuple[float, float], source: Path, run,
             warn_share: float | None = None, reference=None,
             network_input=None) -> tuple[NoNoiseEstimate, float] | None:
    """Replace the network's output in ``out_zarr`` by its Wiener-filtered version (noise measured on its own
    empty slices, else by the tilt-axis model of its specimen slices, :mod:`isonet_pl.preprocess.spectral`); leave
    it as it is when neither gives a reliable estimate, returning why and the output's power over that of
    ``network_input`` (the (nz, ny, nx) volume the network ran on, lazy) above 0.25 cycles/voxel
    (:func:`~isonet_pl.preprocess.spectral.power_ratio`; NaN without it); None when it was filtered.
    Warn when the share of the specimen's variance left in the output's empty slices exceeds ``warn_share`` (n2n
    models: the threshold was set on their runs; a short single-tomogram run such as the demo's keeps ~15 % without
    having collapsed), and when the Z profile of the output disagrees with that of ``reference`` (the (nz, ny, nx)
    input, lazy) by more than :data:`SLAB_PROFILE` allows (one more read of the input: the slice means, no copy in
    memory)."""
    network = out_zarr.with_name(f"{out_zarr.stem}_network.zarr")
    remove(network)
    os.replace(out_zarr, network)
    try:
        volume = open_tomogram(network).dask()
        try:
            filtered, estimate = wiener_denoise(volume, tilt_range, corrected=True)
        except NoNoiseEstimate as exc:
            ratio = power_ratio(volume, network_input, tilt_range) if network_input is not None else float("nan")
            logger.info("%s: not filtered (%s): the network's output is kept as it is; it holds %.2f of its input's "
                        "power above 0.25 cycles/voxel", source.name, exc, ratio)
            os.replace(network, out_zarr)
            return exc, ratio
        logger.info("%s: %s", source.name, estimate.describe())
        if warn_share is not None and estimate.source == EMPTY_SLICES and estimate.empty_share > warn_share:
            logger.warning("%s: the network's output keeps %.0f %% of the specimen's variance in the empty slices "
                           "above and below it (a model that denoises leaves them nearly flat: under 8 %% in our "
                           "runs): the model passes noise where there is no specimen; check the corrected tomogram, "
                           "and try an earlier refine checkpoint (model_iterNN.ckpt) if it looks noisier than the "
                           "input",
                           source.name, 100 * estimate.empty_share)
        if reference is not None:
            agreement = z_profile_correlation(volume, reference)
            if agreement < SLAB_PROFILE:
                logger.warning("%s: the Z profile of the network's output (the mean of each slice, the specimen's "
                               "slab) correlates only %.2f with the input's (0.87 or more in our runs that kept the "
                               "slab, warned under %.1f): the model bent or flattened the slab; check the corrected "
                               "tomogram's side views, and try an earlier refine checkpoint (model_iterNN.ckpt)",
                               source.name, agreement, SLAB_PROFILE)
        run(filtered, out_zarr, denoise=estimate.describe())
    finally:
        remove(network)
    return None


def _write_disagreement(diff, out_mrc: Path, tomo: Tomogram, run) -> Path:
    """Write |half1 − half2| of the predictions (lazy, shape (nz, ny, nx), the tomogram's units) as
    ``<name>_disagreement.mrc`` next to the corrected tomogram, with its Zarr copy."""
    path = out_mrc.with_name(out_mrc.name.replace("_corrected.mrc", "_disagreement.mrc"))
    zarr_path = tomo.output_zarr(path)
    run(diff, zarr_path, input="|difference| of the predictions of both halves")
    tomo.record_output(zarr_path, path, None)
    logger.info("disagreement map -> %s", path)
    return path
