"""Batch-norm utilities of the U-Net: finding its batch norms, collecting their statistics over calls, and
letting their running statistics follow training (used by refine's recalibration and predict's test-time
statistics)."""

from __future__ import annotations

import contextlib

import torch


def batch_norms(module) -> list[torch.nn.Module]:
    """The batch-norm layers of ``module``."""
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def collecting_batch_norm(module):
    """Within the block the module runs as in prediction (eval mode: dropout off) except its batch norms, which
    normalise with each call's own statistics and set their running statistics to the plain average of those
    of all calls in the block (reset on entry; equal weight per call). The momenta and the module's mode are
    restored on exit."""
    norms = batch_norms(module)
    was_training = module.training
    momenta = [m.momentum for m in norms]
    module.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    try:
        yield norms
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        module.train(was_training)


#: Batch-norm momentum (torch's: the weight of each new batch) while training where the statistics are
#: recalibrated after every iteration: the running statistics then only serve the validation between epochs
#: (training uses batch statistics; the refill, the checkpoint and predict use the recalibrated ones), and
#: with Keras's 0.01 they lagged so far behind that one validation read 158.6 against ~0.45 (bench/RESULTS.md).
TRACKING_MOMENTUM = 0.1


def track_batch_norm(module, momentum: float = TRACKING_MOMENTUM) -> None:
    """Let every batch norm's running statistics follow training at ``momentum`` (not saved with the
    model: set again after loading a checkpoint). The trained and recalibrated weights do not change."""
    for m in batch_norms(module):
        m.momentum = momentum
