# ruff: noqa: E402  (the allocator is set before the imports, one of which starts a thread)
"""Prediction benchmark: predict against the raw network, memory on a large tomogram, network throughput.

Run: ``.venv/bin/python bench/perf/predict.py [--gib 2] [--threads 2]`` (``--tiles-only``: only part 0;
``--shapes 64x192x192``: part 0 on that tomogram only)

0. The ``predict`` command (MRC in, Zarr copy, normalisation, tiles, MRC out; ``--denoise false``) for the CPU
   presets' network (depth 3, 16 base channels, 2 convolutions per level; random weights: the cost does not
   depend on them) saved as models trained at cube 16, 32 and 64, with its default ``--precision auto`` (and
   float32 for cube 32), on a 64x192x192 tomogram and a 128x384x384 one (where tiles meet inside it): wall
   time ÷ one raw forward of the same network over the whole tomogram in the same precision, side by side
   in one run. ``auto``'s choice is measured once first (its seconds reported) into a fresh machine cache, as
   a user's first predict does; the timed runs then read it, as every later predict does.
1. The same network's throughput on one of predict's CPU tiles (128x208x208) in float32 and bf16, as
   predict runs it: seconds per million voxels and the convolutions' FLOP rate as a
   fraction of this CPU's measured float32 peak (a large matrix multiply); ``bench/perf/cpu_conv.py`` has the
   variants.
2. Peak RSS (VmHWM, fresh process) while predicting a ``--gib`` GiB tomogram from Zarr to Zarr with a small
   network (depth 2, 8 base channels, 1 convolution; blocks 128³ + 8): the memory does not grow with the
   tomogram.
"""

from __future__ import annotations

from isonet_pl.heap import share_one_arena, use_huge_pages

share_one_arena()  # as the command line does, before anything starts a thread (importing zarr does)
use_huge_pages()  # and before torch allocates

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from _common import peak_rss_mib

from isonet_pl.normalization import Normalization

UNIT = Normalization.unit()  # N(x) = -x

NET = {"depth": 2, "base_channels": 8, "convs_per_level": 1, "dropout": 0.0}


def small_module():
    from isonet_pl.model.module import IsoNetModule

    torch.manual_seed(0)
    return IsoNetModule(net=NET).eval()


def conv_flops_per_voxel(module, size: int = 32) -> float:
    """Multiply-adds x2 of all (transposed) convolutions per output voxel, counted with hooks."""
    total = [0.0]

    def hook(layer, inputs, output):
        k = np.prod(layer.kernel_size)
        if isinstance(layer, torch.nn.ConvTranspose3d):
            total[0] += 2.0 * inputs[0].numel() * layer.out_channels * k
        else:
            total[0] += 2.0 * output.numel() * layer.in_channels * k / layer.groups

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))]
    with torch.no_grad():
        module(torch.zeros(1, 1, size, size, size))
    for h in handles:
        h.remove()
    return total[0] / size**3


def peak_matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2.0 * n**3 * repeats / (time.perf_counter() - t0)


def child(zarr_in: str, zarr_out: str, threads: int) -> None:
    from isonet_pl.io.zarr_store import open_tomogram, write_tomogram
    from isonet_pl.predict.predictor import predict_tomogram

    torch.set_num_threads(threads)
    store = open_tomogram(zarr_in)
    t0 = time.perf_counter()
    out = predict_tomogram(store.zarr_array(0), small_module(), UNIT, chunk=128, halo=8)
    with dask.config.set(scheduler="threads", num_workers=2):
        write_tomogram(out, zarr_out, store.voxel_size, chunks=(64, 64, 64))
    print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_rss_MiB": peak_rss_mib()}))


#: the CPU presets' network (conf/demo.yaml, conf/n2n*.yaml): depth 3, 16 base channels, 2 convolutions per level
CPU_NET = {"depth": 3, "base_channels": 16, "convs_per_level": 2, "dropout": 0.0}


def save_checkpoint(module, path: Path, cube: int) -> Path:
    """``module`` saved as a checkpoint predict loads, its card saying it was trained at ``cube``."""
    import pytorch_lightning as pl

    module.hparams["meta"] = {"cube_size": cube, "crop_size": cube + 16, "tilt_ranges": [(-60.0, 60.0)],
                              "settings": {"precision": "32"}}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return path


def raw_forward(module, vol: np.ndarray, precision: str) -> float:
    """Seconds of one forward of ``module`` over the whole of ``vol`` (after one such call: primitives made),
    with the allocator as predict runs."""
    from isonet_pl.predict.predictor import predict_block

    predict_block(vol, module, UNIT, precision=precision)
    t0 = time.perf_counter()
    predict_block(vol, module, UNIT, precision=precision)
    return time.perf_counter() - t0


