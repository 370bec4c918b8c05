"""The U-Net's CPU throughput: what channels-last memory, oneDNN, threads, bf16 and torch.compile give.

Run: ``.venv/bin/python bench/perf/cpu_conv.py [--edge 96 | --shape 128 208 208] [--repeats 3] [--compile]
[--networks bench,cpu,small]``

For the networks chosen — the quality bench's (depth 3, 16 base channels, 3 convolutions per level), the CPU
presets' (2 convolutions per level) and the small one of ``bench/perf/predict.py`` — times one eval-mode forward of
an ``edge``³ block (or ``--shape``, e.g. one of predict's tiles) after warm-up, per variant, and reports seconds
per million voxels, the kernel (system) time of the process during the timed calls, the convolutions' GFLOP/s
(multiply-adds × 2, counted with hooks) and that as a fraction of this CPU's float32 matmul peak measured in the
same run. Variants: float32 (the default), channels-last-3d memory, oneDNN (mkldnn) off, 1 thread instead of
all, bf16 autocast, float32 and bf16 with freed memory kept for reuse (:func:`isonet_pl.heap.reused_heap`, as
refine runs), and with ``--compile`` ``torch.compile`` (its compile time reported apart). Timings
are meaningless on a busy machine: run it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from isonet_pl.heap import reused_heap  # noqa: E402
from isonet_pl.model.module import IsoNetModule  # noqa: E402
from perf.predict import conv_flops_per_voxel, peak_matmul_flops  # noqa: E402

NETWORKS = {
    "bench": ("bench (depth 3, 16 ch, 3 conv)", {"depth": 3, "base_channels": 16, "convs_per_level": 3}),
    "cpu": ("CPU presets (depth 3, 16 ch, 2 conv)", {"depth": 3, "base_channels": 16, "convs_per_level": 2}),
    "small": ("small (depth 2, 8 ch, 1 conv)", {"depth": 2, "base_channels": 8, "convs_per_level": 1}),
}


def timed(fn, repeats: int) -> tuple[float, float]:
    """(wall seconds, kernel seconds) per call of ``fn``, after two warm-up calls."""
    fn()
    fn()  # warm-up (oneDNN primitives, bf16 kernels, compiled graphs; the heap grown to its size)
    sys0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
    for _ in range(repeats):
        fn()
    wall = (time.perf_counter() - t0) / repeats
    return wall, (resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0) / repeats


def variants(module, x, threads: int, compile_: bool):
    def forward(m, inp, autocast=False):
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                m(inp)

        return run

    yield "float32", forward(module, x), threads, contextlib.nullcontext()
    last = torch.channels_last_3d
    yield "channels-last-3d", forward(module.to(memory_format=last), x.to(memory_format=last)), threads, \
        contextlib.nullcontext()
    module.to(memory_format=torch.contiguous_format)
    yield "oneDNN off", forward(module, x), threads, torch.backends.mkldnn.flags(enabled=False)
    yield "1 thread", forward(module, x), 1, contextlib.nullcontext()
    yield "bf16 autocast", forward(module, x, autocast=True), threads, contextlib.nullcontext()
    yield "float32, heap reused", forward(module, x), threads, reused_heap()
    yield "bf16, heap reused", forward(module, x, autocast=True), threads, reused_heap()
    if compile_:
        t0 = time.perf_counter()
        compiled = torch.compile(module)
        with torch.inference_mode():
            compiled(x)
        print(f"  torch.compile: first call {time.perf_counter() - t0:.1f} s", flush=True)
        yield "torch.compile", forward(compiled, x), threads, contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edge", type=int, default=96)
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="block (z, y, x) instead of edge³")
    parser.add_argument("--networks", default="bench,small", help="of " + ", ".join(NETWORKS))
    parser.add_argument("--skip", default="", help="variants to leave out, comma-separated (e.g. 'oneDNN off')")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = peak_matmul_flops()
    print(f"float32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({args.threads} threads)", flush=True)
    shape = tuple(args.shape) if args.shape else (args.edge,) * 3
    voxels = shape[0] * shape[1] * shape[2]
    results = {"peak_flop_rate": peak, "shape": shape, "threads": args.threads, "networks": {}}
    for key in args.networks.split(","):
        name, net = NETWORKS[key]
        torch.manual_seed(0)
        module = IsoNetModule(net=net).eval()
        flops = conv_flops_per_voxel(module)
        x = torch.randn(1, 1, *shape)
        print(f"{name}, block {'x'.join(map(str, shape))}: {flops / 1e3:.1f} kFLOP per voxel", flush=True)
        rows = {}
        for label, run, threads, context in variants(module, x, args.threads, args.compile):
            if label in args.skip.split(","):
                continue
            torch.set_num_threads(threads)
            with context:
                seconds, kernel = timed(run, args.repeats)
            torch.set_num_threads(args.threads)
            rate = flops * voxels / seconds
            rows[label] = {"s_per_Mvoxel": seconds / voxels * 1e6, "kernel_s": kernel, "gflops": rate / 1e9,
                           "fraction_of_peak": rate / peak}
            print(f"  {label:21s} {rows[label]['s_per_Mvoxel']:.3f} s/Mvoxel  (kernel {kernel:5.2f} of "
                  f"{seconds:6.2f} s)  {rate / 1e9:6.1f} GFLOP/s  {100 * rate / peak:5.1f} % of peak", flush=True)
        results["networks"][name] = rows
    print(json.dumps(results))


if __name__ == "__main__":
    main()
