"""predict end to end: a refined model corrects a tomogram; bad model files are clear errors."""

from __future__ import annotations

import importlib

import dask.array as da
import numpy as np
import pytest
import torch

from isonet_pl.config import IOConfig, PredictConfig, RefineConfig
from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.mrc import read_mrc
from isonet_pl.normalization import Normalization

UNIT = Normalization.unit()  # N(x) = -x

IO = IOConfig(zarr_chunks=(32, 32, 32), zarr_levels=1)


def test_predict_writes_corrected_tomogram_with_header(subtomo_star, tmp_path):
    """A tiny refined model corrects the simulated tomogram: same shape, voxel size, finite, STAR column set."""
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.refine import refine

    torch.set_num_threads(1)
    ckpt = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), iterations=1, epochs=1,
                                             steps_per_epoch=2, batch_size=2, filter_base=4, unet_depth=2,
                                             convs_per_depth=1, preprocessing_ncpus=0))
    star = subtomo_star.parent / "sim" / "tomograms.star"
    predict(star, ckpt, PredictConfig(output_dir=str(tmp_path / "out"), crop_size=32, use_deconv_tomo=False), IO)
    out, info = read_mrc(tmp_path / "out" / "sim_00_corrected.mrc")
    raw, raw_info = read_mrc(subtomo_star.parent / "sim" / "tomos" / "sim_00.mrc")
    assert out.shape == raw.shape and info.voxel_size == raw_info.voxel_size and np.isfinite(out).all()
    assert np.corrcoef(out.ravel(), raw.ravel())[0, 1] > 0.1  # same contrast convention as the input
    table = read_tomogram_star(star)
    assert table.get_path(0, "rlnCorrectedTomoName").resolve() == (tmp_path / "out" / "sim_00_corrected.mrc")


def test_missing_or_bad_model(subtomo_star, tmp_path):
    """A missing model and a file that is not a checkpoint are one-line errors naming the file."""
    from isonet_pl.workflows.predict import load_model

    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "nope.ckpt")
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    with pytest.raises(InputError, match="bad.ckpt"):
        load_model(tmp_path / "bad.ckpt")


def test_tiles_come_from_the_network_not_the_training_cube():
    """The tile core is large by default (not the training cube: 8-27x the work), the context a quarter of the
    receptive radius, both on the network's input multiple; given sizes are honoured (rounded up)."""
    from isonet_pl.model.unet import UNet3D
    from isonet_pl.predict import predictor
    from isonet_pl.predict.predictor import tile_plan

    net = UNet3D(depth=3, base_channels=4, convs_per_level=2)
    assert net.receptive_radius == (2 * 2 + 2) * (1 + 2 + 4) + 1 * 8 == 50
    core, halo = tile_plan(net, "cpu")
    assert halo == 16 and core % 8 == 0 and 64 <= core <= 512
    assert (core + 2 * halo) ** 3 * 33 * 4 <= predictor.TILE_MEMORY["cpu"] < (core + 8 + 2 * halo) ** 3 * 33 * 4
    assert tile_plan(UNet3D(depth=3, base_channels=64), "cpu")[0] < core  # a wider network gets smaller tiles
    assert tile_plan(net, "cpu", cube_size=30, crop_size=70) == (32, 24)
    assert tile_plan(net, "cpu", crop_size=96) == (64, 16)  # IsoNet's tile edge alone


