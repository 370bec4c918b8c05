"""Score every saved iteration of a refine run of ``bench/quality/quality.py``: how steady training is.

Run: ``.venv/bin/python bench/quality/iterations.py OUT_DIR [--method n2n] [--every 2]``

OUT_DIR is a ``bench/quality/quality.py --out`` folder (it holds ``ground_truth/``, ``tomos/``, maybe
``deconv/`` and ``results_<method>/model_iterNN.ckpt``). Each checkpoint predicts the whole
tomogram in memory (the deconvolved one when there is one, as ``predict`` does; through predict's own
tile plan, :func:`as_predict`; normalised with the tomogram's own statistics, as ``predict`` does; the
checkpoint's training precision and batch-norm statistics, i.e. ``predict --batch_norm_statistics model``),
and the result is scored against the ground truth as in ``bench/quality/quality.py`` (overall / in-wedge /
measured region). Also scores the weights averaged over the last
``--average`` checkpoints. About 25 s per checkpoint for the bench's small U-Net in bf16 on two cores.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from isonet_pl.demo import BAND
from isonet_pl.evaluate import wedge_correlations
from isonet_pl.io.mrc import read_mrc
from isonet_pl.normalization import Normalization
from isonet_pl.predict.predictor import predict_tomogram, tile_plan
from isonet_pl.workflows.predict import load_model


def as_predict(module, volume: np.ndarray, precision: str | None = None,
               norm: Normalization | None = None, plan: tuple[int, int] | None = None) -> np.ndarray:
    """The network's output for a whole (nz, ny, nx) tomogram as ``predict`` computes it before ``--denoise``:
    its tile plan on the CPU (cores with context, the network's own padding at the tomogram's faces) and the
    volume's normalisation (or ``norm``); ``precision`` defaults to the model's training precision (predict's
    auto precision scored the same to 0.001 on 2026-12-02's runs). Until 2026-12-02 the bench instead ran one
    whole-volume forward on the volume mirrored 16 voxels beyond its faces, which scored 0.002-0.09 under
    predict's output on four runs (bench/RESULTS.md). ``plan``: (core, halo) of the tiles instead of predict's."""
    precision = precision or module.meta.get("settings", {}).get("precision", "32")
    norm = norm or Normalization.of_volume(volume, bool(module.meta.get("normalize_percentile", True)))
    cube, halo = plan or tile_plan(module.net, "cpu")
    return np.asarray(predict_tomogram(volume, module, norm, chunk=cube, halo=halo,
                                       precision=precision).compute(scheduler="threads"))


def score(module, volume: np.ndarray, truth: np.ndarray, tilt: tuple[float, float],
          denoise: bool = False) -> dict[str, float]:
    """Predict ``volume`` (nz, ny, nx, stored contrast) with ``module`` and score it against ``truth``.

    With ``denoise`` also score the output after predict's ``--denoise`` filter (keys ``denoised_overall``,
    ``denoised_in_wedge``, ``denoised_measured``)."""
    from isonet_pl.preprocess.spectral import NoNoiseEstimate, wiener_denoise

    out = as_predict(module, volume)
    scores = wedge_correlations(out, truth, *tilt, **BAND)
    if denoise:
        try:
            filtered = wiener_denoise(out, tilt, corrected=True)[0].compute()
        except NoNoiseEstimate:  # as predict: the network's output kept as it is
            filtered = out
        scores.update({f"denoised_{k}": v for k, v in wedge_correlations(filtered, truth, *tilt, **BAND).items()})
    return scores


def averaged(paths: list[Path]):
    """A module whose floating-point weights and buffers are the mean of those of ``paths``."""
    modules = [load_model(p) for p in paths]
    mean = copy.deepcopy(modules[-1])
    state = mean.state_dict()
    for key, value in state.items():
        if value.dtype.is_floating_point:
            state[key] = sum(m.state_dict()[key] for m in modules) / len(modules)
    mean.load_state_dict(state)
    return mean


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", help="a bench/quality/quality.py --out folder")
    parser.add_argument("--method", default="n2n")
    parser.add_argument("--every", type=int, default=1, help="score every N-th iteration (the last always)")
    parser.add_argument("--average", type=int, default=4, help="also score the mean weights of the last N (0: no)")
    args = parser.parse_args()
    out = Path(args.out)
    torch.set_num_threads(2)
    sim = json.loads((out / "simulation.json").read_text())
    tilt = (sim["tilt_min"], sim["tilt_max"])
    truth = read_mrc(out / "ground_truth" / "sim_00.mrc")[0]
    source = out / "deconv" / "sim_00.mrc"
    volume = read_mrc(source if source.exists() else out / "tomos" / "sim_00.mrc")[0]
    checkpoints = sorted((out / f"results_{args.method}").glob("model_iter*.ckpt"))
    chosen = [c for i, c in enumerate(checkpoints, 1) if i % args.every == 0 or c == checkpoints[-1]]
    results = {}
    for path in chosen:
        results[path.stem] = score(load_model(path), volume, truth, tilt)
        r = results[path.stem]
        print(f"{path.stem}  overall {r['overall']:.3f}  in-wedge {r['in_wedge']:.3f}  measured {r['measured']:.3f}",
              flush=True)
    if args.average > 1 and len(checkpoints) >= args.average:
        name = f"mean weights of the last {args.average}"
        results[name] = r = score(averaged(checkpoints[-args.average:]), volume, truth, tilt)
        print(f"{name}  overall {r['overall']:.3f}  in-wedge {r['in_wedge']:.3f}  measured {r['measured']:.3f}")
    (out / f"iterations_{args.method}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