def tile_ratios(out: Path, shapes=((64, 192, 192), (128, 384, 384))) -> dict:
    """Part 0: the ``predict`` command's wall time ÷ one raw forward over the same voxels, per model."""
    from isonet_pl.config import IOConfig, PredictConfig, PrepareStarConfig
    from isonet_pl.io.mrc import write_mrc
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.predict.predictor import tile_plan
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.prepare import prepare_star

    torch.manual_seed(0)
    module = IsoNetModule(net=CPU_NET).eval()
    work = out / "predict_ratio"
    work.mkdir(parents=True, exist_ok=True)
    checkpoints = {c: save_checkpoint(module, work / f"cube{c}.ckpt", c) for c in (16, 32, 64)}
    core, halo = tile_plan(module.net, "cpu")
    res = {"network": CPU_NET, "threads": torch.get_num_threads(), "tiles": [core, halo]}
    print(f"tiles: core {core}, context {halo} (the same for every training cube)", flush=True)
    import os

    from isonet_pl.predict.predictor import PRECISION_CACHE, fastest_precision

    os.environ["ISONET_PL_CACHE"] = str(work / "machine_cache")
    (work / "machine_cache" / PRECISION_CACHE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    first = fastest_precision(module, "cpu")
    res["precision_auto_first_measurement_s"] = time.perf_counter() - t0
    print(f"precision auto: {first}, measured once in {res['precision_auto_first_measurement_s']:.2f} s "
          "(kept in the machine cache; the runs below read it)", flush=True)
    for shape in shapes:
        name = "x".join(map(str, shape))
        vol = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        (work / name).mkdir(exist_ok=True)
        write_mrc(work / name / "tomo.mrc", vol, voxel_size=10.0)
        star = prepare_star(work / name, PrepareStarConfig(output_star=str(work / f"{name}.star")))
        raw = {p: raw_forward(module, vol, p) for p in ("32", "bf16-mixed")}
        res[name] = {"raw_forward_s": raw}
        print(f"{name}: raw forward float32 {raw['32']:.1f} s, bf16 {raw['bf16-mixed']:.1f} s", flush=True)
        runs = [(c, "auto") for c in (16, 32, 64)] + [(32, "32")]
        for cube, precision in runs:
            cfg = PredictConfig(output_dir=str(work / f"out_{name}_{cube}_{precision}"), precision=precision,
                                denoise=False)
            t0 = time.perf_counter()
            predict(star, checkpoints[cube], cfg, IOConfig(zarr_folder=str(work / "zarr")))
            wall = time.perf_counter() - t0
            chosen = "32" if precision == "32" else _chosen_precision()
            ratio = wall / raw[chosen]
            res[name][f"cube {cube}, precision {precision}"] = {"wall_s": wall, "precision": chosen,
                                                                "ratio_to_raw_forward": ratio}
            print(f"{name}: model trained at cube {cube:2d}, --precision {precision:4s} ({chosen}): predict "
                  f"{wall:6.1f} s = {ratio:4.2f}x one raw forward in that precision", flush=True)
    (out / "predict_tiles.json").write_text(json.dumps(res, indent=1))
    return res


_LOG: list[str] = []


def _chosen_precision() -> str:
    """The precision predict's last ``auto`` picked (from its log line)."""
    line = next(line for line in reversed(_LOG) if line.startswith("precision auto:"))
    return line.split()[2]


class _Capture(logging.Handler):
    def emit(self, record):
        _LOG.append(record.getMessage())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--tiles-only", action="store_true")
    parser.add_argument("--shapes", default="64x192x192,128x384x384", help="part 0's tomograms, ZxYxX,...")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    torch.set_num_threads(args.threads)
    logging.getLogger("isonet_pl").addHandler(_Capture())
    logging.getLogger("isonet_pl").setLevel(logging.INFO)
    shapes = tuple(tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(","))
    res = {"tiles": tile_ratios(Path(args.out), shapes)}
    if args.tiles_only:
        return
    from isonet_pl.model.module import IsoNetModule

    torch.manual_seed(0)
    module = IsoNetModule(net=CPU_NET).eval()
    flops = conv_flops_per_voxel(module)
    peak = peak_matmul_flops()
    tile = np.random.default_rng(0).normal(size=(128, 208, 208)).astype(np.float32)
    res.update({"threads": args.threads, "conv_flop_per_voxel": flops, "cpu_peak_matmul_flop_rate": peak})
    print(f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s ({args.threads} threads); network {flops / 1e3:.1f} "
          "kFLOP/voxel", flush=True)
    for precision in ("32", "bf16-mixed"):
        seconds = raw_forward(module, tile, precision)
        rate = flops * tile.size / seconds
        res[precision] = {"s_per_Mvoxel": seconds / tile.size * 1e6, "network_flop_rate": rate,
                          "fraction_of_peak": rate / peak}
        print(f"{precision:10s}: {seconds / tile.size * 1e6:.3f} s per million voxels, {rate / 1e9:.1f} GFLOP/s = "
              f"{100 * rate / peak:.1f} % of the float32 matmul peak", flush=True)
    from isonet_pl.io.zarr_store import write_tomogram

    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    nz = int(round(args.gib * 2**30 / (1024 * 1024 * 4)))
    big = da.random.default_rng(0).standard_normal((nz, 1024, 1024), dtype=np.float32, chunks=(64, 256, 1024))
    write_tomogram(big, work / "pred_in.zarr", (10.0, 10.0, 10.0), chunks=(64, 64, 64))
    out = subprocess.run([sys.executable, __file__, "--child", str(work / "pred_in.zarr"),
                          str(work / "pred_out.zarr"), str(args.threads)], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    res["big"] = {"shape": [nz, 1024, 1024], **json.loads(out.strip().splitlines()[-1])}
    import shutil

    shutil.rmtree(work / "pred_in.zarr")
    shutil.rmtree(work / "pred_out.zarr")
    (work / "predict.json").write_text(json.dumps(res, indent=1))
    print(f"{args.gib:g} GiB tomogram: {res['big']['wall_s']:.0f} s, peak RSS {res['big']['peak_rss_MiB']:.0f} MiB")


if __name__ == "__main__":
    main()
