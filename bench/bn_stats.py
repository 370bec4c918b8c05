"""Batch-norm running statistics of refine checkpoints against the batch statistics of the same inputs (issue #19).

Run: ``bench/bn_stats.py RESULT_DIR ITER [ITER ...]`` (RESULT_DIR inside a ``bench/quality.py --out`` folder, its
subtomo.star one level up). Feeds the first 16 half subtomograms (centre 32^3) through each checkpoint and prints the
mean relative error of the running variance, the mean offset of the running mean (in batch std), and the correlation
of the eval-mode output with the output of the same weights on batch statistics (dropout off).
"""
import sys

import numpy as np
import torch

torch.set_num_threads(1)
from isonet_pl.data.pairs import centre_crop
from isonet_pl.workflows.predict import load_model
from isonet_pl.workflows.refine import load_subtomograms

d = sys.argv[1]
subs = load_subtomograms(d + "/../subtomo.star")
x = torch.from_numpy(np.stack([centre_crop(v, 32) for v in subs.halves[:16, 0]]))[:, None]
for it in sys.argv[2:]:
    m = load_model(f"{d}/model_iter{int(it):02d}.ckpt")
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm3d)]
    stats = []
    hooks = [b.register_forward_hook(lambda mod, inp, out, s=stats: s.append((inp[0].mean((0,2,3,4)), inp[0].var((0,2,3,4))))) for b in bns]
    with torch.no_grad():
        m.eval(); ye = m(x)
        for h in hooks: h.remove()
        m.train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout3d) or isinstance(mod, torch.nn.Dropout): mod.eval()
        mom = [b.momentum for b in bns]
        for b in bns: b.momentum = 0.0
        yt = m(x)
    r = [float(((b.running_var - v).abs() / v).mean()) for b, (mu, v) in zip(bns, stats, strict=False)]
    rm = [float(((b.running_mean - mu).abs() / v.sqrt()).mean()) for b, (mu, v) in zip(bns, stats, strict=False)]
    c = float(np.corrcoef(ye.flatten().numpy(), yt.flatten().numpy())[0, 1])
    print(f"iter {it}: BN var rel. error mean {np.mean(r):.2f} max {np.max(r):.2f}; mean offset/std mean {np.mean(rm):.2f} max {np.max(rm):.2f}; corr(eval-mode output, batch-stat output) {c:.3f}")
