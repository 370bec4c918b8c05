"""Where a prediction's error lies at the lowest frequencies, and whether the empty slices can correct it.

Run: ``.venv/bin/python bench/quality/z_profile.py OUT_DIR RESULT [OUT_DIR RESULT ...]`` on
``bench/quality/quality.py`` run folders (``ground_truth/``, ``simulation.json``,
``RESULT/predicted/sim_00_corrected.mrc``, what ``predict`` wrote). No network runs: about 10 s per run.

For each run it prints

* the squared error of the prediction (scaled by least squares onto the truth) at the Fourier coefficients of
  the Z profile (kx = ky = 0, the mean of each Z slice) with |kz| = 1, 2, 3 cycles per tomogram thickness, as a
  share (per mille) of the truth's power, next to the whole error's share: how much of the error a handful
  of coefficients, all inside every missing wedge, carry;
* the overall correlation after a label-free profile correction that would use only the specimen-free slices:
  the lowest K harmonics of the Z profile (K = 1, 2) fitted so that the profile is flat over the slices where
  the truth is flat (the empty slices above and below the slab; ``predict --denoise`` finds such slices without
  the truth) and subtracted everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: isonet_pl without installing

from isonet_pl.demo import BAND  # noqa: E402
from isonet_pl.evaluate import wedge_correlations  # noqa: E402
from isonet_pl.io.mrc import read_mrc  # noqa: E402


def profile_error(prediction: np.ndarray, truth: np.ndarray, orders: tuple[int, ...] = (1, 2, 3)) -> tuple:
    """(whole error, error at the Z profile's |kz| = each of ``orders``), each a share of the truth's power, for
    (nz, ny, nx) volumes; the prediction is centred and scaled by least squares onto the centred truth."""
    p = prediction.astype(np.float64) - prediction.mean()
    t = truth.astype(np.float64) - truth.mean()
    p *= (p * t).sum() / (p * p).sum()
    err, power = np.abs(np.fft.fftn(p - t)) ** 2, (np.abs(np.fft.fftn(t)) ** 2).sum()
    return err.sum() / power, [float(err[[k, -k], 0, 0].sum() / power) for k in orders]


def flatten_empty(prediction: np.ndarray, empty: np.ndarray, harmonics: int) -> np.ndarray:
    """``prediction`` (nz, ny, nx) minus the lowest ``harmonics`` of its Z profile, fitted (with a constant) on the
    Z slices where ``empty`` (nz,) is True so that the profile is as flat as it can be there."""
    nz = prediction.shape[0]
    z = np.arange(nz)
    basis = np.stack([np.ones(nz)] + [f(2 * np.pi * k * z / nz) for k in range(1, harmonics + 1)
                                      for f in (np.cos, np.sin)], axis=1)
    coef, *_ = np.linalg.lstsq(basis[empty], prediction.mean(axis=(1, 2))[empty], rcond=None)
    return prediction - (basis[:, 1:] @ coef[1:]).astype(prediction.dtype)[:, None, None]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="pairs OUT_DIR RESULT")
    args = parser.parse_args()
    if len(args.runs) % 2:
        parser.error("give OUT_DIR RESULT pairs")
    for out, result in zip(args.runs[::2], args.runs[1::2], strict=True):
        out = Path(out)
        sim = json.loads((out / "simulation.json").read_text())
        tilt = (sim["tilt_min"], sim["tilt_max"])
        truth = read_mrc(out / "ground_truth" / "sim_00.mrc")[0].astype(np.float32)
        prediction = read_mrc(out / result / "predicted" / "sim_00_corrected.mrc")[0].astype(np.float32)
        whole, lowest = profile_error(prediction, truth)
        profile = truth.mean(axis=(1, 2))
        empty = np.abs(profile - np.median(profile[:5])) < 1e-3 * np.abs(profile).max()
        scores = [wedge_correlations(v, truth, *tilt, **BAND)["overall"]
                  for v in [prediction] + [flatten_empty(prediction, empty, k) for k in (1, 2)]]
        print(f"{out.name}/{result:16s} error {1000 * whole:5.1f} ‰, Z profile |kz| 1/2/3: "
              f"{' / '.join(f'{1000 * e:4.1f}' for e in lowest)} ‰; overall {scores[0]:.3f}, flattened on the "
              f"{int(empty.sum())} empty slices K=1 {scores[1]:.3f}, K=2 {scores[2]:.3f}", flush=True)


if __name__ == "__main__":
    main()
