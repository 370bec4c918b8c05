"""Where refine's time goes: one run timed per phase, for both methods, side by side.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python bench/perf/refine_profile.py [--network bench|isonet] [--iterations 2]
[--steps 27] [--methods n2n,isonet] [--threads 2] [--out bench/out/refine_profile]``

On a simulated tomogram with even/odd halves (96×256×256, 120 subtomograms of 48³, cube 32 — the fixed-budget
phantom of ``bench/quality/quality.py``), ``refine`` runs with each method's defaults at the bench network (depth
3, 16 base channels, 2 convolutions per level, batch 8, 27 steps × 2 epochs per iteration: DeepDeWedge's
budget) or IsoNet's default network (``--network isonet``: 64 channels, 3 convolutions, cube 64 from 96³
subtomograms; use few ``--steps``). The package is not changed: its functions are wrapped with timers, and a
Lightning callback times the training steps, the waits for the next batch, validation and the epoch
checkpoints. Phases (seconds per iteration, and their share of the iteration's wall time):

- ``steps``: optimizer steps (forward, backward, update, EMA);
- ``data wait``: waiting for the next training pair batch (pair making not hidden by the workers);
- ``validation``, ``epoch checkpoint``: per epoch;
- ``refill``: the wedge refill of every subtomogram (``estimates.filled_volumes``);
- ``predict all``: the network's estimate of every subtomogram after the iteration (``estimates.predict_all``);
- ``recalibration``: the batch-norm statistics (``callbacks.recalibrate_batch_norm``);
- ``model checkpoint``, ``plot``: the iteration's files;
- ``other``: the rest (Trainer start-up, the data module, the JSON files).

Overheads are everything but ``steps``; the issue's goal is ≤ 15 % of refine's wall time at the defaults.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common

import pytorch_lightning as pl
import torch
from _common import peak_rss_mib

from isonet_pl.config import ExtractConfig, IOConfig, RefineConfig, SimulateConfig
from isonet_pl.training import callbacks, estimates, progress
from isonet_pl.workflows.extract import extract
from isonet_pl.workflows.refine import refine
from isonet_pl.workflows.simulate import simulate

NETWORKS = {"bench": dict(filter_base=16, unet_depth=3, convs_per_depth=2, batch_size=8),
            "isonet": dict(filter_base=64, unet_depth=3, convs_per_depth=3, batch_size=4)}
CUBES = {"bench": (32, 48), "isonet": (64, 96)}


class Clock:
    """Seconds per phase and per iteration of the run being timed."""

    def __init__(self):
        self.phases: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.iteration = 0

    def add(self, phase: str, seconds: float) -> None:
        self.phases[self.iteration][phase] += seconds


#: The clock of the run being timed (the wrappers are installed once, for every run).
CLOCK = [Clock()]


def wrap(owner, name: str, phase: str) -> None:
    original = getattr(owner, name)
    running = set()  # a phase that calls itself (predict_all on halves) is timed once

    def timed(*args, **kwargs):
        if phase in running:
            return original(*args, **kwargs)
        running.add(phase)
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            running.discard(phase)
            CLOCK[0].add(phase, time.perf_counter() - t0)

    setattr(owner, name, timed)


def profiling_callback():
    """A callback timing the steps, the waits for batches, validation and the epoch checkpoints."""

    clock = CLOCK[0]

    class Profile(pl.Callback):
        def __init__(self):
            self.step_start = self.batch_end = self.val_start = None

        def on_train_epoch_start(self, trainer, module):
            self.batch_end = time.perf_counter()

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            now = time.perf_counter()
            if self.batch_end is not None:
                clock.add("data wait", now - self.batch_end)
            self.step_start = now

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            now = time.perf_counter()
            clock.add("steps", now - self.step_start)
            self.batch_end = now

        def on_validation_start(self, trainer, module):
            self.val_start = time.perf_counter()

        def on_validation_end(self, trainer, module):
            clock.add("validation", time.perf_counter() - self.val_start)
            self.batch_end = time.perf_counter()

    return Profile()


def instrument() -> None:
    """Wrap refine's phases with timers, once (the package itself is unchanged)."""
    wrap(estimates, "filled_volumes", "refill")
    wrap(estimates, "predict_all", "predict all")
    wrap(callbacks, "recalibrate_batch_norm", "recalibration")
    wrap(progress, "plot_losses", "plot")
    wrap(pl.callbacks.ModelCheckpoint, "_save_checkpoint", "epoch checkpoint")
    save = pl.Trainer.save_checkpoint

    def save_checkpoint(self, path, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return save(self, path, *args, **kwargs)
        finally:
            if Path(path).name.startswith("model_iter"):
                CLOCK[0].add("model checkpoint", time.perf_counter() - t0)

    pl.Trainer.save_checkpoint = save_checkpoint
    init = pl.Trainer.__init__

    def trainer_init(self, *args, callbacks=None, **kwargs):
        CLOCK[0].iteration += 1
        init(self, *args, callbacks=[*(callbacks or []), profiling_callback()], **kwargs)

    pl.Trainer.__init__ = trainer_init


def subtomograms(out: Path, network: str, n: int) -> Path:
    cube, crop = CUBES[network]
    star = out / "sim" / "tomograms.star"
    if not star.exists():
        star = simulate(out / "sim", SimulateConfig(shape=(96, 256, 256), defocus=0.0, halves=True,
                                                    number_subtomos=n, seed=0))
    sub = out / f"subtomo_{network}.star"
    if not sub.exists():
        extract(star, ExtractConfig(cube_size=cube, crop_size=crop, subtomo_folder=str(out / f"subtomo_{network}"),
                                    subtomo_star=str(sub)), IOConfig(zarr_levels=1))
    return sub


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--network", choices=sorted(NETWORKS), default="bench")
    parser.add_argument("--methods", default="n2n,isonet")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=27)
    parser.add_argument("--subtomos", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[],
                        help="refine override KEY=VALUE (e.g. precision=bf16-mixed)")
    parser.add_argument("--out", default="bench/out/refine_profile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    sub = subtomograms(out, args.network, args.subtomos)
    overrides = {k: json.loads(v) if v[:1] in "[{0123456789-" or v in ("true", "false") else v
                 for k, v in (item.split("=", 1) for item in args.set)}
    report = {}
    instrument()
    for method in args.methods.split(","):
        clock = CLOCK[0] = Clock()
        cfg = RefineConfig(result_dir=str(out / f"run_{args.network}_{method}"), method=method,
                           iterations=args.iterations, epochs=args.epochs, steps_per_epoch=args.steps,
                           **NETWORKS[args.network], **overrides)
        shutil.rmtree(cfg.result_dir, ignore_errors=True)
        t0 = time.perf_counter()
        refine(sub, cfg)
        wall = time.perf_counter() - t0
        seconds = [json.loads(p.read_text())["seconds"]
                   for p in sorted(Path(cfg.result_dir).glob("refine_iter*.json"))]
        rows = {}
        for it, phases in sorted(clock.phases.items()):
            if it == 0:  # before the first Trainer: loading the subtomograms, the first estimates
                continue
            total = seconds[it - 1]
            phases = dict(phases)
            phases["other"] = max(total - sum(phases.values()), 0.0)
            rows[it] = {"wall": total, **phases}
        start = wall - sum(row["wall"] for row in rows.values())
        report[method] = {"wall": wall, "start": start, "iterations": rows}
        print(f"\n{method}: refine {wall:.1f} s in all, of which {start:.1f} s before and between the iterations "
              "(loading the subtomograms, the first estimates)")
        names = ["steps", "data wait", "validation", "epoch checkpoint", "refill", "predict all", "recalibration",
                 "model checkpoint", "plot", "other"]
        print(f"{'iteration':>9} {'wall s':>7} " + " ".join(f"{n:>17}" for n in names) + f" {'overheads':>9}")
        for it, row in rows.items():
            cells = " ".join(f"{row.get(n, 0.0):8.1f} ({100 * row.get(n, 0.0) / row['wall']:4.1f}%)" for n in names)
            overhead = 1 - row.get("steps", 0.0) / row["wall"]
            print(f"{it:>9} {row['wall']:7.1f} {cells} {100 * overhead:8.1f}%")
    report["peak_rss_mib"] = peak_rss_mib()
    report["settings"] = vars(args)
    (out / f"profile_{args.network}.json").write_text(json.dumps(report, indent=1))
    print(f"\npeak memory {report['peak_rss_mib']:.0f} MiB; written {out / f'profile_{args.network}.json'}")


if __name__ == "__main__":
    main()
