"""GPU check: training step, data pipeline, GPU utilisation during refine, predict speed, peak memory.

Run on a machine with a GPU (one script, its own time limits; about 8 minutes):

    .venv/bin/python bench/perf/gpu.py --out bench/out/gpu

``--dry-run`` runs every section with tiny sizes on whatever device there is (the CPU here), to check the
script before spending GPU time. Results go to ``OUT/gpu.json`` and are printed; copy them to
bench/RESULTS.md with the machine.

Sections, each with a time limit:

1. training step of IsoNet's default network (depth 3, 64 base channels, 3 convolutions per level,
   batch 4, cube 64, bf16-mixed on GPUs): seconds per step, pairs consumed per second, peak GPU memory;
2. the on-the-fly pair pipeline (refine's DataLoader, its default workers): pairs produced per second,
   and the ratio produced / consumed (below 1: the GPU waits for data);
3. predict: voxels per second of the tiled predictor with its default tiles, and its ratio to one raw
   forward of the same network over the same number of voxels;
4. a short refine (n2n, on a simulated tomogram with halves) with the GPU's utilisation sampled by
   nvidia-smi every 0.5 s during training, then predict, with the correlation to the ground truth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import torch

from isonet_pl.config import ExtractConfig, IOConfig, PredictConfig, RefineConfig, SimulateConfig
from isonet_pl.normalization import Normalization

UNIT = Normalization.unit()  # N(x) = -x


def device() -> str:
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_step(dry: bool, limit: float) -> dict:
    """Seconds per training step of the default network at batch 4, cube 64 (bf16 on GPUs)."""
    from isonet_pl.model.module import IsoNetModule

    net = {"depth": 2, "base_channels": 8, "convs_per_level": 1} if dry else {}
    cube = 16 if dry else 64
    module = IsoNetModule(net=net).to(device())
    opt = module.configure_optimizers()
    x = torch.randn(4, 1, cube, cube, cube, device=device())
    dtype = torch.bfloat16 if torch.cuda.is_available() else None
    times, end = [], time.monotonic() + limit
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for step in range(12):
        t0 = time.perf_counter()
        with torch.autocast(torch.device(device()).type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.l1_loss(module(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        if step >= 2:
            times.append(time.perf_counter() - t0)
        if time.monotonic() > end:
            break
    step_s = float(np.median(times)) if times else float("nan")
    return {"network": net or "IsoNet default", "cube": cube, "batch": 4, "train_step_s": step_s,
            "pairs_per_s_consumed": 4 / step_s, "parameters": sum(p.numel() for p in module.parameters()),
            "peak_gpu_memory_GiB": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def pipeline(work: Path, dry: bool, limit: float) -> dict:
    """Pairs per second from refine's DataLoader with its default workers."""
    from isonet_pl.compute import usable_cpus
    from isonet_pl.data.datamodule import IsoNetDataModule, PairSettings
    from isonet_pl.training.estimates import filled_volumes, first_estimates
    from isonet_pl.training.subtomograms import load_subtomograms, split
    from isonet_pl.workflows.extract import extract
    from isonet_pl.workflows.simulate import simulate

    shape = (48, 96, 96) if dry else (96, 256, 256)
    cube, crop = (16, 24) if dry else (64, 80)
    star = simulate(work / "pipe_sim", SimulateConfig(shape=shape, number_subtomos=16 if dry else 32, seed=1))
    sub = extract(star, ExtractConfig(cube_size=cube, crop_size=crop, subtomo_folder=str(work / "pipe_sub"),
                                      subtomo_star=str(work / "pipe_sub.star"), use_deconv_tomo=False),
                  IOConfig(zarr_levels=1))
    subs = load_subtomograms(sub)
    filled = filled_volumes(subs, first_estimates(subs))
    train_idx, val_idx = split(len(filled), 0.1, 0)
    workers = min(8, max(0, usable_cpus() - 1))
    dm = IsoNetDataModule(filled, subs.tilt_ranges, train_idx, val_idx, PairSettings(cube, 0.1), 4,
                          10 if dry else 60, workers, (0, 1))
    dm.setup("fit")
    n, t0, end = 0, time.perf_counter(), time.monotonic() + limit
    for item in dm.train_dataloader():
        n += item["input"].shape[0]
        if time.monotonic() > end:
            break
    return {"pairs_per_s_produced": n / (time.perf_counter() - t0), "workers": workers}


