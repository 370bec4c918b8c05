"""refine end to end on tiny data: outputs, exact resume, IsoNet's subtomo.star, devices, bad input."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from isonet_pl.config import RefineConfig
from isonet_pl.errors import InputError
from isonet_pl.io.mrc import read_mrc, write_mrc

TINY = dict(iterations=2, epochs=2, steps_per_epoch=3, batch_size=2, filter_base=4, unet_depth=2,
            convs_per_depth=1, preprocessing_ncpus=0, noise_start_iter=(2,), noise_level=(0.1,))


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_refine_writes_checkpoints_settings_losses(subtomo_star, tmp_path):
    """Each iteration leaves model_iterNN.ckpt and refine_iterNN.json; the checkpoint carries its settings."""
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.workflows.refine import refine

    last = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), **TINY))
    for it in (1, 2):
        payload = json.loads((tmp_path / "r" / f"refine_iter{it:02d}.json").read_text())
        assert len(payload["losses"]) == 2 and np.isfinite(payload["losses"]).all()
        assert payload["settings"]["filter_base"] == 4 and payload["iteration"] == it
        assert payload["settings"]["residual"] is None  # unset in the settings, resolved beside them:
        assert payload["resolved"] == {"method": "isonet", "batch_size": 2, "steps_per_epoch": 3, "residual": True,
                                       "drop_out": 0.3, "learning_rate": 4e-4, "lr_schedule": "constant",
                                       "ema_decay": 0.0,
                                       "fill_normalization": "subtomogram", "recalibrate_bn": False,
                                       "preprocessing_ncpus": 0, "max_shift": 0, "input_noise": 1.0}
    model = IsoNetModule.load_from_checkpoint(last, map_location="cpu")
    assert model.meta["cube_size"] == 16 and model.meta["crop_size"] == 24
    assert model.meta["normalization"] == "tomogram" and model.meta["normalize_percentile"] is True
    svg = (tmp_path / "r" / "losses.svg").read_text()
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)  # well-formed; axes labels, legend, both curves, one iteration boundary
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "loss" in texts and "training" in texts and "validation" in texts and any("epoch" in t for t in texts)
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert svg.count('stroke-dasharray="3,3"') == 1


@pytest.mark.parametrize(("ema", "schedule", "workers", "rotations"), [(0.0, "constant", 0, "cube"),
                                                                     (0.5, "cosine", 0, "cube"),
                                                                     (0.0, "constant", 1, "continuous")])
def test_continue_from_resumes_exactly(subtomo_star, tmp_path, monkeypatch, caplog, ema, schedule, workers, rotations):
    """A run killed during iteration 2 and resumed ends with the weights of an uninterrupted run (also with
    --ema_decay, whose checkpoints hold the averaged weights, a cosine learning rate, which must
    continue from the step it reached, and a DataLoader worker that persists across the epochs, drawing
    continuous rotations)."""
    import pytorch_lightning as pl

    refine_module = importlib.import_module("isonet_pl.workflows.refine")

    tiny = dict(TINY, ema_decay=ema, lr_schedule=schedule, preprocessing_ncpus=workers, rotations=rotations)
    full = refine_module.refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "a"), **tiny))
    # crop 24 < 1.74 x cube 16: continuous rotations' corners leave the subtomograms, which refine says
    assert ("extract with --crop_size 28 or more" in caplog.text) == (rotations == "continuous")
    rates = [_epoch_column(tmp_path / "a" / "logs" / f"iter{it:02d}" / "metrics.csv", "lr") for it in (1, 2)]
    if schedule == "constant":
        assert rates == [[pytest.approx(4e-4)] * 2] * 2
    else:  # 2 iterations x 2 epochs x 3 steps: the epoch means of a cosine from 4e-4 to 2e-5, falling
        flat = [r for epoch in rates for r in epoch]
        assert flat == sorted(flat, reverse=True) and flat[0] < 4e-4 and flat[-1] > 2e-5 and flat[0] > 4 * flat[-1]
    assert ("averaging_state" in torch.load(full, map_location="cpu", weights_only=False)) == bool(ema)
    original = refine_module.callbacks.epoch_seed_callback

    def killing(seed):
        inner = original(seed)

        class Kill(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == 3:  # after the first epoch of iteration 2 was saved
                    raise KeyboardInterrupt

            def on_train_batch_start(self, *args):
                inner.on_train_batch_start(*args)

        return Kill()

    monkeypatch.setattr(refine_module.callbacks, "epoch_seed_callback", killing)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns Ctrl-C into exit(1)
        refine_module.refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "b"), **tiny))
    assert not (tmp_path / "b" / "model_iter02.ckpt").exists()
    monkeypatch.setattr(refine_module.callbacks, "epoch_seed_callback", original)
    resumed = refine_module.refine(subtomo_star, RefineConfig(continue_from=str(tmp_path / "b"), filter_base=8))
    a, b = _weights(full), _weights(resumed)  # the saved settings win: filter_base stays 4
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def _epoch_column(metrics_csv, column):
    """The non-empty values of ``column`` in a Lightning metrics.csv, in order."""
    import csv

    with open(metrics_csv) as f:
        return [float(row[column]) for row in csv.DictReader(f) if row.get(column)]


def test_continue_from_extends_a_finished_run(subtomo_star, tmp_path):
    """--continue_from with --iterations extends a finished run to the weights of a longer run; without
    --iterations a finished run returns its last checkpoint; the CLI marks only given options."""
    from isonet_pl.config import with_overrides
    from isonet_pl.workflows.refine import refine

    longer = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "a"), **TINY))
    short = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "b"), **dict(TINY, iterations=1)))
    assert refine(subtomo_star, with_overrides(RefineConfig(), {"continue_from": str(tmp_path / "b")})) == short
    cli_cfg = with_overrides(RefineConfig(), {"continue_from": str(tmp_path / "b"), "iterations": 2,
                                              "epochs": None})
    assert cli_cfg.model_fields_set == {"continue_from", "iterations"}
    extended = refine(subtomo_star, cli_cfg)
    assert extended == tmp_path / "b" / "model_iter02.ckpt"
    assert json.loads((tmp_path / "b" / "refine_iter02.json").read_text())["settings"]["iterations"] == 2
    a, b = _weights(longer), _weights(extended)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_isonet_subtomo_star_is_accepted(reference, tmp_path, caplog):
    """IsoNet's own subtomo.star trains (each subtomogram normalised on its own, with a warning)."""
    from isonet_pl.workflows.refine import refine

    cfg = dict(TINY, iterations=1, epochs=1, unet_depth=2)
    refine(reference / "isonet_project" / "subtomo.star", RefineConfig(result_dir=str(tmp_path / "r"), **cfg))
    assert (tmp_path / "r" / "model_iter01.ckpt").exists()
    assert "normalised on its own" in caplog.text


