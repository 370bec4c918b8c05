"""How much context a tile needs: tiled prediction against one whole-volume forward, by halo.

Run: ``.venv/bin/python bench/perf/tiles.py [--threads 1]``

For each network layout (without the residual connection, which would hide the network's own output),
random weights in eval mode and the same network after a short training (300 Adam steps of 32³ crops,
learning the identity minus a gaussian low-pass, a band-pass that reaches out like a denoiser), a
64x144x144 simulated tomogram is predicted whole and tiled (core 48, halo h for several h), and the
relative RMS difference is measured in the interior (away from the volume's edges, where the two pad
differently). Prints the theoretical receptive radius (UNet3D.receptive_radius) beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import dask
import numpy as np
import torch

from isonet_pl.normalization import Normalization

UNIT = Normalization.unit()  # N(x) = -x

#: The receptive field depends on depth, kernel and convolutions per level, not on the channels: IsoNet's
#: default layout is measured with 8 base channels (64 would take 64x longer on a CPU).
NETS = {
    "small (depth 3, base 16, 2 convs)": {"depth": 3, "base_channels": 16, "convs_per_level": 2, "dropout": 0.0,
                                          "residual": False},
    "IsoNet layout (depth 3, 3 convs, base 8)": {"depth": 3, "base_channels": 8, "convs_per_level": 3,
                                                  "dropout": 0.0, "residual": False},
}


def stitch_errors(module, vol: np.ndarray, halos: list[int], core: int = 48) -> dict[int, float]:
    from isonet_pl.predict.predictor import predict_block, predict_tomogram

    whole = predict_block(vol, module, UNIT)
    r = module.net.receptive_radius
    inner = tuple(slice(min(r, n // 4), n - min(r, n // 4)) for n in vol.shape)
    out = {}
    for h in halos:
        with dask.config.set(scheduler="synchronous"):
            tiled = predict_tomogram(vol, module, UNIT, chunk=core, halo=h).compute()
        diff = tiled[inner] - whole[inner]
        out[h] = float(np.sqrt(np.mean(diff**2)) / np.sqrt(np.mean(whole[inner] ** 2)))
    return out


def train_briefly(module, vol: np.ndarray, steps: int = 300, seed: int = 0):
    """Fit ``module`` for ``steps`` Adam steps to map 32³ crops of ``vol`` to themselves minus a gaussian
    low-pass (sigma 4): trained weights, whose reach is what predict's context must cover."""
    import scipy.ndimage as ndi

    target = vol - ndi.gaussian_filter(vol, 4)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    for _ in range(steps):
        idx = [rng.integers(0, n - 32, size=4) for n in vol.shape]
        x = np.stack([vol[z:z + 32, y:y + 32, w:w + 32] for z, y, w in zip(*idx, strict=False)])[:, None]
        t = np.stack([target[z:z + 32, y:y + 32, w:w + 32] for z, y, w in zip(*idx, strict=False)])[:, None]
        loss = torch.nn.functional.mse_loss(module(torch.from_numpy(x)), torch.from_numpy(t))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return module.eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/out/tiles.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.simulate import simulate_tomogram

    vol = simulate_tomogram((64, 144, 144), seed=0)["tomogram"]
    vol = ((vol - vol.mean()) / vol.std()).astype(np.float32)
    halos = [0, 4, 8, 16, 24]
    results = {}
    for name, net in NETS.items():
        torch.manual_seed(0)
        module = IsoNetModule(net=net).eval()
        for state in ("random weights", "trained"):
            if state == "trained":
                module = train_briefly(module, vol.astype(np.float32))
            t0 = time.perf_counter()
            errors = stitch_errors(module, vol, halos)
            results[f"{name}, {state}"] = {"receptive_radius": module.net.receptive_radius,
                                           "relative_rms_by_halo": errors, "seconds": time.perf_counter() - t0}
            print(f"{name}, {state}: receptive radius {module.net.receptive_radius}; " +
                  ", ".join(f"halo {h}: {e:.2e}" for h, e in errors.items()), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
