"""Quality benchmark: missing-wedge correction measured against the ground truth of a simulation.

Run: ``.venv/bin/python bench/quality.py [--out bench/out/quality] [--config conf/demo.yaml]
[--methods isonet,n2n] [--seed N]``

Runs the inputs of ``make demo`` once (simulate, deconv when the simulation has a CTF,
make_mask, extract), then for each refine method (``isonet``; also ``n2n`` when the
simulation has even/odd halves) refine + predict, and reports the correlation with the ground
truth, overall (real space) and inside the missing wedge (Fourier coefficients the tilt range did
not sample, between 10 % and 50 % of Nyquist: below 10 % the finite box leaks measured power into
the wedge even for a perfect reconstruction), for the raw tomogram (the average of the halves), a
gaussian low-pass of it, the deconvolved one and each corrected one, all in one run, with the time
of each step. An n2n model is applied both ways: to each half with the two outputs averaged
(``--halves both``) and to the average tomogram (``--halves average``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from isonet_pl.config import load_config
from isonet_pl.data.wedge import apply_wedge, measured_region
from isonet_pl.evaluate import wedge_correlations
from isonet_pl.io.mrc import read_mrc
from isonet_pl.workflows.demo import BAND, demo_config, demo_inputs
from isonet_pl.workflows.predict import predict
from isonet_pl.workflows.refine import refine


def without_wedge(volume: np.ndarray, tilt_min: float, tilt_max: float) -> np.ndarray:
    """``volume`` (nz, ny, nx) with the Fourier coefficients outside the tilt range set to 0."""
    return apply_wedge(volume, measured_region(volume.shape, tilt_min, tilt_max)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out/quality")
    parser.add_argument("--config", default=None, help="settings (default: the demo preset)")
    parser.add_argument("--methods", default=None, help="refine methods to compare, e.g. isonet,n2n "
                                                        "(default: isonet, and n2n when the simulation has halves)")
    parser.add_argument("--seed", type=int, default=None, help="another phantom, noise and training seed "
                                                                   "(simulate and refine seed; default: the config's)")
    args = parser.parse_args()
    cfg = load_config(args.config) if args.config else demo_config()
    if args.seed is not None:
        cfg = cfg.model_copy(update={"simulate": cfg.simulate.model_copy(update={"seed": args.seed}),
                                     "refine": cfg.refine.model_copy(update={"seed": args.seed})})
    methods = args.methods.split(",") if args.methods else ["isonet"] + (["n2n"] if cfg.simulate.halves else [])
    out = Path(args.out).resolve()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    for item in demo_inputs(out, cfg):
        if isinstance(item, str):
            print(item, flush=True)
        else:
            star, sub_star = item
    seconds["simulate + deconv + make_mask + extract"] = time.perf_counter() - t0

    truth, _ = read_mrc(out / "ground_truth" / "sim_00.mrc")
    volumes = {"raw": read_mrc(out / "tomos" / "sim_00.mrc")[0]}
    volumes["gaussian low-pass of raw (sigma 1.5)"] = ndi.gaussian_filter(volumes["raw"], 1.5)
    # reference: a perfect denoiser that does not fill the wedge
    volumes["ground truth, wedge removed (reference)"] = without_wedge(truth, cfg.simulate.tilt_min,
                                                                       cfg.simulate.tilt_max)
    if (out / "deconv" / "sim_00.mrc").exists():
        volumes["deconvolved"] = read_mrc(out / "deconv" / "sim_00.mrc")[0]
    for method in methods:
        result_dir = out / f"results_{method}"
        t1 = time.perf_counter()
        model = refine(sub_star, cfg.refine.model_copy(update={"method": method, "result_dir": str(result_dir)}))
        seconds[f"refine {method}"] = time.perf_counter() - t1
        print(f"refine --method {method}: {seconds[f'refine {method}']:.0f} s -> {model}", flush=True)
        for halves in (("both", "average") if method == "n2n" else ("average",)):
            folder = out / f"corrected_{method}" / halves
            t1 = time.perf_counter()
            predict(star, model, cfg.predict.model_copy(update={"output_dir": str(folder), "halves": halves}), cfg.io)
            name = f"{method}" + {"both": " (model on each half, mean)", "average": ""}[halves]
            if method == "n2n" and halves == "average":
                name += " (model on the average)"
            seconds[f"predict {name}"] = time.perf_counter() - t1
            volumes[name] = read_mrc(folder / "sim_00_corrected.mrc")[0]
    seconds["total"] = time.perf_counter() - t0

    tilt = (cfg.simulate.tilt_min, cfg.simulate.tilt_max)
    results = {name: wedge_correlations(vol, truth, *tilt, **BAND) for name, vol in volumes.items()}
    results["seconds"] = seconds
    (out / "quality.json").write_text(json.dumps(results, indent=1))
    for name in volumes:
        r = results[name]
        print(f"{name:42s} overall {r['overall']:.3f}  in-wedge {r['in_wedge']:.3f}  measured {r['measured']:.3f}")
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
