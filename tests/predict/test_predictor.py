"""The dask tile predictor: exact stitching with an identity network, on any chunking."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from isonet_pl.normalization import Normalization
from isonet_pl.predict.predictor import predict_tomogram

UNIT = Normalization.unit()  # N(x) = -x


class Identity(torch.nn.Module):
    """A stand-in network: returns its input; needs sizes divisible by 4 (padding is exercised)."""

    class _Net:
        min_input_multiple = 4

    net = _Net()

    def forward(self, x):
        return x


@pytest.mark.parametrize("lazy", [True, False])
@pytest.mark.parametrize("shape,chunk,halo", [((37, 50, 43), 16, 5), ((20, 33, 64), 32, 0), ((9, 40, 17), 8, 8)])
def test_identity_network_reproduces_the_input(shape, chunk, halo, lazy):
    """Any block size, halo and ragged edge, from dask or numpy: identity network -> the input back."""
    vol = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    src = da.from_array(vol, chunks=11) if lazy else vol
    with dask.config.set(scheduler="synchronous"):
        norm = Normalization(mean=-0.3, std=2.5, percentile=False)  # offset 0.3, scale 2.5
        out = predict_tomogram(src, Identity(), norm, chunk=chunk, halo=halo).compute()
    np.testing.assert_allclose(out, vol, rtol=1e-5, atol=1e-5)


def test_read_reflected_matches_numpy_symmetric_pad():
    """Reading beyond the edges mirrors with the edge voxel repeated (numpy 'symmetric', dask 'reflect')."""
    from isonet_pl.predict.predictor import read_reflected

    vol = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    expected = np.pad(vol, 3, mode="symmetric")[1:10, 3 + 2:3 + 9, 0:14]
    np.testing.assert_array_equal(read_reflected(vol, (-2, 2, -3), (7, 9, 11)), expected)


def test_network_sees_normalised_protein_bright_input():
    """The network gets (-x - offset) / scale; the output comes back in the input's units and contrast."""

    class Plus(Identity):
        def forward(self, x):
            return x + 1.0  # +1 in normalised units

    vol = np.random.default_rng(1).normal(size=(16, 16, 16)).astype(np.float32)
    with dask.config.set(scheduler="synchronous"):
        norm = Normalization(mean=0.0, std=2.0, percentile=False)
        out = predict_tomogram(da.from_array(vol), Plus(), norm, chunk=8, halo=2).compute()
    np.testing.assert_allclose(out, vol - 2.0, rtol=1e-5, atol=1e-5)  # -(((-x)/2 + 1) * 2) = x - 2


def _tiny_unet():
    from isonet_pl.model.module import IsoNetModule

    torch.manual_seed(0)
    module = IsoNetModule(net={"depth": 2, "base_channels": 4, "convs_per_level": 1, "dropout": 0.0})
    for p in module.parameters():  # a non-trivial network: weights well away from the identity
        p.data.normal_(0, 0.3)
    return module.eval()


def test_tiled_prediction_equals_whole_volume_prediction():
    """With a halo covering the receptive field, tiles stitch to the whole-volume result (<= 1e-4 rel. RMS),
    at the tomogram's faces too (there both use the network's own padding)."""
    from isonet_pl.predict.predictor import predict_block

    torch.set_num_threads(1)
    module = _tiny_unet()
    vol = np.random.default_rng(2).normal(size=(32, 48, 40)).astype(np.float32)
    halo = 24
    whole = predict_block(vol, module, UNIT)
    with dask.config.set(scheduler="synchronous"):
        tiled = predict_tomogram(vol, module, UNIT, chunk=16, halo=halo).compute()
    rel = np.sqrt(np.mean((tiled - whole) ** 2) / np.mean(whole**2))
    assert rel <= 1e-4


def _border_ratio(out: np.ndarray, tile: int) -> float:
    """Mean |gradient| across tile borders (along x) over the mean elsewhere."""
    grad = np.abs(np.diff(out, axis=2))
    return float(grad[:, :, tile - 1::tile].mean() / np.delete(grad, np.s_[tile - 1::tile], axis=2).mean())


