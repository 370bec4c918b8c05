"""The Lightning system that trains :class:`~isonet_pl.model.unet.UNet3D` as IsoNet does.

IsoNet 0.2 trains with a mean absolute error between the network's output and the target,
Adam with a constant learning rate (β = (0.9, 0.999), ε = 1e-7, Keras's defaults) and no
schedule (SPEC §6.6); ``lr_schedule="cosine"`` lowers the rate along a half cosine over the whole run
instead (see :func:`scheduled_learning_rate`). The iterative refinement loop (train → predict → rebuild targets →
retrain) is orchestration and lives in the workflows, outside this module.

Batches are dicts of tensors:

* ``"input"``: network input ``(b, 1, z, y, x)``;
* ``"target"``: training target ``(b, 1, z, y, x)``;
* with the ``fourier_split`` loss (even/odd mode): ``"regions"`` ``(b, 2, z, y, x//2+1)`` and optionally
  ``"target_wedge"`` (see :func:`fourier_split_loss`).

The loss (``loss``: ``"mae"`` or ``"fourier_split"``) and its wedge weight (``mw_weight``) are explicit
arguments, saved with the checkpoint.

A checkpoint written by Lightning holds everything needed to rebuild the model:
``IsoNetModule.load_from_checkpoint(path)`` restores the network settings (``net``), the
learning rate and ``meta``, a free dict the caller stores with the model (normalisation mode
and statistics, cube and crop size, tilt range, method, settings...).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from isonet_pl.config import Method

from .unet import UNet3D

logger = logging.getLogger(__name__)

#: ``lr_schedule`` values: IsoNet's constant rate, or a half cosine over the whole run.
LR_SCHEDULES = ("constant", "cosine")
#: The cosine schedule's last rate, as a fraction of the first.
COSINE_FLOOR = 0.05


def scheduled_learning_rate(base: float, step: int, total: int | None, schedule: str) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of a run of ``total`` steps.

    ``constant``: ``base`` throughout. ``cosine``: ``base`` at step 0, falling along a half cosine to
    ``COSINE_FLOOR * base`` at the last step and staying there past it; with ``total`` unknown (None
    or 0) the rate stays ``base``.
    """
    if schedule == "constant" or not total:
        return base
    t = min(max(step, 0) / max(total - 1, 1), 1.0)
    return base * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))

__all__ = ["IsoNetModule", "mean_absolute_error", "fourier_split_loss", "frequency_weights", "LOSSES"]

#: the objectives: IsoNet's mean absolute error, or the even/odd loss split by Fourier region
LOSSES = ("mae", "fourier_split")


def frequency_weights(shape: tuple[int, int, int], power: float, device=None) -> torch.Tensor:
    """``max(|k|, 1 / max(shape))^-power`` on the rfft grid of ``shape`` (z, y, x): (z, y, x//2+1) float32.

    |k| in cycles per voxel; the floor of one Fourier cell keeps the DC coefficient finite.
    """
    z, y, x = shape
    kz = torch.fft.fftfreq(z, device=device)[:, None, None]
    ky = torch.fft.fftfreq(y, device=device)[None, :, None]
    kx = torch.fft.rfftfreq(x, device=device)[None, None, :]
    k = torch.sqrt(kz * kz + ky * ky + kx * kx).clamp_min(1.0 / max(z, y, x))
    return k.pow(-float(power)).float()