@pytest.mark.parametrize("change,word", [({"unet_depth": 5}, "divisible by 2.unet_depth"),
                                         ({"devices": 2, "accelerator": "cpu", "batch_size": 3}, "divisible")])
def test_bad_settings(subtomo_star, tmp_path, change, word):
    """cube not divisible by 2^depth, batch not divisible by the device count: clear errors."""
    from isonet_pl.workflows.refine import refine

    with pytest.raises(InputError, match=word):
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), **{**TINY, **change}))


def test_noise_lists_of_different_lengths():
    """noise_level and noise_start_iter must pair up."""
    from isonet_pl.config import with_overrides

    with pytest.raises(InputError, match="same length"):
        with_overrides(RefineConfig(), {"noise_level": "0.1,0.2", "noise_start_iter": "5"})


def test_missing_and_nan_subtomograms(subtomo_star, tmp_path):
    """A missing subtomogram file or NaN voxels are clear errors naming the file."""
    import shutil

    from isonet_pl.training.subtomograms import load_subtomograms

    folder = Path(subtomo_star).parent
    copy = tmp_path / "copy"
    shutil.copytree(folder / "subtomo", copy / "subtomo")
    shutil.copy(subtomo_star, copy / "subtomo.star")
    vol, _ = read_mrc(copy / "subtomo" / "sim_00_000003.mrc")
    vol[0, 0, 0] = np.nan
    write_mrc(copy / "subtomo" / "sim_00_000003.mrc", vol)
    with pytest.raises(InputError, match="sim_00_000003.mrc"):
        load_subtomograms(copy / "subtomo.star")
    (copy / "subtomo" / "sim_00_000003.mrc").unlink()
    with pytest.raises(InputError, match="missing file"):
        load_subtomograms(copy / "subtomo.star")