def test_tiled_prediction_equals_one_whole_forward_with_the_full_receptive_field():
    """With a halo of the whole receptive radius, tiles stitch to exactly the whole-volume forward away from
    the volume's edges (float32 tolerance), which checks receptive_radius."""
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.predict.predictor import predict_block, predict_tomogram

    torch.manual_seed(0)
    module = IsoNetModule(net={"depth": 2, "base_channels": 4, "convs_per_level": 1, "dropout": 0.0,
                               "residual": False, "batch_norm": False}).eval()
    r = module.net.receptive_radius
    assert r == 16
    vol = np.random.default_rng(0).normal(size=(40, 48, 48)).astype(np.float32)
    whole = predict_block(vol, module, UNIT)
    tiled = predict_tomogram(vol, module, UNIT, chunk=16, halo=r).compute(scheduler="synchronous")
    inner = (slice(r, -r),) * 3
    np.testing.assert_allclose(tiled[inner], whole[inner], rtol=0, atol=1e-5 * np.abs(whole).max())
    short = predict_tomogram(vol, module, UNIT, chunk=16, halo=4).compute(scheduler="synchronous")
    assert np.abs(short[inner] - whole[inner]).max() > 1e-4 * np.abs(whole).max()  # too little context shows


def test_pretrained_model_starts_refine(subtomo_star, tmp_path):
    """--pretrained_model takes one of our checkpoints and trains on from it."""
    from isonet_pl.workflows.refine import refine

    small = dict(iterations=1, epochs=1, steps_per_epoch=2, batch_size=2, filter_base=4, unet_depth=2,
                 convs_per_depth=1, preprocessing_ncpus=0)
    first = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "a"), **small))
    second = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "b"), pretrained_model=str(first), **small))
    assert second.exists()
    with pytest.raises(InputError, match="not an isonet-pl checkpoint"):
        (tmp_path / "bad.ckpt").write_text("x")
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "c"), pretrained_model=str(tmp_path / "bad.ckpt"),
                                          **small))


def test_tiny_tomogram_and_unwritable_output(subtomo_star, tmp_path):
    """A tomogram smaller than one tile, and an output folder that cannot be made, are clear errors."""
    import pandas as pd
    import starfile

    from isonet_pl.io.mrc import write_mrc
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.refine import refine

    ckpt = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), iterations=1, epochs=1,
                                             steps_per_epoch=1, batch_size=2, filter_base=4, unet_depth=2,
                                             convs_per_depth=1, preprocessing_ncpus=0))
    write_mrc(tmp_path / "tiny.mrc", np.zeros((4, 40, 40), np.float32) + np.arange(40, dtype=np.float32))
    starfile.write(pd.DataFrame({"rlnIndex": [1], "rlnMicrographName": ["tiny.mrc"]}), tmp_path / "t.star")
    with pytest.raises(InputError, match="smaller than one tile"):
        predict(tmp_path / "t.star", ckpt, PredictConfig(output_dir=str(tmp_path / "o")), IO)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="choose another --output_dir"):
        predict(tmp_path / "t.star", ckpt, PredictConfig(output_dir=str(tmp_path / "afile" / "o")), IO)


def test_predict_on_both_halves_and_disagreement_map(n2n_model, tmp_path):
    """--halves both: the output is the mean of the two half predictions and the disagreement map their
    |difference|, both equal to predicting each half on its own."""
    from isonet_pl.predict.predictor import predict_tomogram, tile_plan
    from isonet_pl.workflows.predict import load_model, predict

    star, ckpt, _ = n2n_model
    predict(star, ckpt, PredictConfig(output_dir=str(tmp_path / "out"), crop_size=32, halves="both",
                                      disagreement_map=True, denoise=False, precision="32",
                                      batch_norm_statistics="model"), IO)
    mean, _ = read_mrc(tmp_path / "out" / "sim_00_corrected.mrc")
    disagreement, _ = read_mrc(tmp_path / "out" / "sim_00_disagreement.mrc")
    module = load_model(ckpt)
    folder = star.parent
    tomo = da.from_array(read_mrc(folder / "tomos" / "sim_00.mrc")[0])
    norm = Normalization.of_volume(tomo)
    core, halo = tile_plan(module.net, "cpu", crop_size=32)  # the tiles predict uses
    halves = [predict_tomogram(read_mrc(folder / k / "sim_00.mrc")[0], module, norm,
                               chunk=core, halo=halo).compute() for k in ("even", "odd")]
    np.testing.assert_allclose(mean, (halves[0] + halves[1]) / 2, atol=1e-5 * np.abs(mean).max())
    np.testing.assert_allclose(disagreement, np.abs(halves[0] - halves[1]), atol=1e-5 * np.abs(mean).max())
    assert disagreement.max() > 0
    # by default (--halves average) the model runs on the average tomogram instead
    predict(star, ckpt, PredictConfig(output_dir=str(tmp_path / "avg"), crop_size=32), IO)
    assert not np.allclose(read_mrc(tmp_path / "avg" / "sim_00_corrected.mrc")[0], mean)


