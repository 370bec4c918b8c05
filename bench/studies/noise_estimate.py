"""Noise of a tomogram without empty slices: candidate estimates against the true noise (issue #42).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/studies/noise_estimate.py [--seeds 0,1] [--out bench/out/noise]``

For each phantom (no membrane sheets, SNR 0.5 per projection, 96×256×256 at 10 Å, trimmed to its specimen with
0, 3 or 6 empty slices per side as ``bench/quality/quality.py``'s ``emptyN`` kinds, or thick: 19 per side), tilt
range and seed, the tomogram is simulated twice from the same projections, with and without noise, so the noise
(their difference) is known. Its power spectrum over the specimen slices' boxes, in the measured region, in shells
of |k|, is the truth; each candidate estimates it from the noisy tomogram alone:

* ``empty``: the empty slices above and below the specimen (``isonet_pl.preprocess.spectral``'s first source;
  only where the tomogram has them);
* ``tilt axis``: the separable model A(r)·T(ky) fitted where |k| ≥ 0.375 (``spectral.tilt_axis_noise``, the new
  source);
* ``blind spot Y``: a J-invariant estimate along the tilt axis (Noise2Self with the blind spot on the Y
  neighbours, whose noise is independent): each Y plane predicted by the mean of its two neighbours, the
  residual's power per in-plane frequency divided by its noise gain 1.5 (in Fourier space: the power weighted by
  (1 − cos 2πky)²);
* ``white floor``: the power spectrum's high-frequency floor taken as white noise (the mean PSD over |k| ≥ 0.375,
  the same in every shell).

Printed per candidate: the noise std (measured region) over the true one, the largest per-shell error over
0.05–0.45 cycles/voxel, and the score (overall / in-wedge correlation with the ground truth) of the raw tomogram
Wiener-filtered with its weights (``spectral.wiener_kernel``), beside the best gaussian low-pass and the filter
with the true noise. Variants: ``--ctf`` (3 µm defocus: the raw tomogram, and the deconvolved one, whose noise
the CTF filter reshaped), ``--interpolated`` (the tomogram smoothed by a half-voxel linear shift along Y, as an
alignment's interpolation does: noise no longer white along Y). Writes ``noise_estimate.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from isonet_pl.data.wedge import measured_region
from isonet_pl.demo import BAND
from isonet_pl.evaluate import wedge_correlations
from isonet_pl.preprocess import spectral as sp
from isonet_pl.preprocess.ctf import Microscope
from isonet_pl.preprocess.deconv import DeconvParams, deconvolve_volume
from isonet_pl.simulate import simulate_tomogram

NZ, MARGIN = 96, 32


def phantom(empty: int | None, tilt: tuple[float, float], seed: int, defocus: float) -> dict:
    """Noisy and noise-free tomograms (nz, ny, nx) of one phantom and the ground truth; ``empty`` None: thick."""
    if empty is None:
        kw = {"shape_zyx": (NZ, 256, 256), "slab_fraction": 0.6}
        cut = slice(0, NZ)
    else:
        kw = {"shape_zyx": (NZ + MARGIN, 256, 256), "slab_fraction": (NZ - 2 * empty) / (NZ + MARGIN)}
        cut = slice(MARGIN // 2, MARGIN // 2 + NZ)
    kw.update(tilt_min=tilt[0], tilt_max=tilt[1], seed=seed, defocus_angstrom=defocus, n_membranes=0)
    noisy = simulate_tomogram(snr=0.5, **kw)
    clean = simulate_tomogram(snr=None, **kw)
    return {"noisy": noisy["tomogram"][cut], "clean": clean["tomogram"][cut], "truth": noisy["ground_truth"][cut]}


def cell_estimates(spectra, i: int) -> dict[str, np.ndarray]:
    """The per-cell noise (n_plane, n_ky) of the candidates that work on cells, region ``i``."""
    psd, counts = spectra.cell_psd[i], spectra.cell_counts[i]
    out = {"tilt axis": sp.tilt_axis_noise(psd, counts, spectra.plane, spectra.ky, spectra.boxes)[0]}
    gain = (1 - np.cos(2 * np.pi * spectra.ky)) ** 2  # residual of a plane minus the mean of its Y neighbours
    w = np.where(np.isfinite(psd), counts, 0.0) * gain[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        blind = np.nansum(np.nan_to_num(psd) * w, axis=1) / np.sum(w, axis=1)
    out["blind spot Y"] = np.repeat(np.nan_to_num(blind)[:, None], spectra.ky.size, axis=1)
    return out


def evaluate(volume: np.ndarray, noise: np.ndarray, truth: np.ndarray, tilt: tuple[float, float]) -> dict:
    """Every candidate's noise spectrum against the truth, and the Wiener filter each gives."""
    empty, specimen, _ = sp._layout(volume)
    depth = min(min(b - a for a, b in empty) if empty else sp.MAX_DEPTH, sp.MAX_DEPTH, specimen[1] - specimen[0])
    region = [measured_region((depth, sp.BOX, sp.BOX), *tilt, rfft=True)]
    total = sp._spectra(sp._boxes(volume, [specimen], depth, sp.MAX_BOXES, seed=1), region)
    true = sp._spectra(sp._boxes(noise, [specimen], depth, sp.MAX_BOXES, seed=1), region).psd[0]
    shells = {name: total.to_shells(cells[None])[0] for name, cells in cell_estimates(total, 0).items()}
    floor = total.cell_psd[0]
    corner = (total.plane[:, None] ** 2 + total.ky[None, :] ** 2) >= sp.CORNER**2
    w = np.where(corner & np.isfinite(floor), total.cell_counts[0], 0.0)
    shells["white floor"] = np.full_like(true, np.nansum(np.nan_to_num(floor) * w) / np.sum(w))
    if empty:
        shells["empty"] = sp.radial_psd(sp._boxes(volume, empty, depth, sp.MAX_BOXES), region)[0][0]
    shells["true noise"] = true
    frequency = (np.arange(true.size) + 0.5) * sp.SHELL
    band = (frequency > 0.05) & (frequency < 0.45)
    counts = total.counts[0]
    true_std = float(np.sqrt(np.nansum(true * counts)))
    rows = {}
    for name, est in shells.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = np.clip(1.0 - est / total.psd[0], 0.0, 1.0)
        weights[~np.isfinite(weights)] = 1.0
        estimate = sp.SpectralEstimate(frequency, total.psd[0], est, sp._regularize(weights), (), specimen, 0.0)
        filtered = sp.apply_kernel(volume, sp.wiener_kernel(estimate)).compute()
        ratio = est[band] / true[band]
        rows[name] = {"std_ratio": float(np.sqrt(np.nansum(est * counts)) / true_std),
                      "worst_shell": float(np.nanmax(np.abs(np.log(ratio)))),
                      **wedge_correlations(filtered, truth, *tilt, **BAND)}
    return {"rows": rows, "misfit": sp.tilt_axis_noise(total.cell_psd[0], total.cell_counts[0], total.plane,
                                                        total.ky, total.boxes)[1],
            "empty": [list(r) for r in empty] if empty else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--empty", default="0,3,6,thick", help="empty slices per side (thick: 19)")
    parser.add_argument("--tilts", default="-60:60,-50:65,-45:60")
    parser.add_argument("--ctf", action="store_true", help="3 µm defocus: raw and deconvolved tomograms")
    parser.add_argument("--interpolated", action="store_true", help="also the tomogram shifted by half a voxel in Y")
    parser.add_argument("--out", default="bench/out/noise")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for empty in args.empty.split(","):
        for tilt_text in args.tilts.split(","):
            tilt = tuple(float(v) for v in tilt_text.split(":"))
            for seed in (int(s) for s in args.seeds.split(",")):
                t0 = time.perf_counter()
                e = None if empty == "thick" else int(empty)
                sim = phantom(e, tilt, seed, 30000.0 if args.ctf else 0.0)
                truth = sim["truth"]
                variants = {"raw": (sim["noisy"], sim["noisy"] - sim["clean"])}
                if args.ctf:
                    params = DeconvParams(pixel_size=10.0, defocus=30000.0, microscope=Microscope())
                    deconvolved = deconvolve_volume(sim["noisy"], params)
                    clean = deconvolve_volume(sim["clean"], params)
                    variants["deconvolved"] = (deconvolved, deconvolved - clean)
                if args.interpolated:
                    noisy, clean = (ndi.shift(sim[k], (0, 0.5, 0), order=1, mode="nearest") for k in ("noisy", "clean"))
                    variants["interpolated"] = (noisy, noisy - clean)
                gaussian = max((wedge_correlations(ndi.gaussian_filter(sim["noisy"], s), truth, *tilt, **BAND)
                                for s in (1.0, 1.5, 2.0, 2.5, 3.0)), key=lambda r: r["overall"])
                for variant, (volume, noise) in variants.items():
                    key = f"empty {empty}, {tilt_text}, seed {seed}, {variant}"
                    results[key] = r = evaluate(volume, noise, truth, tilt)
                    r["gaussian"] = gaussian
                    print(f"{key}: tilt-axis misfit {r['misfit']:.3f}, empty slices {r['empty']}; best gaussian "
                          f"{gaussian['overall']:.3f} / {gaussian['in_wedge']:.3f} ({time.perf_counter() - t0:.0f} s)",
                          flush=True)
                    for name, row in r["rows"].items():
                        print(f"  {name:13s} std {row['std_ratio']:.3f} of the true noise's, worst shell "
                              f"{np.exp(row['worst_shell']):.2f}x; Wiener {row['overall']:.3f} / {row['in_wedge']:.3f}"
                              f" ({row['measured']:.3f})", flush=True)
                (out / "noise_estimate.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
