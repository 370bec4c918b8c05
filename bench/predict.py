"""Prediction benchmark: overlap-tile cost, memory on a large tomogram, network throughput.

Run: ``.venv/bin/python bench/predict.py [--gib 2] [--threads 2]`` (``--tiles-only``: only part 0)

0. predict's tiles, side by side in one run, for the CPU presets' network (depth 3, 16 base channels, 2
   convolutions per level) on a 64x192x192 tomogram: wall time ÷ one raw forward of the same network over
   the same voxels, with the default tiles (from the network and the memory: ``tile_plan``) and with the
   tiles of earlier versions for models trained at cube 16, 32 and 64 (core = training cube, tile = cube + 32);
   then on a 128x384x384 tomogram, where tiles meet inside it (default, cube 64 and cube 32 only).

With a small network (depth 2, 8 base channels, 1 convolution per level; random weights -
the cost does not depend on them), side by side in one run:

1. raw forward time of the network over a 144³ block -> seconds per output voxel;
2. tiled prediction of a 128x512x512 tomogram (blocks 128³ + 8-voxel halo, and IsoNet's
   64/96 for comparison) -> wall time ÷ raw forward time for the same number of voxels;
3. peak RSS (VmHWM, fresh process) while predicting a ``--gib`` GiB tomogram from Zarr to Zarr;
4. the network's FLOP rate during the raw forward, as a fraction of this CPU's measured peak
   (a large float32 matrix multiply).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import torch
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
    with dask.config.set(scheduler="threads", num_workers=1):
        write_tomogram(out, zarr_out, store.voxel_size, chunks=(64, 64, 64))
    print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_rss_MiB": peak_rss_mib()}))


def tile_ratios(out: Path) -> dict:
    """Part 0: wall ÷ raw forward of predict's default tiles and of the old training-cube tiles."""
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.predict.predictor import predict_block, predict_tomogram, tile_plan

    torch.manual_seed(0)
    module = IsoNetModule(net={"depth": 3, "base_channels": 16, "convs_per_level": 2, "dropout": 0.0}).eval()
    vol = np.random.default_rng(0).normal(size=(64, 192, 192)).astype(np.float32)
    predict_block(vol[:32, :32, :32], module, UNIT)  # warm-up
    t0 = time.perf_counter()
    predict_block(vol, module, UNIT)
    raw = time.perf_counter() - t0
    core, halo = tile_plan(module.net, "cpu")
    plans = {f"default (core {core}, halo {halo})": (core, halo)}
    plans.update({f"before: trained at cube {c} (core {c}, halo 16)": (c, 16) for c in (64, 32, 16)})
    res = {"raw_forward_s": raw, "shape": list(vol.shape), "receptive_radius": module.net.receptive_radius}
    for name, (c, h) in plans.items():
        t0 = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=1):
            predict_tomogram(vol, module, UNIT, chunk=c, halo=h).compute()
        wall = time.perf_counter() - t0
        res[name] = {"wall_s": wall, "ratio_to_raw_forward": wall / raw}
        print(f"{name:42s}: {wall:6.1f} s = {wall / raw:5.2f}x one raw forward ({raw:.1f} s)", flush=True)
    # a larger tomogram, where tiles meet inside it: the raw forward time per voxel from the block above
    big = np.random.default_rng(1).normal(size=(128, 384, 384)).astype(np.float32)
    per_voxel = raw / vol.size
    res["large"] = {"shape": list(big.shape)}
    for name, (c, h) in list(plans.items())[:3]:
        t0 = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=1):
            predict_tomogram(big, module, UNIT, chunk=c, halo=h).compute()
        wall = time.perf_counter() - t0
        res["large"][name] = {"wall_s": wall, "ratio_to_raw_forward": wall / (per_voxel * big.size)}
        print(f"128x384x384, {name:30s}: {wall:6.1f} s = {wall / (per_voxel * big.size):5.2f}x the raw forward "
              "time of as many voxels", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predict_tiles.json").write_text(json.dumps(res, indent=1))
    return res


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--tiles-only", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    torch.set_num_threads(args.threads)
    tile_ratios(Path(args.out))
    if args.tiles_only:
        return
    module = small_module()
    from isonet_pl.predict.predictor import predict_tomogram

    block = torch.randn(1, 1, 144, 144, 144)
    with torch.no_grad():
        module(block)
        t0 = time.perf_counter()
        for _ in range(3):
            module(block)
        raw = (time.perf_counter() - t0) / 3
    per_voxel = raw / 144**3
    flops = conv_flops_per_voxel(module)
    peak = peak_matmul_flops()
    res = {"network": NET, "threads": args.threads, "raw_forward_s_per_Mvoxel": per_voxel * 1e6,
           "conv_flop_per_voxel": flops, "network_flop_rate": flops / per_voxel, "cpu_peak_matmul_flop_rate": peak,
           "fraction_of_peak": flops / per_voxel / peak}
    vol = np.random.default_rng(0).normal(size=(128, 512, 512)).astype(np.float32)
    for name, chunk, halo in (("ours_128+8", 128, 8), ("isonet_64/96", 64, 16)):
        t0 = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=1):
            predict_tomogram(vol, module, UNIT, chunk=chunk, halo=halo).compute()
        wall = time.perf_counter() - t0
        res[name] = {"wall_s": wall, "ratio_to_raw_forward": wall / (per_voxel * vol.size)}
    del vol
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
    print(f"raw forward: {res['raw_forward_s_per_Mvoxel']:.3f} s per million voxels ({args.threads} threads)")
    for name in ("ours_128+8", "isonet_64/96"):
        print(f"tiled {name:13s}: {res[name]['wall_s']:.1f} s, {res[name]['ratio_to_raw_forward']:.2f}x the raw "
              "forward time")
    print(f"network: {flops / 1e3:.1f} kFLOP/voxel, {res['network_flop_rate'] / 1e9:.1f} GFLOP/s = "
          f"{100 * res['fraction_of_peak']:.1f} % of the CPU's matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{args.gib:g} GiB tomogram: {res['big']['wall_s']:.0f} s, peak RSS {res['big']['peak_rss_MiB']:.0f} MiB")


if __name__ == "__main__":
    main()
