"""Tests of IsoNetModule: Lightning training, checkpoints, bf16, loss hook, prediction."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from isonet_pl.model import IsoNetModule, UNet3D
from isonet_pl.model.module import mean_absolute_error

torch.set_num_threads(1)

TINY_NET = dict(base_channels=4, depth=2, convs_per_level=2)


def _batches(n: int = 4, size: int = 16, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` samples {"input", "target"} of shape (1, size, size, size)."""
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input": torch.randn(1, size, size, size, generator=g),
            "target": torch.randn(1, size, size, size, generator=g),
        }
        for _ in range(n)
    ]


def _loader(n: int = 4, seed: int = 0) -> DataLoader:
    return DataLoader(_batches(n, seed=seed), batch_size=2)


def _trainer(**kwargs) -> pl.Trainer:
    settings = dict(
        accelerator="cpu",
        devices=1,
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**settings, **kwargs})


def test_fit_runs_and_logs_losses():
    """A few training steps with validation run on CPU and log train/loss and val/loss."""
    model = IsoNetModule(net=TINY_NET)
    trainer = _trainer()
    trainer.fit(model, _loader(), _loader(2, seed=1))
    assert trainer.global_step == 3
    metrics = trainer.callback_metrics
    for name in ("train/loss_step", "train/loss_epoch", "val/loss"):
        assert torch.isfinite(metrics[name])


def test_checkpoint_round_trip_rebuilds_model_and_meta(tmp_path):
    """load_from_checkpoint(path) alone rebuilds the network, its weights and meta."""
    meta = {
        "normalization": "percentile",
        "stats": {"p4": np.float32(-1.5), "p96": 2.0},
        "cube_size": 16,
        "tilt_range": (-60.0, 60.0),
        "source": tmp_path / "tomo.mrc",
    }
    model = IsoNetModule(net=dict(TINY_NET, dropout=0.1), learning_rate=1e-3, meta=meta)
    trainer = _trainer(max_steps=2, limit_val_batches=0)
    trainer.fit(model, _loader())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    loaded = IsoNetModule.load_from_checkpoint(path).eval()
    model.eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.meta == {
        "normalization": "percentile",
        "stats": {"p4": -1.5, "p96": 2.0},
        "cube_size": 16,
        "tilt_range": [-60.0, 60.0],
        "source": str(tmp_path / "tomo.mrc"),
    }
    assert loaded.hparams["net"] == model.hparams["net"]
    assert loaded.hparams["net"]["dropout"] == 0.1
    assert loaded.hparams["learning_rate"] == 1e-3


def test_bf16_mixed_precision_step_runs():
    """One training step under bf16-mixed autocast on CPU gives finite weights."""
    model = IsoNetModule(net=TINY_NET)
    trainer = _trainer(max_steps=1, precision="bf16-mixed", limit_val_batches=0)
    trainer.fit(model, _loader())
    assert trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train/loss_step"])
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def test_default_net_settings_are_stored_in_full():
    """Missing net settings take UNet3D's defaults and are stored explicitly."""
    model = IsoNetModule(net={"base_channels": 4})
    assert isinstance(model.net, UNet3D)
    assert model.hparams["net"]["depth"] == 3
    assert model.hparams["net"]["convs_per_level"] == 3
    assert model.hparams["net"]["residual"] is True
    assert model.meta == {}


def test_unknown_net_setting_raises():
    """A key that is not a UNet3D argument raises a TypeError naming it."""
    with pytest.raises(TypeError, match="filter_base"):
        IsoNetModule(net={"filter_base": 4})


def test_unstorable_meta_raises():
    """A meta value that is not plain data raises a TypeError."""
    with pytest.raises(TypeError, match="meta"):
        IsoNetModule(net=TINY_NET, meta={"callback": object()})


def test_optimiser_is_keras_adam():
    """configure_optimizers returns Adam with the learning rate, β (0.9, 0.999) and ε 1e-7."""
    optimiser = IsoNetModule(net=TINY_NET, learning_rate=4e-4).configure_optimizers()
    assert isinstance(optimiser, torch.optim.Adam)
    group = optimiser.param_groups[0]
    assert group["lr"] == 4e-4
    assert group["betas"] == (0.9, 0.999)
    assert group["eps"] == 1e-7


def test_scheduled_learning_rate():
    """constant: the base rate; cosine: base at step 0, half way at the middle, 5 % at the last step and after;
    without a known length the base rate; an unknown schedule is refused."""
    from isonet_pl.model.module import COSINE_FLOOR, scheduled_learning_rate

    assert [scheduled_learning_rate(1e-3, s, 11, "constant") for s in (0, 5, 10)] == [1e-3] * 3
    rates = [scheduled_learning_rate(1e-3, s, 11, "cosine") for s in range(13)]
    assert rates[0] == pytest.approx(1e-3) and rates[10] == rates[12] == pytest.approx(COSINE_FLOOR * 1e-3)
    assert rates[5] == pytest.approx(1e-3 * (1 + COSINE_FLOOR) / 2)
    assert all(a > b for a, b in zip(rates[:10], rates[1:11], strict=True))
    assert scheduled_learning_rate(1e-3, 7, None, "cosine") == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        IsoNetModule(net=TINY_NET, lr_schedule="step")


def test_weighted_mae():
    """A constant weight gives the plain MAE; a zero weight drops those voxels."""
    pred = torch.zeros(2, 1, 2, 2, 2)
    target = torch.ones(2, 1, 2, 2, 2)
    target[1] = 3.0
    assert mean_absolute_error(pred, target).item() == pytest.approx(2.0)
    assert mean_absolute_error(pred, target, torch.full((2, 1, 1, 1, 1), 5.0)).item() == (
        pytest.approx(2.0)
    )
    weight = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1)
    assert mean_absolute_error(pred, target, weight).item() == pytest.approx(3.0)


def test_compute_loss_override_changes_the_training_loss():
    """Overriding compute_loss changes the objective without touching training_step."""

    class MSEModule(IsoNetModule):
        def compute_loss(self, pred, batch):
            return ((pred - batch["target"]) ** 2).mean()

    model = MSEModule(net=TINY_NET).eval()
    model.log = lambda *args, **kwargs: None  # no Trainer attached
    batch = {key: value.unsqueeze(0) for key, value in _batches(1)[0].items()}
    loss = model.training_step(batch, 0)
    with torch.no_grad():
        expected = ((model(batch["input"]) - batch["target"]) ** 2).mean()
    torch.testing.assert_close(loss.detach(), expected)


def test_loss_is_an_explicit_argument():
    """The loss and its wedge weight are module arguments saved with it; checkpoints older than them get the loss
    their recorded method used; a fourier_split batch without regions is a clear error."""
    assert IsoNetModule(net=TINY_NET).hparams["loss"] == "mae"
    old = IsoNetModule(net=TINY_NET, meta={"method": "n2n", "mw_weight": 3.0})
    assert old.hparams["loss"] == "fourier_split" and old.hparams["mw_weight"] == 3.0
    explicit = IsoNetModule(net=TINY_NET, meta={"method": "n2n"}, loss="mae", mw_weight=2.0)
    assert explicit.hparams["loss"] == "mae" and explicit.hparams["mw_weight"] == 2.0
    x = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="regions"):
        old.compute_loss(x, {"target": x})
    with pytest.raises(ValueError, match="loss must be one of"):
        IsoNetModule(net=TINY_NET, loss="mse")