def test_disagreement_map_needs_halves(n2n_model, subtomo_star, tmp_path):
    """A tomogram without halves: an n2n model runs on it, but asking for its halves is a clear error."""
    from isonet_pl.workflows.predict import predict

    _, ckpt, _ = n2n_model
    star = subtomo_star.parent / "sim" / "tomograms.star"
    for bad in (dict(disagreement_map=True), dict(halves="both")):
        with pytest.raises(InputError, match="no even/odd halves"):
            predict(star, ckpt, PredictConfig(output_dir=str(tmp_path / "bad"), crop_size=32, **bad), IO)
        assert not list((tmp_path / "bad").glob("*.mrc"))


def test_precision_follows_the_checkpoint(subtomo_star, tmp_path):
    """--precision model (or null) predicts in the precision the model was trained with (bf16 here): close to, not
    equal to, float32; auto (the default) picks one of the two."""
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.refine import refine

    torch.set_num_threads(1)
    ckpt = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), iterations=1, epochs=1,
                                             steps_per_epoch=2, batch_size=2, filter_base=4, unet_depth=2,
                                             convs_per_depth=1, preprocessing_ncpus=0, precision="bf16-mixed"))
    star = subtomo_star.parent / "sim" / "tomograms.star"
    out = {}
    assert PredictConfig().precision == "auto"
    for name, precision in (("model", "model"), ("null", None), ("bf16", "bf16-mixed"), ("fp32", "32"),
                            ("auto", "auto")):
        predict(star, ckpt, PredictConfig(output_dir=str(tmp_path / name), crop_size=32, use_deconv_tomo=False,
                                          precision=precision), IO)
        out[name] = read_mrc(tmp_path / name / "sim_00_corrected.mrc")[0]
    np.testing.assert_array_equal(out["model"], out["bf16"])
    np.testing.assert_array_equal(out["null"], out["bf16"])
    assert np.array_equal(out["auto"], out["bf16"]) or np.array_equal(out["auto"], out["fp32"])
    rel = np.sqrt(np.mean((out["bf16"] - out["fp32"]) ** 2) / np.mean(out["fp32"] ** 2))
    assert 0 < rel <= 3e-2


def test_nan_weights_and_nan_predictions_are_refused(subtomo_star, tmp_path, monkeypatch):
    """A checkpoint with NaN weights is refused by predict and --pretrained_model; a prediction that comes out
    non-finite is refused with nothing written under the final name nor in the STAR file (exit 0 before)."""
    predict_module = importlib.import_module("isonet_pl.workflows.predict")
    from isonet_pl.workflows.refine import refine

    torch.set_num_threads(1)
    tiny = dict(iterations=1, epochs=1, steps_per_epoch=2, batch_size=2, filter_base=4, unet_depth=2,
                convs_per_depth=1, preprocessing_ncpus=0)
    ckpt = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), **tiny))
    payload = torch.load(ckpt, map_location="cpu", weights_only=False)
    first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][first] = payload["state_dict"][first] * float("nan")
    torch.save(payload, tmp_path / "nan.ckpt")
    star = subtomo_star.parent / "sim" / "tomograms.star"
    before = star.read_bytes()
    with pytest.raises(InputError, match="nan.ckpt: the model's weights hold NaN"):
        predict_module.predict(star, tmp_path / "nan.ckpt", PredictConfig(output_dir=str(tmp_path / "o1")), IO)
    with pytest.raises(InputError, match="nan.ckpt: its weights hold NaN"):
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r2"), pretrained_model=str(tmp_path / "nan.ckpt"),
                                          **tiny))
    original = predict_module.predict_tomogram

    def nan_prediction(*args, **kwargs):
        return original(*args, **kwargs) * float("nan")

    monkeypatch.setattr(predict_module, "predict_tomogram", nan_prediction)
    with pytest.raises(InputError, match="prediction of row 1 holds NaN or infinite values"):
        predict_module.predict(star, ckpt, PredictConfig(output_dir=str(tmp_path / "o2"), crop_size=32,
                                                         use_deconv_tomo=False), IO)
    assert not list((tmp_path / "o2").glob("*.mrc")) and star.read_bytes() == before


