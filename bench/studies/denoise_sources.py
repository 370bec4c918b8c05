"""``predict --denoise`` with the noise from the empty slices against the tilt-axis model, on saved runs (issue #42).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/studies/denoise_sources.py OUT_DIR RESULT [OUT_DIR RESULT ...]
[--iteration 10] [--input deconv_single/sim_00.mrc]``

OUT_DIR is a ``bench/quality/quality.py --phantoms`` folder of one phantom, RESULT a results folder in it (e.g.
``results_isonet_b2000``). The checkpoint of ``--iteration`` predicts the tomogram it was trained on (as
``bench/quality/iterations.py`` does: predict's tiles, the checkpoint's statistics; ``--input``, relative to
OUT_DIR, else the single-tomogram input of a ``results_isonet*`` folder: ``deconv_single/sim_00.mrc`` when it
exists, else ``deconv/sim_00.mrc`` or ``tomos/sim_00.mrc``), and its output is scored against the ground truth
(overall / in-wedge / measured) as it is, after the Wiener filter with the noise of its empty slices (where it
has them) and with the tilt-axis model of its specimen slices (``isonet_pl.preprocess.spectral``, ``source``),
with each estimate's noise std, the tilt-axis model's fit residual, and the time of each filter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: quality.iterations

from quality.iterations import as_predict  # noqa: E402

from isonet_pl.demo import BAND  # noqa: E402
from isonet_pl.evaluate import wedge_correlations  # noqa: E402
from isonet_pl.io.mrc import read_mrc  # noqa: E402
from isonet_pl.preprocess.spectral import NoNoiseEstimate, wiener_denoise  # noqa: E402
from isonet_pl.workflows.predict import load_model  # noqa: E402


def input_of(out: Path, result: str, given: str | None) -> Path:
    """The tomogram a run trained on (see the module docstring)."""
    if given:
        return out / given
    names = (["deconv_single/sim_00.mrc"] if result.startswith("results_isonet") and "raw" not in result else [])
    for name in [*names, "deconv/sim_00.mrc", "tomos/sim_00.mrc"]:
        if (out / name).exists():
            return out / name
    raise SystemExit(f"no input tomogram in {out}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="OUT_DIR RESULT pairs")
    parser.add_argument("--iteration", type=int, default=10)
    parser.add_argument("--input", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {}
    for out_text, result in zip(args.runs[::2], args.runs[1::2], strict=True):
        out = Path(out_text)
        sim = json.loads((out / "simulation.json").read_text())
        tilt = (sim["tilt_min"], sim["tilt_max"])
        truth = read_mrc(out / "ground_truth" / "sim_00.mrc")[0]
        source = input_of(out, result, args.input)
        output = as_predict(load_model(out / result / f"model_iter{args.iteration:02d}.ckpt"), read_mrc(source)[0])
        rows = {"network output": wedge_correlations(output, truth, *tilt, **BAND)}
        for name in ("empty", "tilt_axis"):
            t0 = time.perf_counter()
            try:
                filtered, estimate = wiener_denoise(output, tilt, corrected=True, source=name)
                filtered = filtered.compute()
            except NoNoiseEstimate as exc:
                rows[name] = {"refused": str(exc)}
                continue
            rows[name] = {**wedge_correlations(filtered, truth, *tilt, **BAND), "noise_std": estimate.noise_std,
                          "other_std": estimate.other_std, "misfit": estimate.misfit,
                          "seconds": time.perf_counter() - t0, "describe": estimate.describe()}
        key = f"{out.name}/{result}"
        report[key] = rows
        print(f"{key} (input {source.relative_to(out)}, iteration {args.iteration}):")
        for name, r in rows.items():
            if "refused" in r:
                print(f"  {name:15s} refused: {r['refused']}")
                continue
            extra = f"; noise std {r['noise_std']:.3g} (other {r['other_std']:.3g}), misfit {r['misfit']:.3f}, " \
                    f"{r['seconds']:.0f} s" if "noise_std" in r else ""
            print(f"  {name:15s} {r['overall']:.3f} / {r['in_wedge']:.3f} ({r['measured']:.3f}){extra}", flush=True)
    name = Path(args.runs[0]).parent / f"denoise_sources_iter{args.iteration:02d}.json"
    previous = json.loads(name.read_text()) if name.exists() else {}
    name.write_text(json.dumps({**previous, **report}, indent=1, default=float))


if __name__ == "__main__":
    main()