def test_corrupt_checkpoint_for_continue_from(subtomo_star, tmp_path):
    """continue_from with a damaged JSON is a clear error."""
    from isonet_pl.workflows.refine import refine

    (tmp_path / "refine_iter01.json").write_text("{not json")
    with pytest.raises(InputError, match="refine_iter01.json"):
        refine(subtomo_star, RefineConfig(continue_from=str(tmp_path / "refine_iter01.json")))


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(subtomo_star, tmp_path):
    """Lightning DDP (gloo) on 2 CPU processes trains (pairs from a persistent DataLoader worker per rank, keys
    sharded by Lightning's sampler wrapper), predicts split across ranks and writes once (after iteration 1; none
    after the last)."""
    exe = Path(sys.executable).with_name("isonet-pl")
    args = [exe, "refine", subtomo_star, "--result_dir", tmp_path / "ddp", "--accelerator", "cpu", "--devices", "2",
            "--iterations", "2", "--epochs", "1", "--steps_per_epoch", "2", "--batch_size", "4", "--filter_base", "4",
            "--unet_depth", "2", "--convs_per_depth", "1", "--preprocessing_ncpus", "1"]
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads((tmp_path / "ddp" / "refine_iter01.json").read_text())
    assert np.isfinite(payload["losses"]).all()
    estimates = np.load(tmp_path / "ddp" / "state" / "estimates_iter01.npy")
    assert estimates.shape == (12, 24, 24, 24) and np.isfinite(estimates).all()
    assert not (tmp_path / "ddp" / "state" / "estimates_iter02.npy").exists()


def test_n2n_refine_on_even_odd_halves(n2n_model):
    """Subtomograms with halves train in n2n mode (auto): checkpoint says so, estimates exist per half (after
    iteration 1: the last iteration predicts nothing)."""
    from isonet_pl.model.module import IsoNetModule

    _, ckpt, result_dir = n2n_model
    model = IsoNetModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert model.meta["method"] == "n2n" and model.meta["mw_weight"] == 2.0
    assert model.hparams["frequency_power"] == 0.5  # --frequency_power reaches the loss and its checkpoint
    assert not model.net.residual  # --residual false reaches the network and its checkpoint
    assert model.meta["settings"]["wedge_target"] == "average"
    estimates = np.load(result_dir / "state" / "estimates_iter01.npy")
    assert estimates.shape == (8, 2, 24, 24, 24) and np.isfinite(estimates).all()
    assert not (result_dir / "state" / "estimates_iter02.npy").exists()
    payload = json.loads((result_dir / "refine_iter02.json").read_text())
    assert np.isfinite(payload["losses"]).all()


def test_n2n_without_halves_is_an_error(subtomo_star, tmp_path):
    """--method n2n on subtomograms without halves names the fix."""
    from isonet_pl.workflows.refine import refine

    with pytest.raises(InputError, match="needs even/odd half"):
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), method="n2n", **TINY))