def test_denoise_filters_with_the_noise_of_the_empty_slices(subtomo_star, tmp_path, caplog):
    """--denoise (default): the output is the network's, Wiener-filtered with weights measured on its own empty
    slices (less high-frequency power, same low frequencies, recorded in the store); a tomogram without empty
    slices is filtered with the noise of the tilt-axis model where that describes the output; one it does not keeps
    the network's output, with one warning for the command that gives the reason and the remedy."""
    import logging

    import mrcfile
    import zarr

    from isonet_pl.config import PrepareStarConfig
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.prepare import prepare_star
    from isonet_pl.workflows.refine import refine

    torch.set_num_threads(1)
    ckpt = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), iterations=1, epochs=1,
                                             steps_per_epoch=2, batch_size=2, filter_base=4, unet_depth=2,
                                             convs_per_depth=1, preprocessing_ncpus=0))
    from isonet_pl.config import SimulateConfig
    from isonet_pl.workflows.simulate import simulate

    star = simulate(tmp_path / "sim", SimulateConfig(shape=(64, 64, 64), number_subtomos=4, seed=5))
    outs = {}
    for denoise in (False, True):
        folder = tmp_path / f"out_{denoise}"
        with caplog.at_level(logging.INFO, logger="isonet_pl"):
            predict(star, ckpt, PredictConfig(output_dir=str(folder), crop_size=32, use_deconv_tomo=False,
                                              denoise=denoise), IO)
        outs[denoise] = read_mrc(folder / "sim_00_corrected.mrc")[0]
    assert "noise measured on empty slices" in caplog.text
    plain, filtered = outs[False], outs[True]
    spectrum = [np.abs(np.fft.rfftn(v - v.mean())) ** 2 for v in (plain, filtered)]
    k = np.sqrt(sum(g**2 for g in np.meshgrid(np.fft.fftfreq(plain.shape[0]), np.fft.fftfreq(plain.shape[1]),
                                             np.fft.rfftfreq(plain.shape[2]), indexing="ij")))
    high, low = k > 0.35, (k > 0) & (k < 0.05)
    assert spectrum[1][high].sum() < 0.5 * spectrum[0][high].sum()
    assert spectrum[1][low].sum() == pytest.approx(spectrum[0][low].sum(), rel=0.2)
    stores = list((tmp_path / "sim").rglob("sim_00_corrected*.zarr"))
    assert stores and any("noise measured" in str(zarr.open_group(s, mode="r").attrs["isonet_pl"].get("denoise"))
                          for s in stores)
    assert not list(tmp_path.rglob("*_network.zarr"))  # the intermediate is gone

    # tomograms without empty slices: one of white noise, whose output the tilt-axis model describes (filtered, and
    # logged so); one low-passed in |k|, whose output it does not: kept as the network gave it, with one warning
    folder = tmp_path / "full"
    folder.mkdir()
    noise = np.random.default_rng(0).standard_normal((40, 64, 64))
    k = np.sqrt(sum(g**2 for g in np.meshgrid(np.fft.fftfreq(40), np.fft.fftfreq(64), np.fft.rfftfreq(64),
                                             indexing="ij")))
    lowpassed = np.fft.irfftn(np.fft.rfftn(noise) / (1 + (k / 0.25) ** 8), s=noise.shape, axes=(0, 1, 2))
    for name, volume in (("full.mrc", noise), ("lowpassed.mrc", lowpassed)):
        with mrcfile.new(folder / name) as mrc:
            mrc.set_data(volume.astype(np.float32))
            mrc.voxel_size = 10.0
    full_star = prepare_star(folder, PrepareStarConfig(output_star=str(tmp_path / "full.star")))
    caplog.clear()
    for denoise in (False, True):
        with caplog.at_level(logging.INFO, logger="isonet_pl"):
            predict(full_star, ckpt, PredictConfig(output_dir=str(tmp_path / f"full_{denoise}"), crop_size=32,
                                                   denoise=denoise), IO)
    assert "full.mrc: noise from the tilt-axis model" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "not denoised" in
                r.getMessage()]
    assert len(warnings) == 1 and "1 of 2" in warnings[0] and "lowpassed.mrc" in warnings[0]
    assert "Remedy" in warnings[0] and "of its input's power above 0.25 cycles/voxel" in warnings[0]
    np.testing.assert_array_equal(read_mrc(tmp_path / "full_True" / "lowpassed_corrected.mrc")[0],
                                  read_mrc(tmp_path / "full_False" / "lowpassed_corrected.mrc")[0])
    assert not np.array_equal(read_mrc(tmp_path / "full_True" / "full_corrected.mrc")[0],
                              read_mrc(tmp_path / "full_False" / "full_corrected.mrc")[0])


