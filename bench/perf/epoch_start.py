"""First-batch latency of each training epoch: DataLoader workers kept across epochs (refine's) vs started anew.

Run: ``OMP_NUM_THREADS=1 python bench/perf/epoch_start.py [--start fork|spawn]``. The data are 64 random subtomograms
of 80³ (IsoNet's default crop; 131 MiB), cube 64, batch 4, 3 steps per epoch, one worker; spawn is the
default start method on macOS and Windows (each new worker imports torch and receives the subtomograms).
"""
import argparse
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader

from isonet_pl.data.datamodule import IsoNetDataModule, PairSettings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", choices=("fork", "spawn"), default="spawn", help="worker start method")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, p, cube = 64, 80, 64
    filled = rng.normal(size=(n, p, p, p)).astype(np.float32)
    tilts = np.tile([-60.0, 60.0], (n, 1))
    for persistent in (True, False):
        dm = IsoNetDataModule(filled, tilts, np.arange(n - 4), np.arange(n - 4, n), PairSettings(cube), 4, 3, 1,
                              (0, 1))
        dm.setup("fit")
        dm.trainer = SimpleNamespace(global_step=0)
        base = dm.train_dataloader()
        loader = DataLoader(base.dataset, batch_size=4, sampler=base.sampler, num_workers=1,
                            persistent_workers=persistent, multiprocessing_context=args.start)
        firsts = []
        for epoch in range(args.epochs):
            dm.trainer.global_step = 3 * epoch
            t0 = time.perf_counter()
            it = iter(loader)
            next(it)
            firsts.append(time.perf_counter() - t0)
            for _ in it:
                pass
        print(f"{args.start}, workers kept={persistent}: first batch of each epoch "
              f"{', '.join(f'{x:.2f}' for x in firsts)} s", flush=True)


if __name__ == "__main__":
    main()