@pytest.mark.parametrize("halo,seams", [(16, False), (0, True)])
def test_no_seams_on_tile_borders(halo, seams):
    """Gradient energy on tile borders is as elsewhere (as in the whole-volume prediction); halo 0 shows seams."""
    from isonet_pl.predict.predictor import predict_block

    module = _tiny_unet()
    vol = np.random.default_rng(3).normal(size=(32, 64, 64)).astype(np.float32)
    whole = predict_block(np.pad(vol, 24, mode="symmetric"), module, UNIT)[24:-24, 24:-24, 24:-24]
    with dask.config.set(scheduler="synchronous"):
        out = predict_tomogram(da.from_array(vol), module, UNIT, chunk=16, halo=halo).compute()
    excess = _border_ratio(out, 16) / _border_ratio(whole, 16)
    assert (abs(excess - 1) > 0.02) == seams  # a seam changes the border statistics, either way


def test_tiles_shared_by_several_devices_give_the_same_result():
    """Two network copies (two 'devices', here both CPU) on two threads give the single-device result."""
    module = _tiny_unet()
    vol = np.random.default_rng(4).normal(size=(32, 32, 48)).astype(np.float32)
    one = predict_tomogram(vol, module, UNIT, chunk=16, halo=8, device="cpu")
    two = predict_tomogram(vol, module, UNIT, chunk=16, halo=8, device=["cpu", "cpu"])
    with dask.config.set(scheduler="synchronous"):
        a = one.compute()
    with dask.config.set(scheduler="threads", num_workers=2):
        b = two.compute()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_prediction_on_a_distributed_cluster():
    """The predictor runs on a dask.distributed LocalCluster (the network is shipped to the workers)."""
    distributed = pytest.importorskip("distributed")
    module = _tiny_unet()
    vol = np.random.default_rng(5).normal(size=(16, 32, 32)).astype(np.float32)
    with dask.config.set(scheduler="synchronous"):
        local = predict_tomogram(vol, module, UNIT, chunk=16, halo=8).compute()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        remote = predict_tomogram(vol, module, UNIT, chunk=16, halo=8).compute()
    np.testing.assert_allclose(local, remote, rtol=1e-5, atol=1e-6)


def test_bf16_prediction_is_close_to_float32():
    """bf16 autocast (predict --precision bf16-mixed): within 3 % relative RMS of float32, and not identical."""
    from isonet_pl.predict.predictor import predict_block

    torch.set_num_threads(1)
    module = _tiny_unet()
    vol = np.random.default_rng(4).normal(size=(32, 32, 32)).astype(np.float32)
    full = predict_block(vol, module, UNIT)
    half = predict_block(vol, module, UNIT, precision="bf16-mixed")
    rel = np.sqrt(np.mean((half - full) ** 2) / np.mean(full**2))
    assert 0 < rel <= 3e-2


def test_auto_precision_times_only_where_bf16_is_native(monkeypatch, caplog):
    """--precision auto: float32 without timing on a CPU without bf16 instructions; with them, both precisions
    timed and the faster one returned and logged."""
    import logging

    from isonet_pl.predict import predictor

    module = _tiny_unet()
    calls = []
    real = predictor.predict_block
    monkeypatch.setattr(predictor, "predict_block", lambda *a, **k: calls.append(a[-1]) or real(*a, **k))
    monkeypatch.setattr(predictor, "native_bf16", lambda: False)
    assert predictor.fastest_precision(module, "cpu") == "32" and not calls
    monkeypatch.setattr(predictor, "native_bf16", lambda: True)
    with caplog.at_level(logging.INFO, logger="isonet_pl.predict.predictor"):
        chosen = predictor.fastest_precision(module, "cpu", edge=16, cache=False)
    assert chosen in ("32", "bf16-mixed") and sorted(set(calls)) == ["32", "bf16-mixed"]
    assert f"precision auto: {chosen} (float32" in caplog.text