def fourier_split_loss(pred: torch.Tensor, target: torch.Tensor, regions: torch.Tensor,
                       mw_weight: float, target_wedge: torch.Tensor | None = None,
                       terms: bool = False, frequency_power: float = 0.0
                       ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Even/odd loss in Fourier space: mean |FFT(pred - target)|² over the region measured in both
    input and target, plus ``mw_weight`` times that over the region measured only in the target.

    With ``frequency_power`` p > 0 both means are weighted means, each coefficient weighted by
    :func:`frequency_weights` (``|k|^-p``): the target half's noise after a weighted back-projection has a
    power that grows about as |k|, so p = 1 evens it out; the weights change what each step's gradient
    listens to, not the minimiser of the expected loss for each coefficient.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(b, 1, z, y, x)``.
    regions : torch.Tensor
        ``(b, 2, z, y, x//2+1)`` 0/1 masks (rfft layout) of the two regions.
    mw_weight : float
        Weight of the missing-wedge region.
    target_wedge : torch.Tensor, optional
        ``(b, 1, z, y, x)``: the target of the missing-wedge region instead of ``target``.
    terms : bool
        Also return the two region means (measured in both, input's wedge), before ``mw_weight``.
    frequency_power : float
        p of the frequency weights; 0: every coefficient alike.
    """
    def power(goal):
        diff = torch.fft.rfftn((pred - goal).float()[:, 0], dim=(-3, -2, -1), norm="ortho")
        return diff.real**2 + diff.imag**2

    both = power(target)
    wedge = both if target_wedge is None else power(target_wedge)
    if frequency_power:
        regions = regions * frequency_weights(tuple(pred.shape[-3:]), frequency_power, pred.device)
    floor = 1e-12 if frequency_power else 1.0
    means = [(p * regions[:, k]).sum() / regions[:, k].sum().clamp_min(floor) for k, p in enumerate((both, wedge))]
    total = means[0] + mw_weight * means[1]
    return (total, means[0], means[1]) if terms else total

# Keras's Adam defaults, which IsoNet uses (SPEC §6.6).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-7


def mean_absolute_error(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error, optionally weighted, computed in float32.

    Parameters
    ----------
    pred : torch.Tensor
        Prediction ``(b, 1, z, y, x)``.
    target : torch.Tensor
        Target of the same shape.
    weight : torch.Tensor, optional
        Non-negative weights broadcastable to ``pred``'s shape. The loss is then
        ``Σ w·|pred − target| / Σ w`` over all voxels (weights broadcast to the full shape), so
        a constant weight gives the plain MAE.

    Returns
    -------
    torch.Tensor
        A scalar (0-d) float32 tensor.
    """
    error = (pred.float() - target.float()).abs()
    if weight is None:
        return error.mean()
    weight = weight.float().expand_as(error)
    return (weight * error).sum() / weight.sum().clamp_min(torch.finfo(torch.float32).tiny)


def _to_builtin(value: Any) -> Any:
    """Convert ``value`` to plain Python types that ``torch.load(weights_only=True)`` accepts.

    numpy scalars and arrays become Python numbers and lists, paths become strings, pydantic
    models their JSON dump; mappings and sequences are converted recursively.
    """
    if isinstance(value, Enum):  # a str enum (the method) is stored as its plain value
        return _to_builtin(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "model_dump"):
        return _to_builtin(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    raise TypeError(
        f"cannot store a {type(value).__name__} in the checkpoint's meta; use numbers, "
        "strings, lists and dicts"
    )


def _net_kwargs(net: Mapping[str, Any] | None) -> dict[str, Any]:
    """Complete the UNet3D keyword arguments with its defaults, so checkpoints are explicit.

    Raises
    ------
    TypeError
        For a key that is not a UNet3D argument.
    """
    if net is not None and hasattr(net, "model_dump"):
        net = net.model_dump(mode="json")
    given = dict(net or {})
    signature = inspect.signature(UNet3D.__init__)
    parameters = {name: p for name, p in signature.parameters.items() if name != "self"}
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        raise TypeError(f"unknown UNet3D setting(s) {unknown}; allowed: {sorted(parameters)}")
    defaults = {name: p.default for name, p in parameters.items()}
    return _to_builtin({**defaults, **given})


class IsoNetModule(pl.LightningModule):
    """Train and run IsoNet's U-Net with Lightning.

    Parameters
    ----------
    net : dict, optional
        Keyword arguments for :class:`~isonet_pl.model.unet.UNet3D` (missing ones take its
        defaults, i.e. IsoNet's default network). A pydantic model is accepted and dumped.
    learning_rate : float, default 4e-4
        Adam's learning rate (IsoNet ``learning_rate``): constant, or the first of the schedule.
    lr_schedule : {"constant", "cosine"}, default "constant"
        How the rate changes with the optimiser step (:func:`scheduled_learning_rate`). The run's
        length in steps is set by the caller in :attr:`schedule_steps` before fitting (refine sets
        iterations × epochs × steps per epoch); the step is Lightning's ``global_step``, restored on
        resume, so a resumed run follows the same rates.
    meta : dict, optional
        Free information stored with the model in the checkpoint (normalisation, cube size,
        tilt range, settings...). Values must be numbers, strings, lists or dicts (numpy
        scalars and arrays, paths and pydantic models are converted).
    loss : {"mae", "fourier_split"}, optional
        The objective (see :data:`LOSSES`); unset: ``fourier_split`` when ``meta["method"]`` is
        ``n2n``, else ``mae`` (so checkpoints written before this argument load as trained).
    mw_weight : float, optional
        ``fourier_split``: weight of the input's-wedge region; unset: ``meta["mw_weight"]`` or 1.
    frequency_power : float, default 0
        ``fourier_split``: p of the loss's frequency weights ``|k|^-p`` (:func:`fourier_split_loss`).

    Attributes
    ----------
    net : UNet3D
        The network.

    Raises
    ------
    TypeError
        For an unknown ``net`` key or a ``meta`` value that cannot be stored.
    ValueError
        For an invalid ``net`` setting or a non-positive learning rate.

    Notes
    -----
    Subclasses change the objective by overriding :meth:`compute_loss` only (e.g. a
    Noise2Noise mode); the steps, logging and optimiser stay as they are.
    """

    def __init__(
        self,
        net: dict[str, Any] | None = None,
        learning_rate: float = 4e-4,
        meta: dict[str, Any] | None = None,
        loss: str | None = None,
        mw_weight: float | None = None,
        lr_schedule: str = "constant",
        frequency_power: float = 0.0,
    ) -> None:
        super().__init__()
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        meta = dict(meta or {})
        # checkpoints older than these arguments: the method and weight their meta recorded
        loss = loss or ("fourier_split" if meta.get("method") == Method.N2N else "mae")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        mw_weight = float(meta.get("mw_weight", 1.0) if mw_weight is None else mw_weight)
        if not (mw_weight >= 0 and math.isfinite(mw_weight)):
            raise ValueError(f"mw_weight must be non-negative, got {mw_weight}")
        if not (0 <= frequency_power <= 2):
            raise ValueError(f"frequency_power must be in [0, 2], got {frequency_power}")
        net_kwargs = _net_kwargs(net)
        # An explicit dict (not the raw arguments): the checkpoint holds the completed network
        # settings and plain-typed meta, so `load_from_checkpoint(path)` alone rebuilds it.
        self.save_hyperparameters(
            {
                "net": net_kwargs,
                "learning_rate": float(learning_rate),
                "meta": _to_builtin(meta),
                "loss": loss,
                "mw_weight": mw_weight,
                "lr_schedule": lr_schedule,
                "frequency_power": float(frequency_power),
            }
        )
        self.net = UNet3D(**net_kwargs)
        self.schedule_steps: int | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """The free dict stored with the model (saved in and restored from checkpoints)."""
        return self.hparams["meta"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network: ``(b, 1, z, y, x)`` → ``(b, 1, z, y, x)``.

        Parameters
        ----------
        x : torch.Tensor
            Input batch ``(b, in_channels, z, y, x)``, sizes multiples of
            ``self.net.min_input_multiple``.

        Returns
        -------
        torch.Tensor
            Output batch ``(b, out_channels, z, y, x)``.
        """
        return self.net(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Compute and log the training loss of one batch.

        Parameters
        ----------
        batch : dict of torch.Tensor
            ``"input"`` and ``"target"`` ``(b, 1, z, y, x)`` (see the module docstring).
        batch_idx : int
            Index of the batch in the epoch.

        Returns
        -------
        torch.Tensor
            The scalar loss.
        """
        loss = self.compute_loss(self(batch["input"]), batch)
        self._log_metrics("train", loss, batch_size=batch["input"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Compute and log the validation loss of one batch (averaged over the epoch).

        Parameters
        ----------
        batch : dict of torch.Tensor
            ``"input"`` and ``"target"`` ``(b, 1, z, y, x)`` (see the module docstring).
        batch_idx : int
            Index of the batch in the epoch.

        Returns
        -------
        torch.Tensor
            The scalar loss.
        """
        loss = self.compute_loss(self(batch["input"]), batch)
        self._log_metrics("val", loss, batch_size=batch["input"].shape[0])
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Set the scheduled learning rate of this step (``lr_schedule``) and log it as ``lr``."""
        lr = scheduled_learning_rate(self.hparams["learning_rate"], self.trainer.global_step, self.schedule_steps,
                                     self.hparams.get("lr_schedule", "constant"))
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        self.log("lr", lr, on_step=False, on_epoch=True, batch_size=1, sync_dist=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with IsoNet's (Keras's) settings; its rate is set each step (:meth:`on_train_batch_start`).

        Returns
        -------
        torch.optim.Optimizer
            ``Adam(lr=learning_rate, betas=(0.9, 0.999), eps=1e-7)``.
        """
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams["learning_rate"], betas=ADAM_BETAS, eps=ADAM_EPS
        )

    def compute_loss(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training objective; override to change it (e.g. for Noise2Noise).

        Parameters
        ----------
        pred : torch.Tensor
            The network's output ``(b, 1, z, y, x)`` for ``batch["input"]``.
        batch : dict of torch.Tensor
            The batch, with ``"target"`` ``(b, 1, z, y, x)`` (and ``"regions"`` for ``fourier_split``).

        Returns
        -------
        torch.Tensor
            A scalar float32 loss: IsoNet's mean absolute error, or the even/odd Fourier-split loss.
        """
        if self.hparams["loss"] == "fourier_split":
            if "regions" not in batch:
                raise ValueError("the fourier_split loss needs batches with 'regions' (even/odd pairs)")
            loss, measured, wedge = fourier_split_loss(pred, batch["target"], batch["regions"],
                                                       self.hparams["mw_weight"], batch.get("target_wedge"),
                                                       terms=True,
                                                       frequency_power=self.hparams.get("frequency_power", 0.0))
            if self._trainer is not None:  # the two regions apart (unweighted means), per epoch
                stage = "train" if self.training else "val"
                b = pred.shape[0]
                self.log(f"{stage}/loss_measured", measured.detach(), on_step=False, on_epoch=True, batch_size=b)
                self.log(f"{stage}/loss_wedge", wedge.detach(), on_step=False, on_epoch=True, batch_size=b)
            return loss
        return mean_absolute_error(pred, batch["target"])

    def _log_metrics(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Log ``{stage}/loss``: per step and per epoch in training, per epoch otherwise."""
        training = stage == "train"
        self.log(
            f"{stage}/loss",
            loss,
            on_step=training,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
        )
