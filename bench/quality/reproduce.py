"""Same seed, same inputs, two versions of the code: do they train and predict the same, bit for bit?

Run: ``.venv/bin/python bench/quality/reproduce.py --against COMMIT [--out /tmp/reproduce]``

Checks out COMMIT in a git worktree, then runs, once with that code and once with the working tree's (each
in its own process, ``PYTHONPATH`` first), a small deterministic workflow: simulate a 48×96×96 tomogram with
halves (seed 7), extract 16 subtomograms (cube 16, crop 24), refine 3 iterations × 2 epochs × 4 steps of
batch 2 with ``--method isonet`` (noise from iteration 2) and ``--method n2n`` (a depth-2 U-Net with 4 base
channels, one thread), and predict the tomogram with each model (``--denoise false`` where the option exists,
the behaviour being compared). Prints whether every per-epoch training loss and every voxel of the
predictions are identical. Meant for refactors that must not change results (about 2 minutes in all).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WORKLOAD = r'''
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from isonet_pl.config import SimulateConfig, ExtractConfig, RefineConfig, PredictConfig, IOConfig
from isonet_pl.workflows.simulate import simulate
from isonet_pl.workflows.extract import extract
from isonet_pl.workflows.refine import refine
from isonet_pl.workflows.predict import predict
from isonet_pl.io.mrc import read_mrc
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
io = IOConfig(zarr_levels=1)
star = simulate(out / "sim", SimulateConfig(shape=(48, 96, 96), number_subtomos=16, halves=True, seed=7))
sub = extract(star, ExtractConfig(cube_size=16, crop_size=24, subtomo_folder=str(out / "st"),
                                  subtomo_star=str(out / "st.star")), io)
res = {}
for method in ("isonet", "n2n"):
    ckpt = refine(sub, RefineConfig(result_dir=str(out / f"r_{method}"), method=method, iterations=3, epochs=2,
                                    steps_per_epoch=4, batch_size=2, filter_base=4, unet_depth=2,
                                    preprocessing_ncpus=0, noise_start_iter=(2,), noise_level=(0.1,)))
    res[method] = [json.loads((out / f"r_{method}" / f"refine_iter{i:02d}.json").read_text())["losses"]
                   for i in (1, 2, 3)]
    kw = {"denoise": False} if "denoise" in PredictConfig.model_fields else {}
    predict(star, ckpt, PredictConfig(output_dir=str(out / f"c_{method}"), crop_size=32, **kw), io)
    np.save(out / f"c_{method}.npy", read_mrc(out / f"c_{method}" / "sim_00_corrected.mrc")[0])
(out / "losses.json").write_text(json.dumps(res))
'''


def run(code_root: Path, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(WORKLOAD)
    subprocess.run([sys.executable, f.name, str(out)], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", required=True, help="the commit to compare the working tree with")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "reproduce"))
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[2]
    out = Path(args.out)
    worktree = out / "worktree"
    subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(worktree)], capture_output=True)
    subprocess.run(["git", "-C", str(root), "worktree", "add", "-q", "--detach", str(worktree), args.against],
                   check=True)
    try:
        run(worktree, out / "old")
        run(root, out / "new")
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(worktree)], capture_output=True)
    old, new = (json.loads((out / v / "losses.json").read_text()) for v in ("old", "new"))
    same = True
    for method in ("isonet", "n2n"):
        losses = old[method] == new[method]
        a, b = (np.load(out / v / f"c_{method}.npy") for v in ("old", "new"))
        voxels = bool(np.array_equal(a, b))
        same &= losses and voxels
        print(f"{method}: training losses identical {losses}; prediction identical {voxels} "
              f"(max |difference| {float(np.abs(a - b).max()):.3g})")
    print("same results" if same else "DIFFERENT results")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