def test_fill_normalization_keeps_tomogram_units(subtomo_star, tmp_path):
    """fill_normalization=tomogram: the first estimates are the data's measured region in the tomogram's units
    (IsoNet's mode renormalises each one), and refine runs with it."""
    from isonet_pl.data.pairs import wedge_mask
    from isonet_pl.data.wedge import apply_wedge
    from isonet_pl.normalization import rescale
    from isonet_pl.training.estimates import first_estimates
    from isonet_pl.training.subtomograms import load_subtomograms
    from isonet_pl.workflows.refine import refine

    subs = load_subtomograms(subtomo_star)
    mask = wedge_mask(subs.crop, *subs.tilt_ranges[0])
    kept = first_estimates(subs, renormalize=False)
    np.testing.assert_allclose(kept[0], apply_wedge(subs.data[0], mask), atol=1e-6)
    np.testing.assert_allclose(first_estimates(subs)[0], rescale(kept[0]), atol=1e-5)
    last = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), fill_normalization="tomogram", **TINY))
    assert last.exists()


def test_method_dependent_defaults(subtomo_star, n2n_model, caplog):
    """Unset --residual / --fill_normalization auto / unset --ema_decay / --learning_rate / --drop_out: IsoNet's
    choices for isonet, the measured ones for n2n."""
    from isonet_pl.training.setup import (
        build_module,
        dropout,
        ema_decay,
        learning_rate,
        method_of,
        renormalizes,
        uses_residual,
    )
    from isonet_pl.training.subtomograms import load_subtomograms

    single = load_subtomograms(subtomo_star)
    halves = load_subtomograms(n2n_model[2].parent / "st.star")
    cfg = RefineConfig()
    assert (method_of(cfg, single), method_of(cfg, halves)) == ("isonet", "n2n")
    assert uses_residual(cfg, "isonet") and not uses_residual(cfg, "n2n")
    assert renormalizes(cfg, "isonet", single) and not renormalizes(cfg, "n2n", halves)
    assert build_module(cfg, single).net.residual and not build_module(cfg, halves).net.residual
    assert (ema_decay(cfg, "isonet"), ema_decay(cfg, "n2n")) == (0.0, 0.99)
    assert (learning_rate(cfg, "isonet"), learning_rate(cfg, "n2n")) == (4e-4, 1e-3)
    assert build_module(cfg, halves).hparams["learning_rate"] == 1e-3
    assert (dropout(cfg, "isonet"), dropout(cfg, "n2n")) == (0.3, 0.0)
    assert (build_module(cfg, single).hparams["net"]["dropout"], build_module(cfg, halves).hparams["net"]["dropout"]) \
        == (0.3, 0.0)
    assert dropout(RefineConfig(drop_out=0.1), "n2n") == dropout(RefineConfig(drop_out=0.1), "isonet") == 0.1
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError):
            RefineConfig(drop_out=bad)
    explicit = RefineConfig(residual=True, fill_normalization="subtomogram", ema_decay=0, learning_rate=2e-4)
    assert learning_rate(explicit, "n2n") == learning_rate(explicit, "isonet") == 2e-4
    assert uses_residual(explicit, "n2n") and renormalizes(explicit, "n2n", halves)
    assert ema_decay(explicit, "n2n") == 0.0
    assert "averaging_state" in torch.load(n2n_model[1], map_location="cpu", weights_only=False)  # EMA ran in n2n
    from isonet_pl.training.setup import max_shift

    assert (max_shift(cfg, "isonet", single), max_shift(cfg, "n2n", halves)) == (0, 0)
    assert (max_shift(RefineConfig(max_shift=1), "n2n", halves), max_shift(RefineConfig(max_shift=1), "isonet",
                                                                            single)) == (1, 0)
    assert "--max_shift 1 applies to --method n2n only" in caplog.text  # ignored for isonet, not silently
    with pytest.raises(InputError, match="--max_shift"):
        max_shift(RefineConfig(max_shift=(halves.crop - halves.cube) // 2 + 1), "n2n", halves)
    from isonet_pl.training.setup import input_noise

    assert (input_noise(cfg, "n2n"), input_noise(RefineConfig(input_noise=0.8), "n2n")) == (0.6, 0.8)
    assert (input_noise(cfg, "isonet"), input_noise(RefineConfig(input_noise=0.8), "isonet")) == (1.0, 1.0)
    assert "--input_noise 0.8 applies to --method n2n only" in caplog.text
    for bad in (0.5, 1.2, float("nan")):
        with pytest.raises(ValueError):
            RefineConfig(input_noise=bad)
    from isonet_pl.training.setup import frequency_power

    assert (frequency_power(RefineConfig(frequency_power=1), "n2n"), frequency_power(cfg, "n2n")) == (1.0, 0.0)
    assert frequency_power(RefineConfig(frequency_power=1), "isonet") == 0.0  # IsoNet's MAE has no spectrum
    assert "--frequency_power 1 applies to --method n2n only" in caplog.text
    for bad in (-0.5, 2.5, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            RefineConfig(frequency_power=bad)


def test_a_run_saved_before_a_setting_existed_resumes_as_it_began(tmp_path):
    """Saved settings without a later option (max_shift) resume with the value those runs used (0), whatever
    the default becomes; saved settings that have it keep theirs."""
    import json

    from isonet_pl.training.resume import saved_run

    settings = RefineConfig(result_dir=str(tmp_path), max_shift=2).model_dump(mode="json")
    old = {k: v for k, v in settings.items() if k != "max_shift"}
    (tmp_path / "refine_iter01.json").write_text(json.dumps({"iteration": 1, "settings": old}))
    assert saved_run(RefineConfig(continue_from=str(tmp_path)))[0].max_shift == 0
    old.pop("input_noise")
    (tmp_path / "refine_iter01.json").write_text(json.dumps({"iteration": 1, "settings": old}))
    assert saved_run(RefineConfig(continue_from=str(tmp_path)))[0].input_noise == 1.0  # the halves, as then
    (tmp_path / "refine_iter02.json").write_text(json.dumps({"iteration": 2, "settings": settings}))
    assert saved_run(RefineConfig(continue_from=str(tmp_path)))[0].max_shift == 2



ONE = dict(TINY, iterations=1, epochs=1, steps_per_epoch=2)


def test_refine_refuses_a_folder_with_another_run(subtomo_star, tmp_path):
    """refine into a result folder that holds another run is refused (it silently mixed two runs)."""
    from isonet_pl.workflows.refine import refine

    refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), **ONE))
    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    with pytest.raises(InputError, match="holds another refine run.*--continue_from"):
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), **dict(ONE, filter_base=8)))
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before