def test_auto_precision_is_measured_once_per_machine_and_network(monkeypatch, tmp_path, caplog):
    """A clear choice is kept in the machine's cache: the same network on the same machine is not timed again;
    another network, an unreadable cache file, or a close call (not kept) is; without a home folder nothing is
    kept and nothing fails."""
    import json
    import logging

    from isonet_pl import system
    from isonet_pl.predict import predictor

    monkeypatch.setenv("ISONET_PL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(predictor, "native_bf16", lambda: True)
    monkeypatch.setattr(predictor, "CLEAR_MARGIN", 0.0)  # every choice counts as clear here
    calls = []
    real = predictor.predict_block
    monkeypatch.setattr(predictor, "predict_block", lambda *a, **k: calls.append(a[-1]) or real(*a, **k))
    module = _tiny_unet()
    first = predictor.fastest_precision(module, "cpu", edge=16)
    assert len(calls) == 8  # two warm-ups and two timed calls per precision
    saved = json.loads((tmp_path / "cache" / predictor.PRECISION_CACHE).read_text())
    assert [entry["precision"] for entry in saved.values()] == [first]
    with caplog.at_level(logging.INFO, logger="isonet_pl.predict.predictor"):
        assert predictor.fastest_precision(module, "cpu", edge=16) == first and len(calls) == 8
    assert "cached in" in caplog.text
    from isonet_pl.model.module import IsoNetModule

    other = IsoNetModule(net={"depth": 1, "base_channels": 2, "convs_per_level": 1}).eval()
    predictor.fastest_precision(other, "cpu", edge=16)
    assert len(calls) == 16 and len(json.loads((tmp_path / "cache" / predictor.PRECISION_CACHE).read_text())) == 2
    (tmp_path / "cache" / predictor.PRECISION_CACHE).write_text("{not json")
    predictor.fastest_precision(module, "cpu", edge=16)
    assert len(calls) == 24 and len(list((tmp_path / "cache").iterdir())) == 1  # no temporary file left
    monkeypatch.setattr(predictor, "CLEAR_MARGIN", 1e6)  # a close call: timed, not kept
    (tmp_path / "cache" / predictor.PRECISION_CACHE).unlink()
    predictor.fastest_precision(module, "cpu", edge=16)
    predictor.fastest_precision(module, "cpu", edge=16)
    assert len(calls) == 40 and not (tmp_path / "cache" / predictor.PRECISION_CACHE).exists()
    monkeypatch.setattr(predictor, "CLEAR_MARGIN", 0.0)
    monkeypatch.delenv("ISONET_PL_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(system.Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    assert system.cache_dir() is None
    assert predictor.fastest_precision(module, "cpu", edge=16) in ("32", "bf16-mixed") and len(calls) == 48


def test_the_flips_keep_every_tilt_geometry():
    """Each of FLIPS maps the measured region of any (also asymmetric) tilt range about Y onto itself."""
    from isonet_pl.data.wedge import measured_region
    from isonet_pl.predict.predictor import FLIPS

    shape = (20, 12, 26)
    for tilt in ((-60, 60), (-50, 70), (-45, 60)):
        mask = np.broadcast_to(measured_region(shape, *tilt), shape)
        for axes in FLIPS[1:]:  # a flip along axis a maps frequency index i to (-i) mod n along a
            flipped = np.roll(np.flip(mask, axes), 1, axis=axes)
            np.testing.assert_array_equal(flipped, mask, err_msg=f"flip {axes} of {tilt}")
    # and a flip of Z alone does not, on an asymmetric range
    mask = np.broadcast_to(measured_region(shape, -50, 70), shape)
    assert not np.array_equal(np.roll(np.flip(mask, 0), 1, axis=0), mask)


@pytest.mark.parametrize("lazy", [False, True])
def test_flips_average_the_network_over_flipped_inputs(lazy):
    """--flips 4: each tile's output is the mean of the network on the four flipped inputs, each flipped back
    (checked against that mean computed by hand on the whole volume), and so the result commutes with the flips."""
    from isonet_pl.predict.predictor import FLIPS, predict_block

    torch.set_num_threads(1)
    module = _tiny_unet()
    vol = np.random.default_rng(4).normal(size=(16, 24, 32)).astype(np.float32)
    by_hand = sum(np.flip(predict_block(np.ascontiguousarray(np.flip(vol, a)), module, UNIT), a) for a in FLIPS) / 4
    one = predict_block(vol, module, UNIT)
    src = da.from_array(vol, chunks=64) if lazy else vol
    with dask.config.set(scheduler="synchronous"):
        four = predict_tomogram(src, module, UNIT, chunk=64, halo=0, flips=4).compute()
        flipped = predict_tomogram(np.ascontiguousarray(np.flip(vol, (0, 2))), module, UNIT, chunk=64, halo=0,
                                   flips=4).compute()
    np.testing.assert_allclose(four, by_hand, rtol=1e-5, atol=1e-5)
    assert np.abs(four - one).max() > 1e-2  # the flips changed the output: the network is not symmetric
    np.testing.assert_allclose(np.flip(flipped, (0, 2)), four, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="flips must be 1, 2 or 4"):
        predict_tomogram(vol, module, UNIT, flips=3)
