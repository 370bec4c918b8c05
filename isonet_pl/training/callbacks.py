"""Lightning callbacks of refine (module-level classes): seeds per step, the finite guard, the warmed EMA; and the
batch-norm recalibration after each iteration."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging

from isonet_pl.errors import IsoNetError
from isonet_pl.model.batchnorm import batch_norms, collecting_batch_norm
from isonet_pl.predict.predictor import AUTOCAST

logger = logging.getLogger(__name__)


class StepSeed(pl.Callback):
    """Seeds torch before every training step from (seed, step): dropout is then the same whether a run was
    interrupted and resumed or not (whatever else drew random numbers)."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.manual_seed(int(np.random.default_rng((self.seed, trainer.global_step, 11)).integers(2**31)))


def epoch_seed_callback(seed: int) -> StepSeed:
    """refine's step seeding (:class:`StepSeed`)."""
    return StepSeed(seed)


class TrainingDiverged(IsoNetError):
    """The training loss or the weights became NaN or infinite."""


class FiniteGuard(pl.Callback):
    """Stops training at the first non-finite loss (or weights and buffers at an epoch's end) with an error naming
    the iteration, epoch and step and the likely cause."""

    def __init__(self, iteration: int, epochs: int):
        self.iteration, self.epochs = iteration, epochs

    def fail(self, trainer, what: str) -> None:
        epoch = trainer.current_epoch - (self.iteration - 1) * self.epochs + 1
        raise TrainingDiverged(
            f"iteration {self.iteration}, epoch {epoch}/{self.epochs}, step {trainer.global_step}: {what}; training "
            "diverged (likely a too high --learning_rate, or --precision 16-mixed overflowing); the last completed "
            "iteration's model_iterNN.ckpt is kept: lower --learning_rate or use --precision 32")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not bool(torch.isfinite(loss.detach()).all()):
            self.fail(trainer, f"the training loss is {float(loss.detach()):g}")

    def on_train_epoch_end(self, trainer, pl_module):
        bad = non_finite_state(pl_module)
        if bad:
            self.fail(trainer, f"{bad} holds NaN or infinite values")


def finite_guard(iteration: int, epochs: int) -> FiniteGuard:
    """refine's guard against divergence (:class:`FiniteGuard`)."""
    return FiniteGuard(iteration, epochs)


def non_finite_state(module: torch.nn.Module) -> str | None:
    """The first weight or buffer (batch-norm statistics included) of ``module`` holding NaN or infinite values,
    named for a message ("the weights net.x" / "the buffer net.y"); None when all are finite."""
    for kind, items in (("the weights", module.named_parameters()), ("the buffer", module.named_buffers())):
        for name, value in items:
            if value.is_floating_point() and not bool(torch.isfinite(value.detach()).all()):
                return f"{kind} {name}"
    return None


def check_finite(module: torch.nn.Module, iteration: int) -> None:
    """Refuse to keep a model whose weights or batch-norm statistics became non-finite after an iteration.

    Raises
    ------
    TrainingDiverged
        Naming the weight or buffer, and what to change.
    """
    bad = non_finite_state(module)
    if bad:
        raise TrainingDiverged(f"iteration {iteration}: {bad} holds NaN or infinite values after training (inputs far "
                               "outside the normalised range overflow the batch-norm statistics); the last completed "
                               "iteration's model_iterNN.ckpt is kept: lower --noise_level or --learning_rate")


def warm_ema(average: torch.Tensor, current: torch.Tensor, n_averaged, decay: float) -> torch.Tensor:
    """One EMA update whose decay warms up with the updates done: ``min(decay, (1 + n) / (10 + n))``.

    A fixed decay d keeps a weight of d^n on the initial weights after n steps (0.99^54 = 0.58 after the
    54 steps of a 4,320-sample run's first iteration), and those weights refill the wedges and are saved.
    """
    n = float(n_averaged)
    d = min(decay, (1.0 + n) / (10.0 + n))
    return d * average + (1.0 - d) * current


class WarmEMA(EMAWeightAveraging):
    """Lightning's EMA of the weights with a warmed-up decay (:func:`warm_ema`), whose checkpoint after fit keeps
    the trained (not averaged) weights as the state the next iteration continues from.

    Lightning copies the average over the trained weights at the end of ``fit``, so each iteration would
    restart from the lagging average: with decay 0.99 and 54 steps per iteration only ~12 steps' worth of
    progress per iteration would remain. The averaged weights are still what refills the wedges, is
    validated and is saved (``state_dict``); the trained ones go to ``current_model_state``.
    """

    def __init__(self, decay: float):
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


def ema_callback(decay: float) -> WarmEMA:
    """refine's EMA of the weights (:class:`WarmEMA`)."""
    return WarmEMA(decay)


BN_SAMPLES = 128  # training inputs over which --recalibrate_bn averages the batch-norm statistics


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
    if not batch_norms(module) or len(dataset) == 0:
        return
    autocast = AUTOCAST[precision]
    with collecting_batch_norm(module):
        for start in range(0, len(dataset), batch_size):
            batch = torch.stack([dataset[k]["input"] for k in range(start, min(start + batch_size, len(dataset)))])
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                module(batch.to(device))