@torch.no_grad()
def predict_speed(dry: bool) -> dict:
    """Voxels per second of the tiled predictor (default tiles) vs one raw forward over as many voxels."""
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.predict.predictor import predict_tomogram, tile_plan

    net = {"depth": 2, "base_channels": 8, "convs_per_level": 1} if dry else {"residual": False}
    module = IsoNetModule(net=net).eval().to(device())
    core, halo = tile_plan(module.net, device())
    edge = 32 if dry else 192
    block = torch.randn(1, 1, edge, edge, edge, device=device())
    dtype = torch.bfloat16 if torch.cuda.is_available() else None
    with torch.autocast(torch.device(device()).type, dtype=dtype, enabled=dtype is not None):
        module(block)
        sync()
        t0 = time.perf_counter()
        module(block)
        sync()
    raw = (time.perf_counter() - t0) / edge**3
    shape = (48, 96, 96) if dry else (256, 768, 768)
    vol = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    t0 = time.perf_counter()
    predict_tomogram(vol, module, UNIT, chunk=core, halo=halo, device=device(),
                     precision="bf16-mixed" if dtype else "32").compute(scheduler="threads", num_workers=1)
    wall = time.perf_counter() - t0
    return {"tile_core": core, "halo": halo, "shape": list(shape), "voxels_per_s": vol.size / wall,
            "ratio_to_raw_forward": wall / (raw * vol.size)}


def utilisation_sampler(samples: list, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout
            samples.append(float(out.split()[0]))
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return
        stop.wait(0.5)


def short_run(work: Path, dry: bool) -> dict:
    """A short n2n refine on a simulated tomogram with halves (GPU utilisation sampled), then predict."""
    from isonet_pl.evaluate import wedge_correlations
    from isonet_pl.io.mrc import read_mrc
    from isonet_pl.workflows.extract import extract
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.refine import refine
    from isonet_pl.workflows.simulate import simulate

    shape = (48, 96, 96) if dry else (96, 256, 256)
    star = simulate(work / "sim", SimulateConfig(shape=shape, number_subtomos=16 if dry else 120, halves=True,
                                                 snr=0.5, seed=2))
    sub = extract(star, ExtractConfig(cube_size=16 if dry else 64, crop_size=24 if dry else 80,
                                      subtomo_folder=str(work / "sub"), subtomo_star=str(work / "sub.star")),
                  IOConfig(zarr_levels=1))
    cfg = RefineConfig(result_dir=str(work / "results"), iterations=2 if dry else 4, epochs=1 if dry else 2,
                       steps_per_epoch=3 if dry else 40, batch_size=4, precision="32" if dry else "bf16-mixed",
                       **({"filter_base": 4, "unet_depth": 2, "convs_per_depth": 1} if dry else {}))
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=utilisation_sampler, args=(samples, stop), daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    ckpt = refine(sub, cfg)
    refine_s = time.perf_counter() - t0
    stop.set()
    t0 = time.perf_counter()
    predict(star, ckpt, PredictConfig(output_dir=str(work / "corrected")), IOConfig(zarr_levels=1))
    predict_s = time.perf_counter() - t0
    truth = read_mrc(work / "sim" / "ground_truth" / "sim_00.mrc")[0]
    corrected = read_mrc(work / "corrected" / "sim_00_corrected.mrc")[0]
    return {"refine_s": refine_s, "predict_s": predict_s, "gpu_utilisation_mean_pct":
            float(np.mean(samples)) if samples else None, "gpu_utilisation_samples": len(samples),
            "scores": wedge_correlations(corrected, truth)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out/gpu")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on any device, to check the script")
    args = parser.parse_args()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    res = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
           "torch": torch.__version__, "dry_run": args.dry_run}
    for name, run in (("train_step", lambda: train_step(args.dry_run, 90)),
                      ("pipeline", lambda: pipeline(work, args.dry_run, 60)),
                      ("predict", lambda: predict_speed(args.dry_run)),
                      ("short_run", lambda: short_run(work, args.dry_run))):
        t0 = time.perf_counter()
        try:
            res[name] = run()
        except Exception as exc:  # one failing section must not lose the others' results
            res[name] = {"error": f"{exc.__class__.__name__}: {exc}"}
        res[name]["section_s"] = time.perf_counter() - t0
        print(name, json.dumps(res[name]), flush=True)
        (work / "gpu.json").write_text(json.dumps(res, indent=1))
    if "pairs_per_s_produced" in res["pipeline"] and "pairs_per_s_consumed" in res["train_step"]:
        res["ratio_produced_to_consumed"] = res["pipeline"]["pairs_per_s_produced"] / \
            res["train_step"]["pairs_per_s_consumed"]
        print("ratio produced / consumed:", round(res["ratio_produced_to_consumed"], 2))
    (work / "gpu.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
