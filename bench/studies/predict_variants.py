"""Ways to apply a trained even/odd model to a tomogram, scored against the ground truth (no training).

Run: ``.venv/bin/python bench/studies/predict_variants.py OUT_DIR RESULT [OUT_DIR RESULT ...] [--iteration 10]``

OUT_DIR is a ``bench/quality/quality.py --out`` run folder (``ground_truth/``, ``tomos/``, ``even/``, ``odd/``, maybe
``deconv/``) and RESULT the name of its refine folder (e.g. ``results_n2n_bg``). For the checkpoint of
``--iteration`` it predicts the whole tomogram in memory as ``bench/quality/iterations.py`` does (predict's tiles,
the average tomogram's normalisation, the training precision) and prints overall / in-wedge / measured-region
correlation of:

* ``average``: the network on the average tomogram, then predict's ``--denoise`` (what ``predict`` writes);
* ``halves``: the network on each half, the two outputs averaged (``predict --halves both``), with ``--denoise``;
* ``halves, FSC weights``: that mean, each Fourier shell (32 shells to Nyquist·√3) of the measured region and of
  the wedge weighted by 2·FSC / (1 + FSC) of the two half outputs — the label-free Wiener weight of a sum of
  two maps with independent noise (RELION's post-processing) — and the same weights on ``average``;
* ``flips 2`` / ``flips 4``: the mean of the network's outputs over flips that keep the tilt geometry (identity
  and Y; also Z with X and all three), then ``--denoise`` (test-time augmentation, here on the whole volume's
  output; predict's ``--flips`` flips each tile);
* with ``--tiles 16:8,32:0,...`` instead: the network on the average through tiles of core:halo voxels (the
  default plan first), then ``--denoise``, and for the default plan the best filter of the network's output
  that is linear per shell and region (``oracle``: each shell's gain fitted against the truth; an upper bound
  for any label-free post-filter of that form, such as ``--denoise``);
* with ``--face_pad 0,z16,m16`` instead: the tomogram's Z faces padded before predict's tiles (none: the
  network's own zero padding, predict's way; N slices of a constant, the normalised mean; N mirrored slices),
  cropped back after the network, then ``--denoise``, with the Z profile's correlation;
* with ``--snapshots 2,3,6`` instead of the above: each checkpoint from ``--iteration`` − 5 to ``--iteration``
  on the average, and the mean of the last k checkpoints' outputs (a snapshot ensemble), then ``--denoise``;
  also the correlation of the Z profile (the mean of each Z slice, the slab profile) with the truth's.

About 2 min per run folder (five in 9 min, 2026-12-01) for the bench's 1.7 M-parameter U-Net on two cores.
With a deconvolved tomogram (``deconv/``) only ``average`` and the flips are scored (the halves' deconvolved
copies are not kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common, perf, quality, studies

from quality.iterations import as_predict  # noqa: E402

from isonet_pl.data.wedge import measured_region  # noqa: E402
from isonet_pl.demo import BAND  # noqa: E402
from isonet_pl.evaluate import wedge_correlations  # noqa: E402
from isonet_pl.io.mrc import read_mrc  # noqa: E402
from isonet_pl.normalization import Normalization  # noqa: E402
from isonet_pl.predict.predictor import FLIPS  # noqa: E402
from isonet_pl.preprocess.spectral import wiener_denoise  # noqa: E402
from isonet_pl.workflows.predict import load_model  # noqa: E402

SHELLS = 32


def shell_gains(first: np.ndarray, second: np.ndarray, measured: np.ndarray, gain, default: float) -> np.ndarray:
    """Per-coefficient gains of two (nz, ny, nx) spectra, one per shell and region: ``gain(a, b)`` of the
    coefficients of the shell (``SHELLS`` shells of |k| up to the corner), computed separately inside the
    boolean ``measured`` region (full FFT layout) and outside it (the wedge); ``default`` where a set is empty."""
    k = np.sqrt(sum(np.fft.fftfreq(n)[tuple(slice(None) if a == i else None for a in range(3))] ** 2
                    for i, n in enumerate(first.shape)))
    shell = np.minimum((k / k.max() * SHELLS).astype(int), SHELLS - 1)
    gains = np.full(first.shape, default)
    for region in (measured, ~measured):
        for s in range(SHELLS):
            sel = (shell == s) & region
            if sel.any():
                gains[sel] = gain(first[sel], second[sel])
    return gains


def fsc_weights(first: np.ndarray, second: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Per-coefficient weights 2·FSC / (1 + FSC) (clipped at 0) of two (nz, ny, nx) maps, by shell and region
    (:func:`shell_gains`); DC keeps weight 1."""
    def weight(f1, f2):
        den = np.sqrt((np.abs(f1) ** 2).sum() * (np.abs(f2) ** 2).sum())
        fsc = float(np.real((f1 * np.conj(f2)).sum()) / den) if den > 0 else 0.0
        return max(0.0, 2 * fsc / (1 + fsc))

    weights = shell_gains(np.fft.fftn(first), np.fft.fftn(second), measured, weight, 0.0)
    weights[0, 0, 0] = 1.0
    return weights


