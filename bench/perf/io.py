"""I/O benchmark: MRC -> Zarr conversion of a large tomogram, and the choice of chunk shape.

Run: ``.venv/bin/python bench/perf/io.py [--gib 2] [--out bench/out]``

1. Chunk shapes, on a 256x512x512 float32 tomogram: conversion time, reading 40 random
   80^3 boxes (what extract/training read), one XY and one XZ slice (what a viewer reads).
2. A tomogram of ``--gib`` GiB (default 2, 512x1024x1024 float32): a plain file copy and
   the MRC -> Zarr conversion at the default chunks, each in a fresh process, side by side:
   wall time, throughput ratio conversion / copy, and the converting process's peak RSS.
   Then Zarr -> MRC back (peak RSS too) and a bit-exactness check.
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

from isonet_pl.io.mrc import MrcWriter, read_mrc_info  # noqa: E402
from isonet_pl.io.zarr_store import DEFAULT_CHUNKS, mrc_to_zarr, open_tomogram  # noqa: E402

CANDIDATES = [(32, 32, 32), (64, 64, 64), (128, 128, 128), (32, 256, 256), (64, 128, 128)]


def make_tomogram(path: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """A noisy tomogram-like volume (smooth structure + noise), written slab by slab."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    with MrcWriter(path, shape, np.float32, 10.0) as w:
        for z0 in range(0, nz, 16):
            dz = min(16, nz - z0)
            zz = np.arange(z0, z0 + dz, dtype=np.float32)[:, None, None]
            structure = np.sin(xx / 23.0 + zz / 17.0) * np.cos(yy / 31.0)
            noise = rng.standard_normal((dz, ny, nx), dtype=np.float32)
            w.write((structure + 2.0 * noise).astype(np.float32), z0)


def run_child(args: list[str]) -> tuple[float, float, str]:
    """Run ``python bench/perf/io.py <args>`` in a fresh process: (wall s, its peak RSS MiB, stdout)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    return wall, float(out.strip().splitlines()[-1]), out


def chunk_study(work: Path) -> list[dict]:
    """Time conversion and typical reads for each candidate chunk shape."""
    src = work / "medium.mrc"
    make_tomogram(src, (256, 512, 512))
    rng = np.random.default_rng(1)
    boxes = [tuple(int(rng.integers(0, s - 80)) for s in (256, 512, 512)) for _ in range(40)]
    rows = []
    for chunks in CANDIDATES:
        target = work / f"medium_{'x'.join(map(str, chunks))}.zarr"
        t0 = time.perf_counter()
        mrc_to_zarr(src, target, chunks=chunks, levels=1)
        convert = time.perf_counter() - t0
        arr = open_tomogram(target).zarr_array(0)
        t0 = time.perf_counter()
        for z, y, x in boxes:
            np.asarray(arr[z:z + 80, y:y + 80, x:x + 80])
        box = (time.perf_counter() - t0) / len(boxes)
        t0 = time.perf_counter()
        np.asarray(arr[128])
        xy = time.perf_counter() - t0
        t0 = time.perf_counter()
        np.asarray(arr[:, 256])
        xz = time.perf_counter() - t0
        n_files = sum(1 for _ in target.rglob("c/*/*/*"))
        rows.append({"chunks": chunks, "convert_s": convert, "box80_ms": box * 1e3, "xy_slice_ms": xy * 1e3,
                     "xz_slice_ms": xz * 1e3, "files": n_files})
        shutil.rmtree(target)
    src.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, *paths = args.child
        if what == "copy":
            shutil.copyfile(paths[0], paths[1])
        elif what == "convert":
            mrc_to_zarr(paths[0], paths[1], chunks=DEFAULT_CHUNKS, levels=int(paths[2]))
        elif what == "back":
            from isonet_pl.io.zarr_store import zarr_to_mrc

            zarr_to_mrc(paths[0], paths[1])
        print(peak_rss_mib())
        return

    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": f"{os.cpu_count()} CPU threads", "python": sys.version.split()[0]}
    print("chunk study (256x512x512 float32):")
    result["chunks"] = chunk_study(work)
    for r in result["chunks"]:
        print(f"  {r['chunks']}: convert {r['convert_s']:.2f} s, 80^3 box {r['box80_ms']:.1f} ms, "
              f"XY slice {r['xy_slice_ms']:.0f} ms, XZ slice {r['xz_slice_ms']:.0f} ms, {r['files']} files")

    nz = int(round(args.gib * 2**30 / (1024 * 1024 * 4)))
    shape = (nz, 1024, 1024)
    src = work / "big.mrc"
    print(f"writing a {args.gib:g} GiB tomogram {shape} ...")
    make_tomogram(src, shape)
    size = src.stat().st_size
    copy_s, copy_rss, _ = run_child(["--child", "copy", str(src), str(work / "copy.mrc")])
    (work / "copy.mrc").unlink()
    conv1_s, conv1_rss, _ = run_child(["--child", "convert", str(src), str(work / "big1.zarr"), "1"])
    conv_s, conv_rss, _ = run_child(["--child", "convert", str(src), str(work / "big.zarr"), "3"])
    back_s, back_rss, _ = run_child(["--child", "back", str(work / "big.zarr"), str(work / "back.mrc")])
    info = read_mrc_info(work / "back.mrc")
    identical = _same_data(src, work / "back.mrc", info.data_offset)
    zarr_bytes = sum(p.stat().st_size for p in (work / "big1.zarr").rglob("*") if p.is_file())
    result["big"] = {
        "shape": shape, "bytes": size, "copy_s": copy_s, "copy_MBps": size / copy_s / 1e6,
        "convert_1level_s": conv1_s, "convert_1level_peak_rss_MiB": conv1_rss,
        "convert_3levels_s": conv_s, "convert_3levels_peak_rss_MiB": conv_rss,
        "throughput_ratio_1level_vs_copy": copy_s / conv1_s, "throughput_ratio_3levels_vs_copy": copy_s / conv_s,
        "zarr_to_mrc_s": back_s, "zarr_to_mrc_peak_rss_MiB": back_rss, "roundtrip_identical": identical,
        "compression_ratio": size / zarr_bytes, "default_chunks": DEFAULT_CHUNKS,
    }
    b = result["big"]
    print(f"{args.gib:g} GiB tomogram {shape}:")
    print(f"  file copy            {copy_s:6.1f} s ({b['copy_MBps']:.0f} MB/s)")
    print(f"  MRC->Zarr, 1 level   {conv1_s:6.1f} s, ratio to copy {b['throughput_ratio_1level_vs_copy']:.2f}, "
          f"peak RSS {conv1_rss:.0f} MiB")
    print(f"  MRC->Zarr, 3 levels  {conv_s:6.1f} s, ratio to copy {b['throughput_ratio_3levels_vs_copy']:.2f}, "
          f"peak RSS {conv_rss:.0f} MiB")
    print(f"  Zarr->MRC            {back_s:6.1f} s, peak RSS {back_rss:.0f} MiB, identical: {identical}")
    print(f"  Zarr size ratio      {b['compression_ratio']:.2f}x smaller")
    (work / "io.json").write_text(json.dumps(result, indent=1, default=list))
    for p in ("big.zarr", "big1.zarr"):
        shutil.rmtree(work / p)
    for p in ("big.mrc", "back.mrc"):
        (work / p).unlink()


def _same_data(a: Path, b: Path, offset: int, block: int = 64 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(offset)
        fb.seek(offset)
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                return False
            if not x:
                return True


if __name__ == "__main__":
    main()
