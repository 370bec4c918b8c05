"""Does bf16 inference change the scores? The same checkpoints predicted in float32 and bf16, side by side.

Run: ``.venv/bin/python bench/studies/precision_quality.py DIR [--methods n2n,isonet] [--iteration 10]`` where DIR is
one phantom folder of ``bench/quality/quality.py --phantoms`` (e.g. ``bench/out/quality/nosheets_seed0``) holding
``results_<method>/model_iterNN.ckpt``. Prints, per model and precision, the time of the whole-tomogram
prediction and its overall / in-wedge / measured-region correlation with the ground truth (scored as
``bench/quality/iterations.py`` does), and how far the two outputs are apart.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from isonet_pl.demo import BAND
from isonet_pl.evaluate import wedge_correlations
from isonet_pl.heap import reused_heap
from isonet_pl.io.mrc import read_mrc
from isonet_pl.normalization import Normalization
from isonet_pl.predict.predictor import predict_block
from isonet_pl.workflows.predict import load_model

PAD = 16  # voxels mirrored beyond the faces: the outputs of two precisions are compared, not scored as predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--methods", default="n2n,isonet")
    parser.add_argument("--iteration", type=int, default=10)
    parser.add_argument("--tilt", type=float, nargs=2, default=(-60.0, 60.0))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    truth = read_mrc(folder / "ground_truth" / "sim_00.mrc")[0]
    volume = read_mrc(folder / "tomos" / "sim_00.mrc")[0]
    norm = Normalization.of_volume(volume, True)
    for method in args.methods.split(","):
        module = load_model(folder / f"results_{method}" / f"model_iter{args.iteration:02d}.ckpt")
        outs = {}
        for precision in ("32", "bf16-mixed"):
            t0 = time.perf_counter()
            with reused_heap():
                out = predict_block(np.pad(volume, PAD, mode="symmetric"), module, norm, precision=precision)
            outs[precision] = out[PAD:-PAD, PAD:-PAD, PAD:-PAD]
            scores = wedge_correlations(outs[precision], truth, *args.tilt, **BAND)
            print(f"{method} {precision:10s} {time.perf_counter() - t0:6.1f} s  overall {scores['overall']:.4f}  "
                  f"in-wedge {scores['in_wedge']:.4f}  measured {scores['measured']:.4f}", flush=True)
        a, b = outs["32"], outs["bf16-mixed"]
        print(f"{method}: relative RMS difference {np.sqrt(np.mean((a - b) ** 2) / np.mean(a**2)):.4f}, correlation "
              f"{np.corrcoef(a.ravel(), b.ravel())[0, 1]:.4f}", flush=True)


if __name__ == "__main__":
    main()
