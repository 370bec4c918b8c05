"""Batch-norm running statistics of refine checkpoints against the batch statistics of the same inputs (issue #19).

Run: ``.venv/bin/python bench/studies/bn_stats.py RESULT_DIR ITER [ITER ...]`` (RESULT_DIR inside a
``bench/quality/quality.py --out`` folder, its subtomo.star one level up). Feeds the first 16 half subtomograms
(centre 32³) through each checkpoint and prints the mean relative error of the running variance, the mean offset of
the running mean (in batch standard deviations), and the correlation of the eval-mode output with the output of the
same weights on batch statistics (dropout off).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from isonet_pl.data.pairs import centre_crop
from isonet_pl.training.subtomograms import load_subtomograms
from isonet_pl.workflows.predict import load_model


@torch.no_grad()
def compare(model, x: torch.Tensor) -> tuple[list[float], list[float], float]:
    """(relative variance errors, mean offsets in std, output correlation) of every batch norm of ``model``."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    stats: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(module, inputs, output):
        stats.append((inputs[0].mean((0, 2, 3, 4)), inputs[0].var((0, 2, 3, 4))))

    hooks = [b.register_forward_hook(record) for b in norms]
    model.eval()
    eval_out = model(x)
    for hook in hooks:
        hook.remove()
    model.train()
    for module in model.modules():
        if isinstance(module, (torch.nn.Dropout, torch.nn.Dropout3d)):
            module.eval()
    for b in norms:
        b.momentum = 0.0  # batch statistics, running ones untouched
    batch_out = model(x)
    var_err = [float(((b.running_var - v).abs() / v).mean()) for b, (_, v) in zip(norms, stats, strict=True)]
    offsets = [float(((b.running_mean - mu).abs() / v.sqrt()).mean()) for b, (mu, v) in zip(norms, stats, strict=True)]
    corr = float(np.corrcoef(eval_out.flatten().numpy(), batch_out.flatten().numpy())[0, 1])
    return var_err, offsets, corr


def main() -> None:
    torch.set_num_threads(1)
    folder = sys.argv[1]
    subs = load_subtomograms(folder + "/../subtomo.star")
    x = torch.from_numpy(np.stack([centre_crop(v, 32) for v in subs.halves[:16, 0]]))[:, None]
    for it in sys.argv[2:]:
        var_err, offsets, corr = compare(load_model(f"{folder}/model_iter{int(it):02d}.ckpt"), x)
        print(f"iter {it}: BN var rel. error mean {np.mean(var_err):.2f} max {np.max(var_err):.2f}; "
              f"mean offset/std mean {np.mean(offsets):.2f} max {np.max(offsets):.2f}; "
              f"corr(eval-mode output, batch-stat output) {corr:.3f}")


if __name__ == "__main__":
    main()
