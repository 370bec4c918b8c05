"""Quality benchmark: missing-wedge correction measured against the ground truth of a simulation.

Run: ``.venv/bin/python bench/quality/quality.py [--out bench/out/quality] [--config conf/demo.yaml]
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

Fixed-budget mode (``--phantoms``): for each phantom kind and seed, simulate a tomogram with even/odd
halves, extract, then train each method on the same number of training samples (``--samples``, e.g.
the issue's 4,320 = 10 iterations x 2 epochs x 54 steps x batch 4, refine's default batch on one device; the
issue's command used 27 steps x batch 8) with the refine defaults (only the
budget, the network size and ``--set`` overrides given), and score the checkpoint of every
``--every``-th iteration on the whole average tomogram: a learning curve (validation loss, overall and
in-wedge correlation against samples seen) per method, side by side. E.g.
``bench/quality/quality.py --phantoms sheets,nosheets,ctf,snr1,asym --seeds 0,1 --samples 4320``; kinds combine with
``+`` (``nosheets+asym``: no sheets and the asymmetric tilt range −45°…+60°, a 75° wedge; ``shift``: −50°…+70°,
asymmetric with the 60° wedge of ±60°).
Methods there: ``n2n`` (on the halves); on the same simulation as single-tomogram data, i.e. without its half
columns (:func:`single_project`): ``single`` (the defaults: deconv gives it halves made of its even and odd Y
planes, refine --method auto then trains the even/odd mode on them; issue #42), ``isonet`` (IsoNet's
single-tomogram mode with isonet-pl's filters: ``deconv --plane_halves false`` Wiener-filters it when it has no CTF;
the defaults until issue #42) and ``isonet-raw`` (IsoNet 0.2's single-tomogram path: no filter without a CTF; skipped
with a CTF, where it equals ``isonet``). Every
scored checkpoint is reported as the network's output (IsoNet 0.2's predict), computed through predict's
own tiling (``bench/quality/iterations.as_predict``; before 2026-12-02 a mirrored whole-volume forward, which scored
lower, bench/RESULTS.md) with the checkpoint's batch-norm statistics, and after predict's ``--denoise`` (the
default); the final line also scores ``predict``'s own output with its defaults on the last checkpoint (its
``--batch_norm_statistics`` log line and time); the references are the raw
tomogram, the best gaussian low-pass of it and the ground truth with its wedge removed (a perfect denoiser that
fills nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from isonet_pl.config import load_config
from isonet_pl.data.wedge import apply_wedge, measured_region
from isonet_pl.demo import BAND, demo_config, demo_inputs
from isonet_pl.evaluate import wedge_correlations
from isonet_pl.io.mrc import read_mrc
from isonet_pl.workflows.predict import predict
from isonet_pl.workflows.refine import refine


def without_wedge(volume: np.ndarray, tilt_min: float, tilt_max: float) -> np.ndarray:
    """``volume`` (nz, ny, nx) with the Fourier coefficients outside the tilt range set to 0."""
    return apply_wedge(volume, measured_region(volume.shape, tilt_min, tilt_max)).astype(np.float32)


#: phantom kinds of the fixed-budget mode: simulate settings on top of the base (sheets, SNR 0.5, no CTF, ±60°)
PHANTOMS = {
    "sheets": {},
    "nosheets": {"membranes": 0},
    "ctf": {"defocus": 30000.0},
    "snr1": {"snr": 1.0},
    "asym": {"tilt_min": -45.0, "tilt_max": 60.0},  # asymmetric and wider: a 75° wedge
    "shift": {"tilt_min": -50.0, "tilt_max": 70.0},  # asymmetric, the same 60° wedge (a lamella's pretilt)
    # sheets tilted up to 60° from the slab plane: some cross the slab and are partly measured, so a network can
    # learn them and fill the flat ones (the flat sheets of "sheets" hold 94 % of their power in the wedge)
    "tiltsheets": {"membrane_tilt": 60.0},
    "asym65": {"tilt_min": -50.0, "tilt_max": 65.0},  # the range of issue #42's second tomogram (65° wedge)
    # tomograms cropped to the specimen (issue #42): simulated 32 slices thicker with the specimen filling all but
    # N slices per side of the central nz, then cut to those nz slices (weighted back-projection is local, so this
    # is the tomogram a reconstruction of those slices gives); "empty0" has objects cut by both faces
    "empty0": {"_empty": 0},
    "empty3": {"_empty": 3},
    "empty6": {"_empty": 6},
    # the halves replaced by the two halves of the tomogram's own Y planes (isonet_pl.preprocess.split): n2n from
    # one tomogram (issue #42)
    "ysplit": {"_ysplit": True},
}

#: slices simulated beyond the kept nz in the cropped kinds (split between both sides)
CROP_MARGIN = 32


def phantom(kind: str) -> dict:
    """The simulate settings of a phantom kind, or of kinds joined by ``+``."""
    settings = {}
    for part in kind.split("+"):
        if part not in PHANTOMS:
            raise SystemExit(f"unknown phantom kind {part!r}; known: {', '.join(PHANTOMS)}")
        settings.update(PHANTOMS[part])
    return settings


def simulate_cropped(out: Path, cfg, empty: int) -> None:
    """Simulate ``cfg.simulate`` (nz = the kept slices) :data:`CROP_MARGIN` slices thicker with the specimen
    ``nz − 2·empty`` slices thick, then cut every volume written (tomogram, ground truth, halves) to the central
    nz slices: a tomogram trimmed to its specimen with ``empty`` empty slices on each side."""
    from isonet_pl.io.mrc import write_mrc
    from isonet_pl.workflows.simulate import simulate

    sim = cfg.simulate
    nz = sim.shape[0]
    full = nz + CROP_MARGIN
    simulate(out, sim.model_copy(update={"shape": (full, *sim.shape[1:]), "slab_fraction": (nz - 2 * empty) / full}))
    first = CROP_MARGIN // 2
    for folder in ("tomos", "ground_truth", "even", "odd"):
        for path in sorted((out / folder).glob("*.mrc")):
            volume, info = read_mrc(path)
            write_mrc(path, np.ascontiguousarray(volume[first:first + nz]), voxel_size=info.voxel_size)
    meta = json.loads((out / "simulation.json").read_text())
    meta.update({"shape": list(sim.shape), "cropped_from": [full, *sim.shape[1:]], "empty_slices_per_side": empty})
    (out / "simulation.json").write_text(json.dumps(meta, indent=1))


def phantom_inputs(out: Path, cfg, empty: int | None, ysplit: bool):
    """:func:`isonet_pl.demo.demo_inputs` with the simulation cropped (:func:`simulate_cropped`, ``empty`` not
    None) and/or its halves replaced by the Y-plane halves of its tomogram (``ysplit``)."""
    from isonet_pl.io.mrc import write_mrc
    from isonet_pl.preprocess.split import split_planes
    from isonet_pl.workflows.deconv import deconv
    from isonet_pl.workflows.extract import extract
    from isonet_pl.workflows.mask import make_mask
    from isonet_pl.workflows.simulate import simulate

    if empty is None:
        simulate(out, cfg.simulate)
    else:
        simulate_cropped(out, cfg, empty)
    star = out / "tomograms.star"
    yield f"simulate{f': cropped to {empty} empty slices per side' if empty is not None else ''} -> {star}"
    if ysplit:
        volume, info = read_mrc(out / "tomos" / "sim_00.mrc")
        for folder, half in zip(("even", "odd"), split_planes(volume), strict=True):
            write_mrc(out / folder / "sim_00.mrc", half, voxel_size=info.voxel_size)
        yield "halves replaced by the tomogram's even and odd Y planes"
    if cfg.simulate.defocus > 0:
        deconv(star, cfg.deconv.model_copy(update={"deconv_folder": str(out / "deconv")}), cfg.io)
    make_mask(star, cfg.make_mask.model_copy(update={"mask_folder": str(out / "mask")}), cfg.io)
    extract(star, cfg.extract.model_copy(update={"subtomo_folder": str(out / "subtomo"),
                                                 "subtomo_star": str(out / "subtomo.star")}), cfg.io)
    yield f"extract -> {out / 'subtomo.star'}"


def _value(text: str):
    """A --set value: int, float, bool, None or string."""
    import yaml

    return yaml.safe_load(text)


#: the single-tomogram methods of the fixed-budget mode: how their project is made (see :func:`single_project`)
SINGLE = {"single": "planes", "isonet": "filter", "isonet-raw": "raw"}


def single_project(out: Path, cfg, mode: str) -> tuple[Path, Path]:
    """The simulation of ``out`` as single-tomogram data (its STAR file without the half columns), through deconv and
    extract (the same mask). ``mode``: ``planes``, the defaults (deconv from the tomogram: halves made of its even and
    odd Y planes, deconvolved with a CTF); ``filter``, IsoNet's mode with isonet-pl's filter (``--plane_halves
    false``: Wiener-filtered without a CTF, the CTF deconvolution of the simulation's average with one); ``raw``,
    IsoNet 0.2 (no filter without a CTF). Returns (tomogram STAR, subtomogram STAR)."""
    import starfile

    from isonet_pl.config import DeconvConfig
    from isonet_pl.io.star import DECONV_HALF_COLUMNS, HALF_COLUMNS
    from isonet_pl.workflows.deconv import deconv
    from isonet_pl.workflows.extract import extract

    tag = {"planes": "single_planes", "filter": "single", "raw": "single_raw"}[mode]
    star, sub = out / f"tomograms_{tag}.star", out / f"subtomo_{tag}.star"
    if sub.exists():
        return star, sub
    df = starfile.read(out / "tomograms.star")
    df = df.drop(columns=[c for c in (*HALF_COLUMNS, *DECONV_HALF_COLUMNS) if c in df.columns])
    if (cfg.simulate.defocus == 0 or mode == "planes") and "rlnDeconvTomoName" in df.columns:
        df = df.drop(columns=["rlnDeconvTomoName"])
    starfile.write(df, star, overwrite=True)
    if mode == "planes":
        deconv(star, cfg.deconv.model_copy(update={"deconv_folder": str(out / "deconv_planes")}), cfg.io)
    elif cfg.simulate.defocus == 0 and mode == "filter":
        deconv(star, DeconvConfig(deconv_folder=str(out / "deconv_single"), plane_halves=False), cfg.io)
    extract(star, cfg.extract.model_copy(update={"subtomo_folder": str(out / f"subtomo_{tag}"),
                                                 "subtomo_star": str(sub)}), cfg.io)
    return star, sub


def predicted(star: Path, result_dir: Path, iterations: int, cfg, truth: np.ndarray, tilt: tuple) -> dict:
    """Run the ``predict`` workflow with its defaults on the tomogram of ``star`` with the last checkpoint of
    ``result_dir`` and score its output against ``truth``: the scores plus ``seconds`` (the whole call) and
    ``batch_norms`` (predict's log line on the running statistics it used, with their time)."""
    import logging

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("batch norms:"):
                lines.append(record.getMessage())

    logger = logging.getLogger("isonet_pl.workflows.predict")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    folder = result_dir / "predicted"
    t0 = time.perf_counter()
    try:
        predict(star, result_dir / f"model_iter{iterations:02d}.ckpt",
                cfg.predict.model_copy(update={"output_dir": str(folder)}), cfg.io)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    seconds = time.perf_counter() - t0
    scores = wedge_correlations(read_mrc(folder / "sim_00_corrected.mrc")[0], truth, *tilt, **BAND)
    return {**scores, "seconds": seconds, "batch_norms": "; ".join(lines) or "no log line"}


def curve(args) -> None:
    """The fixed-budget learning curves (see the module docstring)."""
    import torch

    from isonet_pl.config import IsoNetConfig
    from isonet_pl.io.formats import read_tomogram_star
    from isonet_pl.training.setup import derived_settings
    from isonet_pl.workflows.predict import load_model
    from quality.iterations import score

    torch.set_num_threads(args.threads)
    methods = (args.methods or "n2n,isonet").split(",")
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: _value(v) for k, v in overrides.items()}
    extract_overrides = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.extract_set)}
    # refine's own default batch on one device unless given (the issue's command used 8)
    batch = args.batch_size or derived_settings(IsoNetConfig().refine, 1, 1)[0]
    steps = max(1, round(args.samples / (args.iterations * args.epochs * batch)))
    root = Path(args.out).resolve()
    summary = {}
    for kind in args.phantoms.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            base = IsoNetConfig()
            settings = phantom(kind)
            empty = settings.pop("_empty", None)
            ysplit = settings.pop("_ysplit", False)
            sim = base.simulate.model_copy(update={"shape": tuple(args.shape), "snr": 0.5, "halves": True,
                                                   "number_subtomos": args.subtomos, "seed": seed,
                                                   "defocus": 0.0, **settings})
            cfg = base.model_copy(update={
                "simulate": sim,
                "extract": type(base.extract).model_validate({**base.extract.model_dump(), "cube_size": 32,
                                                              "crop_size": args.crop, **extract_overrides}),
                # validated (model_copy would not parse "0.05,0.1" or check the overrides)
                "refine": type(base.refine).model_validate({**base.refine.model_dump(), **{
                    "iterations": args.iterations, "epochs": args.epochs, "steps_per_epoch": steps,
                    "batch_size": batch, "filter_base": 16, "unet_depth": 3, "seed": seed,
                    "preprocessing_ncpus": 0, **overrides}})})
            out = root / f"{kind}_seed{seed}"
            if not (out / "subtomo.star").exists():
                plain = empty is None and not ysplit
                for item in demo_inputs(out, cfg) if plain else phantom_inputs(out, cfg, empty, ysplit):
                    if isinstance(item, str):
                        print(item, flush=True)
            sub_star = out / "subtomo.star"
            truth = read_mrc(out / "ground_truth" / "sim_00.mrc")[0]
            tilt = (cfg.simulate.tilt_min, cfg.simulate.tilt_max)
            raw = wedge_correlations(read_mrc(out / "tomos" / "sim_00.mrc")[0], truth, *tilt, **BAND)
            rows = {"raw": raw, "truth without wedge": wedge_correlations(without_wedge(truth, *tilt), truth, *tilt,
                                                                          **BAND)}
            raw_volume = read_mrc(out / "tomos" / "sim_00.mrc")[0]
            sigma, rows["gaussian"] = max(((s, wedge_correlations(ndi.gaussian_filter(raw_volume, s), truth, *tilt,
                                                                  **BAND)) for s in (1.0, 1.5, 2.0, 2.5, 3.0)),
                                          key=lambda pair: pair[1]["overall"])
            rows["gaussian"]["sigma"] = sigma
            source = out / "deconv" / "sim_00.mrc"  # n2n's input: the deconvolved average, when there is a CTF
            n2n_volume = read_mrc(source)[0] if source.exists() else raw_volume
            print(f"{kind} seed {seed}: raw overall {raw['overall']:.3f} in-wedge {raw['in_wedge']:.3f}", flush=True)
            for method in methods:
                result_dir = out / f"results_{method}{args.tag}"
                train_star, volume = sub_star, n2n_volume
                if method in SINGLE:  # single-tomogram data: no halves
                    if method == "isonet-raw" and cfg.simulate.defocus > 0:
                        continue  # with a CTF both deconvolve alike: the same as isonet
                    star, train_star = single_project(out, cfg, SINGLE[method])
                    table = read_tomogram_star(star)
                    deconvolved = table.get_path(0, "rlnDeconvTomoName", required=False)
                    volume = read_mrc(deconvolved)[0] if deconvolved else raw_volume
                done = result_dir / f"refine_iter{args.iterations:02d}.json"
                if done.exists():  # a finished run of an earlier call: scored again, not trained again
                    print(f"{result_dir.name}: reusing the finished run", flush=True)
                else:
                    refine(train_star, cfg.refine.model_copy(update={
                        "method": "auto" if method == "single" else method.split("-")[0],
                        "result_dir": str(result_dir)}))
                seconds = sum(json.loads((result_dir / f"refine_iter{it:02d}.json").read_text())["seconds"]
                              for it in range(1, args.iterations + 1))
                points = []
                for it in range(1, args.iterations + 1):  # validation loss every iteration, scores every N-th
                    info = json.loads((result_dir / f"refine_iter{it:02d}.json").read_text())
                    samples = it * args.epochs * steps * batch
                    val = info["val_losses"][-1] if info["val_losses"] else float("nan")
                    point = {"iteration": it, "samples": samples, "val_loss": val,
                             "train_loss": info["losses"][-1] if info["losses"] else float("nan")}
                    text = ""
                    if it % args.every == 0 or it == args.iterations:
                        point.update(score(load_model(result_dir / f"model_iter{it:02d}.ckpt"), volume, truth, tilt,
                                           denoise=True))
                        text = (f" overall {point['overall']:.3f} in-wedge {point['in_wedge']:.3f}"
                                f" measured {point['measured']:.3f}; denoised {point['denoised_overall']:.3f} /"
                                f" {point['denoised_in_wedge']:.3f} / {point['denoised_measured']:.3f}")
                    points.append(point)
                    print(f"{kind} seed {seed} {method}{args.tag} iter {it:2d} samples {samples:5d} val {val:.4f}"
                          + text, flush=True)
                tomo_star = out / "tomograms.star" if method not in SINGLE else star
                rows[method + args.tag] = {"curve": points, "refine_seconds": seconds,
                                           "predict": predicted(tomo_star, result_dir, args.iterations, cfg, truth,
                                                                tilt)}
                final = rows[method + args.tag]["predict"]
                print(f"{kind} seed {seed} {method}{args.tag} predict: overall {final['overall']:.3f} in-wedge "
                      f"{final['in_wedge']:.3f} measured {final['measured']:.3f} in {final['seconds']:.0f} s "
                      f"({final['batch_norms']})", flush=True)
            summary[f"{kind}_seed{seed}"] = rows
            name = f"curve{args.tag}_{args.phantoms.replace(',', '-')}_{args.seeds.replace(',', '-')}.json"
            (root / name).write_text(json.dumps(summary, indent=1))
    print("\nfinal scores at", args.samples, "samples (overall / in-wedge):")
    references = ("raw", "gaussian", "truth without wedge")
    for name, rows in summary.items():
        cells = [f"{m} {rows[m]['overall']:.3f} / {rows[m]['in_wedge']:.3f}" for m in references]
        for m, r in rows.items():
            if m not in references:
                last = r["curve"][-1]
                cells.append(f"{m} {last['overall']:.3f} / {last['in_wedge']:.3f}, denoised "
                             f"{last['denoised_overall']:.3f} / {last['denoised_in_wedge']:.3f}, predict "
                             f"{r['predict']['overall']:.3f} / {r['predict']['in_wedge']:.3f}")
        print(f"{name:16s} " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phantoms", default=None, help="fixed-budget mode: phantom kinds, comma-separated, of "
                                                         + ", ".join(PHANTOMS))
    parser.add_argument("--seeds", default="0,1", help="fixed-budget mode: seeds (phantom, noise, training)")
    parser.add_argument("--samples", type=int, default=4320, help="fixed-budget mode: training samples in all")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=None,
                        help="fixed-budget mode: batch size (default: refine's, 4 on one device; the issue's 8)")
    parser.add_argument("--subtomos", type=int, default=120)
    parser.add_argument("--crop", type=int, default=48, help="fixed-budget mode: edge of the extracted subtomograms "
                        "(cubes of 32; a different crop needs its own --out, the extraction is reused)")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256))
    parser.add_argument("--every", type=int, default=2, help="fixed-budget mode: score every N-th iteration")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="fixed-budget mode: refine override KEY=VALUE")
    parser.add_argument("--extract_set", action="append", default=[],
                        help="fixed-budget mode: extract override KEY=VALUE (needs its own --out: the extraction "
                             "there is reused)")
    parser.add_argument("--tag", default="", help="fixed-budget mode: suffix of the result folders")
    parser.add_argument("--out", default="bench/out/quality")
    parser.add_argument("--config", default=None, help="settings (default: the demo preset)")
    parser.add_argument("--methods", default=None, help="refine methods to compare, e.g. isonet,n2n "
                                                        "(default: isonet, and n2n when the simulation has halves)")
    parser.add_argument("--seed", type=int, default=None, help="another phantom, noise and training seed "
                                                                   "(simulate and refine seed; default: the config's)")
    args = parser.parse_args()
    if args.phantoms:
        curve(args)
        return
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