def test_continue_from_resumes_in_the_folder_given(subtomo_star, tmp_path):
    """A copied (or renamed) run folder resumes in place: the original is untouched, the copy is extended."""
    import shutil

    from isonet_pl.workflows.refine import refine

    refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "orig"), **ONE))
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    shutil.move(tmp_path / "orig", tmp_path / "moved")
    last = refine(subtomo_star, RefineConfig(continue_from=str(tmp_path / "copy"), iterations=2))
    assert last == tmp_path / "copy" / "model_iter02.ckpt" and last.exists()
    assert not (tmp_path / "orig").exists() and not (tmp_path / "moved" / "model_iter02.ckpt").exists()
    payload = json.loads((tmp_path / "copy" / "refine_iter02.json").read_text())
    assert payload["settings"]["result_dir"] == str(tmp_path / "copy")
    with pytest.raises(InputError, match="does not exist"):
        refine(subtomo_star, RefineConfig(continue_from=str(tmp_path / "orig")))


def test_pretrained_model_keeps_the_new_runs_settings(subtomo_star, tmp_path):
    """--pretrained_model takes only the weights: the new run's settings and metadata stay, the source is
    recorded, and a network of another shape is a clear error."""
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.workflows.refine import refine

    first = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "a"), **ONE))
    second = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "b"), pretrained_model=str(first),
                                               **dict(ONE, learning_rate=1e-4, seed=3)))
    model = IsoNetModule.load_from_checkpoint(second, map_location="cpu")
    assert model.meta["pretrained_model"] == str(first.resolve())
    assert model.meta["settings"]["learning_rate"] == 1e-4 and model.meta["settings"]["seed"] == 3
    with pytest.raises(InputError, match=r"network differs from this run's \(.*filter_base 4 vs 8"):
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "c"), pretrained_model=str(first),
                                          **dict(ONE, filter_base=8)))


