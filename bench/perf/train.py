"""Training-throughput benchmark: can the on-the-fly pairs keep up with the training step?

Run: ``.venv/bin/python bench/perf/train.py [--steps 2] [--workers N]``

On subtomograms extracted from a simulated tomogram (crop 80, cube 64), in one run:

- pairs produced per second by the refine DataLoader (rotation, wedge, crop, noise; the
  default number of worker processes, as refine uses);
- pairs consumed per second by a training step of the default network (IsoNet's: depth 3,
  64 base channels, 3 convolutions per level, batch 4, cube 64) on this machine;
- their ratio (how many times faster the data comes than the network uses it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from isonet_pl.compute import usable_cpus
from isonet_pl.config import ExtractConfig, IOConfig, RefineConfig, SimulateConfig
from isonet_pl.data.datamodule import IsoNetDataModule, PairSettings
from isonet_pl.training.estimates import filled_volumes, first_estimates
from isonet_pl.training.setup import build_module
from isonet_pl.training.subtomograms import load_subtomograms, split
from isonet_pl.workflows.extract import extract
from isonet_pl.workflows.simulate import simulate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out/train")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps (after one warm-up)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batches", type=int, default=30, help="batches drawn to time the data pipeline")
    args = parser.parse_args()
    out = Path(args.out)
    star = simulate(out / "sim", SimulateConfig(number_subtomos=32, seed=1))
    sub_star = extract(star, ExtractConfig(cube_size=64, crop_size=80, subtomo_folder=str(out / "subtomo"),
                                           subtomo_star=str(out / "subtomo.star"), use_deconv_tomo=False),
                       IOConfig(zarr_levels=1))
    cfg = RefineConfig()  # IsoNet's default network
    subs = load_subtomograms(sub_star)
    filled = filled_volumes(subs, first_estimates(subs))
    train_idx, val_idx = split(len(filled), 0.1, 0)
    workers = args.workers if args.workers is not None else min(8, max(0, usable_cpus() - 1))
    batch = 4
    dm = IsoNetDataModule(filled, subs.tilt_ranges, train_idx, val_idx, PairSettings(64, 0.1), batch, args.batches,
                          workers, (0, 1))
    dm.setup("fit")
    loader = dm.train_dataloader()
    t0 = time.perf_counter()
    n = 0
    for item in loader:
        n += item["input"].shape[0]
    produce = n / (time.perf_counter() - t0)

    module = build_module(cfg, subs)
    params = sum(p.numel() for p in module.parameters())
    opt = module.configure_optimizers()
    sample = next(iter(loader))
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        loss = module.compute_loss(module(sample["input"]), sample)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:
            times.append(time.perf_counter() - t0)
    consume = batch / float(np.mean(times))
    result = {"pairs_per_s_produced": produce, "workers": workers, "pairs_per_s_consumed": consume,
              "train_step_s": float(np.mean(times)), "network_parameters": params, "batch": batch, "cube": 64,
              "ratio_produced_to_consumed": produce / consume, "torch_threads": torch.get_num_threads(),
              "lightning": pl.__version__}
    (out / "train.json").write_text(json.dumps(result, indent=1))
    print(f"data pipeline: {produce:.1f} pairs/s with {workers} worker(s)")
    print(f"training step (default net, {params / 1e6:.2f} M parameters, batch {batch}, 64^3): "
          f"{result['train_step_s']:.1f} s -> {consume:.3f} pairs/s")
    print(f"ratio produced / consumed: {result['ratio_produced_to_consumed']:.0f}")


if __name__ == "__main__":
    main()
