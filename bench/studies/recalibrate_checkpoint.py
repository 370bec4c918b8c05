"""Score a refine checkpoint after recalibrating its batch-norm statistics (issue #19).

Run: ``.venv/bin/python bench/studies/recalibrate_checkpoint.py OUT ITER RESULTS`` (OUT a ``bench/quality/quality.py
--out`` phantom folder, RESULTS the results folder in it): recalibrates on the halves of 64 subtomograms (centre
32³) and scores as bench/quality/iterations.py does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from quality.iterations import score  # noqa: E402

from isonet_pl.data.pairs import centre_crop  # noqa: E402
from isonet_pl.io.mrc import read_mrc  # noqa: E402
from isonet_pl.training.callbacks import recalibrate_batch_norm  # noqa: E402
from isonet_pl.training.subtomograms import load_subtomograms  # noqa: E402
from isonet_pl.workflows.predict import load_model  # noqa: E402


class Inputs:
    """The centre 32³ of each half subtomogram, as refine's pair dataset gives inputs."""

    def __init__(self, halves: np.ndarray):
        self.x = [torch.from_numpy(np.ascontiguousarray(centre_crop(v, 32)))[None] for v in halves]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, k: int) -> dict:
        return {"input": self.x[k]}


def main() -> None:
    torch.set_num_threads(1)
    out, it, results = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    subs = load_subtomograms(out + "/subtomo.star")
    halves = subs.halves[:64].reshape(-1, *subs.halves.shape[-3:])
    truth = read_mrc(out + "/ground_truth/sim_00.mrc")[0]
    volume = read_mrc(out + "/tomos/sim_00.mrc")[0]
    model = load_model(f"{out}/{results}/model_iter{it:02d}.ckpt")
    recalibrate_batch_norm(model, Inputs(halves), 8, torch.device("cpu"))
    model.eval()
    scores = score(model, volume, truth, (-60, 60))
    print("RECAL", it, {k: round(v, 3) for k, v in scores.items() if k in ("overall", "in_wedge", "measured")})


if __name__ == "__main__":
    main()
