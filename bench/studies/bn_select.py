"""Can predict tell, without the ground truth, which batch-norm statistics suit a trained even/odd model?

Run: ``.venv/bin/python bench/studies/bn_select.py OUT_DIR [OUT_DIR ...] [--result results_n2n_bg] [--iteration 10]``

OUT_DIR is a ``bench/quality/quality.py --out`` run folder with halves. For the checkpoint's statistics (``model``) and
those measured on the halves through predict's tiles (``halves``, :func:`isonet_pl.predict.adapt.adapt_batch_norm`)
this computes, through predict's tiles and with the average tomogram's normalisation:

* the self-supervised criterion: the correlation, in the measured region of Fourier space (10–50 % of Nyquist),
  of the network's output on one half with the other half (even → odd and odd → even, averaged). The other
  half's noise is independent of the output, so this correlation is the one with the truth times a factor that
  does not depend on the model: it ranks two choices as the truth would, for the output on a half;
* what predict writes and the truth scores: the output on the average tomogram after ``--denoise``, overall /
  in-wedge / measured region against the ground truth (``average``), and the mean of the outputs on the two
  halves after ``--denoise`` (``both``, what ``predict --halves both`` writes).

The question is whether the criterion on the halves picks the choice that scores higher on the average.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from isonet_pl.demo import BAND
from isonet_pl.evaluate import wedge_correlations
from isonet_pl.io.mrc import read_mrc
from isonet_pl.normalization import Normalization
from isonet_pl.predict.adapt import adapt_batch_norm
from isonet_pl.predict.predictor import tile_plan
from isonet_pl.workflows.predict import load_model


def main() -> None:
    import starfile
    import torch
    from quality.iterations import as_predict

    from isonet_pl.preprocess.spectral import NoNoiseEstimate, wiener_denoise

    parser = argparse.ArgumentParser()
    parser.add_argument("out_dirs", nargs="+")
    parser.add_argument("--result", default="results_n2n_bg")
    parser.add_argument("--iteration", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for folder in map(Path, args.out_dirs):
        truth = read_mrc(folder / "ground_truth" / "sim_00.mrc")[0]
        df = starfile.read(folder / "tomograms.star")
        tilt = (float(df["rlnTiltMin"].iloc[0]), float(df["rlnTiltMax"].iloc[0]))
        average = read_mrc(folder / "tomos" / "sim_00.mrc")[0]
        halves = [read_mrc(folder / name / "sim_00.mrc")[0] for name in ("even", "odd")]
        saved = load_model(folder / args.result / f"model_iter{args.iteration:02d}.ckpt")
        norm = Normalization.of_volume(average, bool(saved.meta.get("normalize_percentile", True)))
        plan = tile_plan(saved.net, "cpu")
        precision = saved.meta.get("settings", {}).get("precision", "32")
        measured = copy.deepcopy(saved)
        adapt_batch_norm(measured, halves, norm, *plan, precision=precision)
        for name, module in (("model", saved), ("halves", measured)):
            outputs = [as_predict(module, half, norm=norm) for half in halves]
            criterion = np.mean([wedge_correlations(outputs[i], halves[1 - i], *tilt, **BAND)["measured"]
                                 for i in (0, 1)])
            scores = {}
            for what, out in (("average", as_predict(module, average, norm=norm)),
                              ("both", (outputs[0] + outputs[1]) / 2)):
                try:
                    out = wiener_denoise(out, tilt, corrected=True)[0].compute()
                except NoNoiseEstimate:
                    pass
                scores[what] = wedge_correlations(out, truth, *tilt, **BAND)
            rows[f"{folder.name} {name}"] = {"criterion": float(criterion), **scores}
            print(f"{folder.name:24s} {name:7s} criterion {criterion:.4f}   against the truth: " + "; ".join(
                f"{what} {r['overall']:.3f} / {r['in_wedge']:.3f} / {r['measured']:.3f}" for what, r in scores.items()),
                flush=True)
    Path(args.out_dirs[0]).parent.joinpath("bn_select.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