@pytest.mark.parametrize("bent", [False, True])
def test_denoise_warns_when_the_output_loses_the_slab_profile_of_its_input(tmp_path, caplog, bent):
    """An n2n output whose Z profile (the slab along the beam) disagrees with its input's gets a warning naming
    the correlation; one that keeps it does not, nor does any output without a reference (single-tomogram)."""
    import logging

    import dask.array as da

    from isonet_pl.io.zarr_store import write_tomogram
    from isonet_pl.workflows.predict import NOISY_BACKGROUND, SLAB_PROFILE, _denoise

    rng = np.random.default_rng(1)
    source = 0.05 * rng.standard_normal((64, 96, 96)).astype(np.float32)
    source[20:44] += 0.5 + rng.standard_normal((24, 96, 96)).astype(np.float32)  # a denser slab
    output = source.copy()
    if bent:  # the slab's level replaced by a ramp along Z
        output[20:44] += np.linspace(-1.5, 0.5, 24, dtype=np.float32)[:, None, None]
    out = tmp_path / "t_corrected.zarr"
    written = []
    for reference in (da.from_array(source, chunks=32), None):
        write_tomogram(output, out, (10.0, 10.0, 10.0))
        with caplog.at_level(logging.INFO, logger="isonet_pl"):
            _denoise(out, (-60.0, 60.0), tmp_path / "t.mrc", lambda arr, path, **extra: written.append(extra),
                     NOISY_BACKGROUND, reference=reference)
        warned = "bent or flattened the slab" in caplog.text
        assert warned == (bent and reference is not None), caplog.text
        if warned:
            assert "t.mrc" in caplog.text and f"warned under {SLAB_PROFILE:.1f}" in caplog.text
        caplog.clear()
    assert len(written) == 2