def oracle_filter(volume: np.ndarray, truth: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``volume`` (nz, ny, nx) filtered with the per-shell, per-region gain Re<V, T> / <V, V> (clipped at 0)
    fitted against ``truth``: the least-squares best filter of that form (labels needed; not the best correlation)."""
    def gain(fv, ft):
        den = float((np.abs(fv) ** 2).sum())
        return max(0.0, float(np.real((ft * np.conj(fv)).sum())) / den) if den > 0 else 1.0

    fv = np.fft.fftn(volume)
    return np.real(np.fft.ifftn(fv * shell_gains(fv, np.fft.fftn(truth), measured, gain, 1.0)))


def tiles(out: Path, result: str, average: np.ndarray, truth: np.ndarray, tilt: tuple[float, float],
          iteration: int, plans: list[tuple[int, int]]) -> None:
    """Print the scores of the checkpoint's output through each (core, halo) tile plan, and the oracle filter."""
    from isonet_pl.predict.predictor import tile_plan

    module = load_model(out / result / f"model_iter{iteration:02d}.ckpt")
    precision = module.meta.get("settings", {}).get("precision", "32")
    norm = Normalization.of_volume(average, bool(module.meta.get("normalize_percentile", True)))
    measured = np.broadcast_to(measured_region(truth.shape, *tilt), truth.shape)
    for index, (core, halo) in enumerate([tile_plan(module.net, "cpu")] + plans):
        volume = as_predict(module, average, precision, norm, (core, halo))
        filters = {"--denoise": wiener_denoise(volume, tilt, corrected=True)[0].compute()}
        if index == 0:
            filters["oracle"] = oracle_filter(volume, truth, measured)
        for name, filtered in filters.items():
            s = wedge_correlations(filtered, truth, *tilt, **BAND)
            print(f"{out.name}/{result:24s} tiles {core}:{halo} {name:10s} {s['overall']:.3f} / {s['in_wedge']:.3f}"
                  f" / {s['measured']:.3f}", flush=True)


def snapshots(out: Path, result: str, average: np.ndarray, truth: np.ndarray, tilt: tuple[float, float],
              last: int, ks: list[int]) -> None:
    """Print the scores of checkpoints ``last`` − 5 … ``last`` and of the mean of the last k outputs for each k."""
    def profile(volume):
        return float(np.corrcoef(volume.mean(axis=(1, 2)), truth.mean(axis=(1, 2)))[0, 1])

    def show(name, volume):
        s = wedge_correlations(wiener_denoise(volume, tilt, corrected=True)[0].compute(), truth, *tilt, **BAND)
        print(f"{out.name}/{result:24s} {name:14s} {s['overall']:.3f} / {s['in_wedge']:.3f} / {s['measured']:.3f}"
              f"  Z profile {profile(volume):.3f}", flush=True)

    outputs = {}
    for it in range(max(1, last - max(max(ks), 6) + 1), last + 1):
        module = load_model(out / result / f"model_iter{it:02d}.ckpt")
        norm = Normalization.of_volume(average, bool(module.meta.get("normalize_percentile", True)))
        outputs[it] = as_predict(module, average, norm=norm)
        show(f"iteration {it}", outputs[it])
    for k in ks:
        show(f"mean of last {k}", sum(outputs[it] for it in range(last - k + 1, last + 1)) / k)


def face_pads(out: Path, result: str, average: np.ndarray, truth: np.ndarray, tilt: tuple[float, float],
              iteration: int, pads: list[str]) -> None:
    """Print the scores of the checkpoint's output with the tomogram's Z faces padded before predict's tiles:
    ``0`` none (predict: the network's own zero padding at the faces), ``zN`` N slices of the normalised mean
    (a constant input, 0 in the network's units), ``mN`` N slices mirrored; cropped back after the network, then
    ``--denoise``; also the Z profile's correlation with the truth's."""
    module = load_model(out / result / f"model_iter{iteration:02d}.ckpt")
    precision = module.meta.get("settings", {}).get("precision", "32")
    norm = Normalization.of_volume(average, bool(module.meta.get("normalize_percentile", True)))
    neutral = float(norm.invert(np.zeros((1, 1, 1), np.float32))[0, 0, 0])
    for pad in pads:
        n = int(pad[1:]) if pad[0] in "zm" else int(pad)
        width = ((n, n), (0, 0), (0, 0))
        padded = average if n == 0 else np.pad(average, width, mode="symmetric") if pad[0] == "m" else \
            np.pad(average, width, constant_values=neutral)
        volume = as_predict(module, np.ascontiguousarray(padded), precision, norm)[n:average.shape[0] + n]
        volume = wiener_denoise(np.ascontiguousarray(volume), tilt, corrected=True)[0].compute()
        s = wedge_correlations(volume, truth, *tilt, **BAND)
        z = float(np.corrcoef(volume.mean(axis=(1, 2)), truth.mean(axis=(1, 2)))[0, 1])
        print(f"{out.name}/{result:24s} faces {pad:4s} {s['overall']:.3f} / {s['in_wedge']:.3f} / {s['measured']:.3f}"
              f"  Z profile {z:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="pairs OUT_DIR RESULT")
    parser.add_argument("--iteration", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles", default=None,
                        help="comma-separated core:halo tile plans to score instead (the default plan first)")
    parser.add_argument("--snapshots", default=None,
                        help="comma-separated k: score the mean of the last k checkpoints' outputs instead")
    parser.add_argument("--face_pad", default=None,
                        help="comma-separated pads of the Z faces to score instead: 0, zN (constant), mN (mirrored)")
    args = parser.parse_args()
    if len(args.runs) % 2:
        parser.error("give OUT_DIR RESULT pairs")
    torch.set_num_threads(args.threads)
    for out, result in zip(args.runs[::2], args.runs[1::2], strict=True):
        out = Path(out)
        sim = json.loads((out / "simulation.json").read_text())
        tilt = (sim["tilt_min"], sim["tilt_max"])
        truth = read_mrc(out / "ground_truth" / "sim_00.mrc")[0]
        deconv = out / "deconv" / "sim_00.mrc"
        average = read_mrc(deconv if deconv.exists() else out / "tomos" / "sim_00.mrc")[0]
        if args.tiles:
            tiles(out, result, average, truth, tilt, args.iteration,
                  [tuple(int(v) for v in p.split(":")) for p in args.tiles.split(",")])
            continue
        if args.face_pad:
            face_pads(out, result, average, truth, tilt, args.iteration, args.face_pad.split(","))
            continue
        if args.snapshots:
            snapshots(out, result, average, truth, tilt, args.iteration,
                      [int(k) for k in args.snapshots.split(",")])
            continue
        module = load_model(out / result / f"model_iter{args.iteration:02d}.ckpt")
        precision = module.meta.get("settings", {}).get("precision", "32")
        norm = Normalization.of_volume(average, bool(module.meta.get("normalize_percentile", True)))

        def network(volume, module=module, norm=norm, precision=precision):
            return as_predict(module, np.ascontiguousarray(volume), precision, norm)

        def show(name, volume, denoise=True, tilt=tilt, truth=truth, label=f"{out.name}/{result}"):
            if denoise:
                volume = wiener_denoise(volume, tilt, corrected=True)[0].compute()
            s = wedge_correlations(volume, truth, *tilt, **BAND)
            print(f"{label:44s} {name:28s} {s['overall']:.3f} / {s['in_wedge']:.3f} / {s['measured']:.3f}",
                  flush=True)

        flipped = [network(np.ascontiguousarray(np.flip(average, axes))) for axes in FLIPS[1:]]
        outputs = [network(average)] + [np.flip(o, axes) for o, axes in zip(flipped, FLIPS[1:], strict=True)]
        show("average", outputs[0])
        show("flips 2", 0.5 * (outputs[0] + outputs[1]))
        show("flips 4", sum(outputs) / 4)
        if deconv.exists():
            continue
        halves = [network(read_mrc(out / name / "sim_00.mrc")[0]) for name in ("even", "odd")]
        mean = 0.5 * (halves[0] + halves[1])
        show("halves", mean)
        weights = fsc_weights(*halves, np.broadcast_to(measured_region(truth.shape, *tilt), truth.shape))
        show("halves, FSC weights", np.real(np.fft.ifftn(np.fft.fftn(mean) * weights)), denoise=False)
        show("average, FSC weights", np.real(np.fft.ifftn(np.fft.fftn(outputs[0]) * weights)), denoise=False)


if __name__ == "__main__":
    main()
