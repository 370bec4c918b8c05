"""Score a refine checkpoint after recalibrating its batch-norm statistics (issue #19).

Run: ``bench/recalibrate_checkpoint.py OUT ITER RESULTS`` (OUT a ``bench/quality.py --out`` phantom folder, RESULTS
the results folder in it): recalibrates on 128 half subtomograms (centre 32^3) and scores as bench/iterations.py.
"""
import sys

import numpy as np
import torch

sys.path.insert(0, "bench")
torch.set_num_threads(1)
from iterations import score

from isonet_pl.data.pairs import centre_crop
from isonet_pl.io.mrc import read_mrc
from isonet_pl.workflows.predict import load_model
from isonet_pl.workflows.refine import load_subtomograms, recalibrate_batch_norm

out = sys.argv[1]; it = int(sys.argv[2])
subs = load_subtomograms(out + "/subtomo.star")
class DS:
    def __init__(s): s.x = [torch.from_numpy(np.ascontiguousarray(centre_crop(v, 32)))[None] for v in subs.halves[:64].reshape(-1, 48, 48, 48)]
    def __len__(s): return len(s.x)
    def __getitem__(s, k): return {"input": s.x[k]}
truth = read_mrc(out + "/ground_truth/sim_00.mrc")[0]; vol = read_mrc(out + "/tomos/sim_00.mrc")[0]
m = load_model(f"{out}/{sys.argv[3]}/model_iter{it:02d}.ckpt")
recalibrate_batch_norm(m, DS(), 8, torch.device("cpu"))
m.eval()
s = score(m, vol, truth, (-60, 60))
print("RECAL", it, {k: round(v, 3) for k, v in s.items() if k in ("overall", "in_wedge", "measured")})