@pytest.mark.parametrize("background", [0.0, 0.6])
def test_denoise_warns_when_the_output_passes_noise_outside_the_specimen(tmp_path, caplog, background):
    """The network's output with noise in the empty slices above and below the specimen (the signature of a
    checkpoint that lets noise through, bench/RESULTS.md) gets a warning naming the share; a clean one does not."""
    import logging

    from isonet_pl.io.zarr_store import write_tomogram
    from isonet_pl.workflows.predict import NOISY_BACKGROUND, _denoise

    rng = np.random.default_rng(0)
    volume = 0.05 * rng.standard_normal((64, 96, 96)).astype(np.float32)
    volume[20:44] = rng.standard_normal((24, 96, 96))  # the specimen slab
    volume[:20] += background * rng.standard_normal((20, 96, 96)).astype(np.float32)
    volume[44:] += background * rng.standard_normal((20, 96, 96)).astype(np.float32)
    out = tmp_path / "t_corrected.zarr"
    write_tomogram(volume, out, (10.0, 10.0, 10.0))
    written = []
    with caplog.at_level(logging.INFO, logger="isonet_pl"):
        _denoise(out, (-60.0, 60.0), tmp_path / "t.mrc", lambda arr, path, **extra: written.append(extra),
                 NOISY_BACKGROUND)
    assert written and "empty slices hold" in written[0]["denoise"]
    warned = "passes noise where there is no specimen" in caplog.text
    assert warned == (background ** 2 > NOISY_BACKGROUND)
    caplog.clear()
    write_tomogram(volume, out, (10.0, 10.0, 10.0))
    _denoise(out, (-60.0, 60.0), tmp_path / "t.mrc", lambda arr, path, **extra: None)  # no threshold: no warning
    assert "passes noise" not in caplog.text


def test_batch_norm_statistics_measured_on_the_halves(n2n_model, subtomo_star, tmp_path, caplog):
    """An n2n model on a tomogram with halves: by default (model) predict keeps the checkpoint's batch-norm
    statistics and equals the tiled network; with ``halves`` they are measured on the even and odd halves through
    predict's tiles before the average is predicted, exactly as adapt_batch_norm does, which gives another
    result; asking for halves a tomogram lacks is a clear error."""
    import logging

    from isonet_pl.predict.adapt import adapt_batch_norm
    from isonet_pl.predict.predictor import predict_tomogram, tile_plan
    from isonet_pl.workflows.predict import load_model, predict

    star, ckpt, _ = n2n_model
    options = dict(crop_size=32, denoise=False, precision="32")
    with caplog.at_level(logging.INFO, logger="isonet_pl"):
        predict(star, ckpt, PredictConfig(output_dir=str(tmp_path / "model"), **options), IO)
    assert "batch norms: the checkpoint's running statistics" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="isonet_pl"):
        predict(star, ckpt, PredictConfig(output_dir=str(tmp_path / "halves"), batch_norm_statistics="halves",
                                          **options), IO)
    assert "running statistics measured on the even/odd halves" in caplog.text
    measured = read_mrc(tmp_path / "halves" / "sim_00_corrected.mrc")[0]
    saved = read_mrc(tmp_path / "model" / "sim_00_corrected.mrc")[0]
    folder = star.parent
    tomo = read_mrc(folder / "tomos" / "sim_00.mrc")[0]
    norm = Normalization.of_volume(da.from_array(tomo))
    module = load_model(ckpt)
    core, halo = tile_plan(module.net, "cpu", crop_size=32)
    reference = predict_tomogram(tomo, module, norm, chunk=core, halo=halo).compute()
    np.testing.assert_allclose(saved, reference, atol=1e-5 * np.abs(saved).max())
    adapt_batch_norm(module, [read_mrc(folder / k / "sim_00.mrc")[0] for k in ("even", "odd")], norm, core, halo)
    reference = predict_tomogram(tomo, module, norm, chunk=core, halo=halo).compute()
    np.testing.assert_allclose(measured, reference, atol=1e-5 * np.abs(measured).max())
    assert np.abs(measured - saved).max() > 1e-3 * np.abs(saved).max()

    plain = subtomo_star.parent / "sim" / "tomograms.star"  # no halves
    with pytest.raises(InputError, match="no even/odd halves for --batch_norm_statistics halves"):
        predict(plain, ckpt, PredictConfig(output_dir=str(tmp_path / "bad"), batch_norm_statistics="halves",
                                           **options), IO)
