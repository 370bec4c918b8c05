"""Where a corrected tomogram's overall correlation is won or lost: per Fourier shell and region.

Run: ``.venv/bin/python bench/quality/shells.py OUT_DIR RUN [RUN ...] [--iteration N] [--threads 1]``

OUT_DIR is a ``bench/quality/quality.py --out`` folder of one phantom (it holds ``simulation.json``,
``ground_truth/``, ``tomos/``, maybe ``deconv/``, and ``RUN/model_iterNN.ckpt``, e.g. ``results_n2n_b4d0``).
The checkpoint of iteration N (default: the last) predicts the whole tomogram as ``bench/quality/iterations.py``
does (the network's output, no ``--denoise``), and the prediction is split against the ground truth with
:func:`isonet_pl.evaluate.shell_correlations`: for each shell of |k| (fractions of Nyquist) and region
(the input's missing wedge / the measured region) the ground truth's and the prediction's share of
power, the correlation there, and the row's contribution to the overall real-space correlation (the
contributions add up to it). Also printed: the correlation of the specimen's Z profile (the mean of
each XY slice, the Fourier line k_x = k_y = 0 inside the wedge) for the raw tomogram and the prediction, the
label-free correlation of the prediction's profile with the input's, and the overall score with the input's
profile put in the prediction's place (scaled to the prediction's).
Where the truth has empty Z slices (outside the specimen's slab), also the share of the prediction's
variance there and the overall correlation with the prediction made flat there (what a clean background
would add). The predictions are kept as ``OUT_DIR/pred_RUN_iterNN.npy`` for a second look.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from isonet_pl.evaluate import shell_correlations, z_profile_correlation  # noqa: E402
from isonet_pl.io.mrc import read_mrc  # noqa: E402
from isonet_pl.workflows.predict import load_model  # noqa: E402
from quality.iterations import as_predict  # noqa: E402


def prediction(out: Path, run: str, iteration: int | None, volume: np.ndarray) -> tuple[np.ndarray, str]:
    """The network output of ``out/run``'s checkpoint for ``volume`` (cached as .npy) and its name."""
    checkpoints = sorted((out / run).glob("model_iter*.ckpt"))
    if not checkpoints:
        raise SystemExit(f"{out / run}: no model_iterNN.ckpt")
    path = checkpoints[-1] if iteration is None else out / run / f"model_iter{iteration:02d}.ckpt"
    cache = out / f"pred_{run}_{path.stem.removeprefix('model_')}.npy"
    if cache.exists():
        return np.load(cache), path.stem
    module = load_model(path)
    pred = as_predict(module, volume)
    np.save(cache, pred.astype(np.float32))
    return pred, path.stem


def with_profile_of(pred: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``pred`` (nz, ny, nx) with its Z profile (the mean of each XY slice) replaced by ``source``'s, rescaled to
    the standard deviation of ``pred``'s own profile (label-free: what a slab profile taken from the input
    would give)."""
    pp, ps = pred.mean(axis=(1, 2)), source.mean(axis=(1, 2))
    ps = (ps - ps.mean()) * (pp.std() / (ps.std() + 1e-12)) + pp.mean()
    return pred - (pp - ps)[:, None, None]


def flat_outside(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float] | None:
    """Where the ground truth has empty Z slices (outside the specimen's slab): the overall correlation with
    the prediction made flat there (its mean over them), and the share of the prediction's variance they hold.
    None when no slice is empty."""
    empty = truth.std(axis=(1, 2)) == 0
    if not empty.any():
        return None
    flat = pred.astype(np.float64)
    centred = flat - flat.mean()
    share = float((centred[empty] ** 2).sum() / (centred ** 2).sum())
    flat[empty] = flat[empty].mean()
    return float(np.corrcoef(flat.ravel(), truth.ravel())[0, 1]), share


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", help="a bench/quality/quality.py --out folder of one phantom")
    parser.add_argument("runs", nargs="+", help="results folders in it, e.g. results_n2n_b4d0")
    parser.add_argument("--iteration", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input", default=None,
                        help="the tomogram the runs were trained on, relative to OUT_DIR (default: deconv/sim_00.mrc "
                             "if there, else tomos/sim_00.mrc; the single-tomogram runs of bench/quality/quality.py: "
                             "deconv_single/sim_00.mrc)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    sim = json.loads((out / "simulation.json").read_text())
    tilt = (sim["tilt_min"], sim["tilt_max"])
    truth = read_mrc(out / "ground_truth" / "sim_00.mrc")[0].astype(np.float64)
    source = out / "deconv" / "sim_00.mrc"
    if args.input:
        source = out / args.input
    elif not source.exists():
        source = out / "tomos" / "sim_00.mrc"
    volume = read_mrc(source)[0]
    print(f"{out.name}: tilt {tilt[0]:g}…{tilt[1]:g}; Z profile correlation of the raw tomogram "
          f"{z_profile_correlation(volume.astype(np.float64), truth):.3f}")
    for run in args.runs:
        pred, name = prediction(out, run, args.iteration, volume)
        rows = shell_correlations(pred, truth, *tilt)
        total = sum(r["contribution"] for r in rows)
        print(f"\n{run} {name}: overall {total:.3f}; Z profile correlation "
              f"{z_profile_correlation(pred.astype(np.float64), truth):.3f}")
        swapped = with_profile_of(pred.astype(np.float64), volume.astype(np.float64))
        agreement = z_profile_correlation(pred.astype(np.float64), volume.astype(np.float64))
        score = np.corrcoef(swapped.ravel(), truth.ravel())[0, 1]
        print(f"label-free: Z profile correlation with the input's {agreement:.3f}; overall {score:.3f} with the "
              "input's profile (at the prediction's profile scale)")
        outside = flat_outside(pred, truth)
        if outside is not None:
            print(f"outside the slab (empty Z slices of the truth): {100 * outside[1]:.1f} % of the prediction's "
                  f"variance; overall {outside[0]:.3f} with the prediction flat there")
        print("| shell (Nyquist) | region | truth power % | prediction power % | correlation | contribution |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['low']:.3f}–{r['high']:.3f} | {r['region']} | {100 * r['truth_power']:.2f} | "
                  f"{100 * r['pred_power']:.2f} | {r['correlation']:.3f} | {r['contribution']:.4f} |")


if __name__ == "__main__":
    main()