def test_nan_loss_stops_refine_with_a_clear_error(subtomo_star, tmp_path, monkeypatch):
    """A training loss that becomes NaN stops refine at once, naming the iteration and the likely cause;
    no checkpoint of the diverged iteration is written."""
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.training.callbacks import TrainingDiverged
    from isonet_pl.workflows.refine import refine

    original = IsoNetModule.compute_loss

    def diverging(self, pred, batch):
        loss = original(self, pred, batch)
        return loss * float("nan") if self.current_epoch >= 1 else loss

    monkeypatch.setattr(IsoNetModule, "compute_loss", diverging)
    with pytest.raises(TrainingDiverged, match="iteration 2, epoch 1/1.*training loss is nan.*--learning_rate"):
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), **dict(ONE, iterations=2)))
    assert (tmp_path / "r" / "model_iter01.ckpt").exists() and not (tmp_path / "r" / "model_iter02.ckpt").exists()


def test_val_fraction_that_leaves_no_training_data(subtomo_star, tmp_path):
    """--val_fraction close to 1 is a clear error, not a crash."""
    from isonet_pl.workflows.refine import refine

    with pytest.raises(InputError, match="val_fraction 0.99 holds out all 12"):
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), **dict(ONE, val_fraction=0.99)))


def test_ctrl_c_ends_refine_with_the_resume_command(subtomo_star, tmp_path):
    """SIGINT during refine exits 130 with the command that resumes it (Lightning's exit(1) ended it silently)."""
    import os
    import signal
    import time

    exe = Path(sys.executable).with_name("isonet-pl")
    args = [exe, "refine", subtomo_star, "--result_dir", tmp_path / "r", "--iterations", "50", "--epochs", "2",
            "--steps_per_epoch", "3", "--batch_size", "2", "--filter_base", "4", "--unet_depth", "2",
            "--convs_per_depth", "1", "--preprocessing_ncpus", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal
    try:
        for _ in range(600):
            if (tmp_path / "r" / "model_iter01.ckpt").exists():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert f"Resume with: isonet-pl refine {subtomo_star} --continue_from {tmp_path / 'r'}" in err
    assert err.rstrip().splitlines()[-1].startswith("Interrupted; during iteration")


def test_tracking_batch_norm_changes_the_validation_only(n2n_model, tmp_path, monkeypatch):
    """With --recalibrate_bn (n2n's default) the batch norms' running statistics follow training at momentum
    0.1 between recalibrations: the validation losses between epochs change, the saved weights and
    statistics do not (training uses batch statistics, and the recalibration replaces the running ones)."""
    refine_module = importlib.import_module("isonet_pl.workflows.refine")

    _, ckpt, result = n2n_model
    settings = json.loads((result / "refine_iter02.json").read_text())["settings"]
    star = result.parent / "st.star"
    monkeypatch.setattr(refine_module, "track_batch_norm", lambda module: None)
    keras = refine_module.refine(star, RefineConfig(**dict(settings, result_dir=str(tmp_path / "keras"))))
    a, b = _weights(ckpt), _weights(keras)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    val = [json.loads((d / "refine_iter02.json").read_text())["val_losses"] for d in (result, tmp_path / "keras")]
    assert val[0] != val[1]


def test_training_precision_auto_is_resolved_and_saved(subtomo_star, tmp_path, caplog):
    """--precision auto trains in the faster of float32 and bf16 for this network and device; the choice is
    logged and saved (settings, model card), so a resume and predict's --precision model use it."""
    import logging

    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.workflows.refine import refine

    with caplog.at_level(logging.INFO):
        ckpt = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), precision="auto", **TINY))
    chosen = json.loads((tmp_path / "r" / "refine_iter01.json").read_text())["settings"]["precision"]
    assert chosen in ("32", "bf16-mixed") and f"training precision auto: {chosen}" in caplog.text
    model = IsoNetModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert model.meta["settings"]["precision"] == chosen
