"""Which inputs the batch-norm statistics of a trained even/odd model should come from (no training).

Run: ``.venv/bin/python bench/studies/bn_adapt.py OUT_DIR RESULT [OUT_DIR RESULT ...] [--iteration 10]
[--plan CORE:HALO] [--bn_cube N]``

OUT_DIR is a ``bench/quality/quality.py --out`` run folder and RESULT the name of its refine folder (e.g.
``results_n2n_bg``). ``refine --recalibrate_bn`` sets the saved model's running statistics from 128 training
inputs: rotated *half* subtomograms, wedge-filled, with the wedge imposed again. ``predict`` runs the model on
the *average* tomogram, which has half the noise variance of a half in the same normalised units, so its
activations have other statistics than those the model was calibrated with. For the checkpoint of
``--iteration`` this prints overall / in-wedge / measured-region correlation with the ground truth, after
predict's ``--denoise``, of the network's output on the average tomogram (predict's tiles, or ``--plan``'s)
with statistics (recalibrated on cubes of the training cube's edge, or ``--bn_cube``'s):

* ``saved``: the checkpoint's (what ``predict`` writes);
* ``average, subtomograms``: recalibrated on cubes at the centres of the average subtomograms at the training
  positions (``subtomo.star``; the tomogram's normalisation; no rotation, their own wedge);
* ``halves, subtomograms``: the same on the even and odd halves at those positions (isolates the noise level
  from the fill and the rotation);
* ``average, anywhere``: recalibrated on cubes drawn uniformly over the whole average tomogram (the test-time
  statistics of what predict reads, including the empty slices);
* ``halves, tiles``: :func:`isonet_pl.predict.adapt.adapt_batch_norm` on the even and odd halves through the
  prediction's own tiles (what ``predict --batch_norm_statistics halves`` does; ``--bn_cube`` does not apply);
* ``halves, tiles, both`` (only when named in ``--sources``): the same statistics, the network run on each half
  and the two outputs averaged (``predict --halves both``).

``--sources`` picks some of them (names as above separated by ``;``, e.g. ``'saved;halves, tiles'``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import starfile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from quality.iterations import as_predict  # noqa: E402

from isonet_pl.demo import BAND  # noqa: E402
from isonet_pl.evaluate import wedge_correlations  # noqa: E402
from isonet_pl.io.mrc import read_mrc  # noqa: E402
from isonet_pl.normalization import Normalization  # noqa: E402
from isonet_pl.predict.adapt import adapt_batch_norm  # noqa: E402
from isonet_pl.predict.predictor import tile_plan  # noqa: E402
from isonet_pl.preprocess.spectral import wiener_denoise  # noqa: E402
from isonet_pl.training.callbacks import BN_SAMPLES, recalibrate_batch_norm  # noqa: E402
from isonet_pl.workflows.predict import load_model  # noqa: E402


def cubes_at(volume: np.ndarray, centres: np.ndarray, size: int) -> list[dict[str, torch.Tensor]]:
    """(1, size, size, size) float32 cubes of a normalised (nz, ny, nx) volume at (n, 3) zyx centres (clipped
    inside the volume), as a dataset of ``{"input": tensor}``."""
    out = []
    for c in centres:
        start = [int(np.clip(round(float(v)) - size // 2, 0, n - size)) for v, n in zip(c, volume.shape, strict=True)]
        cube = volume[start[0]:start[0] + size, start[1]:start[1] + size, start[2]:start[2] + size]
        out.append({"input": torch.from_numpy(np.ascontiguousarray(cube, dtype=np.float32))[None]})
    return out


def score_run(out: Path, result: str, iteration: int, plan: tuple[int, int] | None = None,
              bn_cube: int | None = None, only: list[str] | None = None) -> None:
    """Print the scores of the checkpoint of ``iteration`` with each source of batch-norm statistics, predicted
    through ``plan`` (core, halo; default predict's) and recalibrated on cubes of edge ``bn_cube`` (default the
    training cube)."""
    sim = json.loads((out / "simulation.json").read_text())
    tilt = (sim["tilt_min"], sim["tilt_max"])
    truth = read_mrc(out / "ground_truth" / "sim_00.mrc")[0]
    average = read_mrc(out / "tomos" / "sim_00.mrc")[0]
    halves = [read_mrc(out / name / "sim_00.mrc")[0] for name in ("even", "odd")]
    saved = load_model(out / result / f"model_iter{iteration:02d}.ckpt")
    precision = saved.meta.get("settings", {}).get("precision", "32")
    norm = Normalization.of_volume(average, bool(saved.meta.get("normalize_percentile", True)))
    star = starfile.read(out / "subtomo.star")
    cube = bn_cube or int(star["rlnCubeSize"].iloc[0])
    centres = star[["rlnCoordinateZ", "rlnCoordinateY", "rlnCoordinateX"]].to_numpy(float)
    rng = np.random.default_rng(0)
    anywhere = np.stack([rng.uniform(0, n, BN_SAMPLES) for n in average.shape], axis=1)
    sources = {} if only and all(name in ("saved", "halves, tiles") for name in only) else {
        "average, subtomograms": cubes_at(norm.apply(average), centres, cube),
        "halves, subtomograms": cubes_at(norm.apply(halves[0]), centres, cube)
        + cubes_at(norm.apply(halves[1]), centres, cube),
        "average, anywhere": cubes_at(norm.apply(average), anywhere, cube),
    }

    def show(name, module, inputs=None):
        core, halo = plan or tile_plan(module.net, "cpu")
        output = np.mean([as_predict(module, v, precision, norm, (core, halo)) for v in inputs or [average]], axis=0)
        volume = wiener_denoise(output, tilt, corrected=True)[0].compute()
        s = wedge_correlations(volume, truth, *tilt, **BAND)
        print(f"{out.name + '/' + result:44s} tiles {core}:{halo}, bn cube {cube} {name:24s} "
              f"{s['overall']:.3f} / {s['in_wedge']:.3f} / {s['measured']:.3f}", flush=True)

    if not only or "saved" in only:
        show("saved", saved)
    for name, data in sources.items():
        if only and name not in only:
            continue
        module = copy.deepcopy(saved)
        recalibrate_batch_norm(module, data, 8, torch.device("cpu"), precision)
        show(name, module)
    if not only or "halves, tiles" in only:
        module = copy.deepcopy(saved)
        adapt_batch_norm(module, halves, norm, *(plan or tile_plan(module.net, "cpu")), precision=precision)
        show("halves, tiles", module)
    if only and "halves, tiles, both" in only:  # predict --halves both with those statistics
        module = copy.deepcopy(saved)
        adapt_batch_norm(module, halves, norm, *(plan or tile_plan(module.net, "cpu")), precision=precision)
        show("halves, tiles, both", module, halves)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="pairs OUT_DIR RESULT")
    parser.add_argument("--iteration", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plan", default=None, help="core:halo of the prediction tiles (default predict's)")
    parser.add_argument("--bn_cube", type=int, default=None, help="edge of the recalibration cubes (default the "
                        "training cube)")
    parser.add_argument("--sources", default=None, help="names of the sources to score, separated by ';' "
                        "(default all)")
    args = parser.parse_args()
    only = [name.strip() for name in args.sources.split(";")] if args.sources else None
    if len(args.runs) % 2:
        parser.error("give OUT_DIR RESULT pairs")
    torch.set_num_threads(args.threads)
    for out, result in zip(args.runs[::2], args.runs[1::2], strict=True):
        plan = tuple(int(v) for v in args.plan.split(":")) if args.plan else None
        score_run(Path(out), result, args.iteration, plan, args.bn_cube, only)


if __name__ == "__main__":
    main()
