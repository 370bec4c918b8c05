"""Preprocessing benchmark: chunked vs whole-volume deconvolution, and make_mask, on a large tomogram.

Run: ``.venv/bin/python bench/perf/preprocess.py [--gib 2] [--threads 2] [--out bench/out]``

A synthetic tomogram of ``--gib`` GiB (512x1024x1024 float32 for 2 GiB: a simulated
128x256x256 tomogram tiled with random flips) is converted to Zarr once; then, each in a
fresh process so that peak RSS (VmHWM) is its own, side by side:

- ``fft``: IsoNet's whole-volume filter with scipy.fft on ``--threads`` threads, in memory
  (read, one rfftn/irfftn, intensity matching; no output written) - the reference time;
- ``whole``: our whole-volume mode, Zarr in, Zarr out;
- ``chunked``: our chunked mode (default blocks 256^3, overlap 0.25), Zarr in, Zarr out;
- ``mask``: make_mask (patch 4, 50 %/50 %), Zarr in, Zarr out.

It reports wall times, the ratio chunked / fft, peak RSS of each, and the relative RMS
difference between the chunked and the whole-volume result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from _common import peak_rss_mib  # noqa: E402

from isonet_pl.config import DeconvConfig, IOConfig  # noqa: E402
from isonet_pl.io.mrc import MrcWriter  # noqa: E402
from isonet_pl.io.zarr_store import mrc_to_zarr, open_tomogram  # noqa: E402

PARAMS = {"pixel_size": 10.0, "defocus": 30000.0}


def make_tomogram(path: Path, gib: float, seed: int = 0) -> tuple[int, int, int]:
    """Tile a simulated tomogram (random flips per tile) into a file of about ``gib`` GiB."""
    from isonet_pl.simulate import simulate_tomogram

    tile = simulate_tomogram((128, 256, 256), defocus_angstrom=30000, seed=seed)["tomogram"]
    nz = max(128, int(round(gib * 2**30 / (1024 * 1024 * 4) / 128)) * 128)
    shape = (nz, 1024, 1024)
    rng = np.random.default_rng(seed)
    with MrcWriter(path, shape, np.float32, 10.0) as w:
        for z0 in range(0, nz, 128):
            slab = np.empty((128, 1024, 1024), np.float32)
            for y0 in range(0, 1024, 256):
                for x0 in range(0, 1024, 256):
                    flips = tuple(ax for ax in range(3) if rng.random() < 0.5)
                    slab[:, y0:y0 + 256, x0:x0 + 256] = np.flip(tile, flips) if flips else tile
            w.write(slab, z0)
    return shape


def child(what: str, zarr_path: str, out: str, threads: int) -> None:
    """One measured step, in its own process; prints a JSON line."""
    from isonet_pl.compute import dask_context
    from isonet_pl.preprocess.deconv import DeconvParams, deconvolve_volume
    from isonet_pl.workflows.deconv import deconvolve_store

    store = open_tomogram(zarr_path)
    io = IOConfig(zarr_levels=1)
    params = DeconvParams(**PARAMS)
    t0 = time.perf_counter()
    if what == "fft":
        vol = np.asarray(store.dask().compute(), dtype=np.float32)
        t1 = time.perf_counter()
        deconvolve_volume(vol, params, workers=threads)
        extra = {"read_s": t1 - t0}
    elif what in ("whole", "chunked"):
        chunk, overlap = (int(os.environ.get("BENCH_CHUNK", 256)), float(os.environ.get("BENCH_OVERLAP", 0.125)))
        cfg = DeconvConfig(ncpu=threads, chunk_size=None if what == "whole" else chunk, overlap_rate=overlap,
                           memory_budget=64)
        with dask_context(threads):
            mode = deconvolve_store(store, params, Path(out), cfg, io, Path(zarr_path))
        extra = {"mode": mode}
    elif what == "mask":
        from isonet_pl.io.zarr_store import write_tomogram
        from isonet_pl.preprocess.mask import make_mask

        with dask_context(threads):
            tmp = Path(out).with_suffix(".tmp")
            tmp.mkdir(exist_ok=True)
            from isonet_pl.workflows.mask import MASK_CHUNK

            mask = make_mask(store.dask().rechunk(MASK_CHUNK), patch_size=4, density_percentage=50, std_percentage=50,
                             tmp_dir=tmp)
            write_tomogram(mask, out, store.voxel_size, chunks=io.zarr_chunks)
            shutil.rmtree(tmp)
        extra = {}
    print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_rss_MiB": peak_rss_mib(), **extra}))


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, zarr_path, out, threads = args.child
        child(what, zarr_path, out, int(threads))
        return
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    mrc = work / "pre.mrc"
    shape = make_tomogram(mrc, args.gib)
    src = work / "pre.zarr"
    mrc_to_zarr(mrc, src, levels=1)
    mrc.unlink()
    t = str(args.threads)
    res = {"shape": shape, "threads": args.threads, "cpus": os.cpu_count()}
    steps = os.environ.get("BENCH_STEPS", "fft,whole,chunked,mask").split(",")
    for step in steps:
        res[step] = run_child(step, str(src), str(work / f"{step}.zarr"), t)
    if "whole" not in steps or "chunked" not in steps:
        for key in steps:
            print(key, res[key])
        return
    a, b = open_tomogram(work / "chunked.zarr").dask(), open_tomogram(work / "whole.zarr").dask()
    diff, ref = ((a - b) ** 2).astype(np.float64).mean(), (b**2).astype(np.float64).mean()
    res["chunked_vs_whole_rel_rms"] = float(np.sqrt(diff.compute() / ref.compute()))
    res["ratio_chunked_to_fft"] = res["chunked"]["wall_s"] / res["fft"]["wall_s"]
    res["ratio_chunked_to_whole"] = res["chunked"]["wall_s"] / res["whole"]["wall_s"]
    print(f"tomogram {shape} float32 ({np.prod(shape) * 4 / 2**30:.2f} GiB), {args.threads} threads")
    for key in ("fft", "whole", "chunked", "mask"):
        r = res[key]
        print(f"  {key:8s} {r['wall_s']:7.1f} s   peak RSS {r['peak_rss_MiB']:7.0f} MiB  {r.get('mode', '')}")
    print(f"  chunked / scipy whole-volume FFT: {res['ratio_chunked_to_fft']:.2f}x; "
          f"chunked / our whole-volume mode: {res['ratio_chunked_to_whole']:.2f}x")
    print(f"  chunked vs whole-volume result: relative RMS {res['chunked_vs_whole_rel_rms']:.2e}")
    (work / "preprocess.json").write_text(json.dumps(res, indent=1, default=list))
    for p in ("pre.zarr", "whole.zarr", "chunked.zarr", "mask.zarr"):
        shutil.rmtree(work / p, ignore_errors=True)


if __name__ == "__main__":
    main()
