"""The end-to-end demo behind ``make demo``: a synthetic tomogram through the whole workflow.

simulate -> (prepare_star's table, written by simulate) -> deconv -> make_mask -> extract ->
refine -> predict, then the correlation of the raw and corrected tomograms with the ground
truth (overall, and inside the missing wedge), and PNG previews.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import numpy as np

from isonet_pl.config import IsoNetConfig, load_config

logger = logging.getLogger(__name__)

#: Band of the in-wedge correlation (fractions of Nyquist); see bench/quality/quality.py.
BAND = {"min_resolution_fraction": 0.1, "max_resolution_fraction": 0.5}


def demo_config() -> IsoNetConfig:
    """The shipped demo preset (``conf/demo.yaml``): small network and sizes for a 2-core CPU."""
    return load_config(files("isonet_pl.conf").joinpath("demo.yaml"))


def demo_inputs(out_dir: str | Path, cfg: IsoNetConfig) -> Iterator[str | tuple[Path, Path]]:
    """simulate -> deconv -> make_mask -> extract in ``out_dir``: yields report lines, then
    ``(tomograms.star, subtomo.star)`` last."""
    from isonet_pl.workflows.deconv import deconv
    from isonet_pl.workflows.extract import extract
    from isonet_pl.workflows.mask import make_mask
    from isonet_pl.workflows.simulate import simulate

    out = Path(out_dir).resolve()
    star = simulate(out, cfg.simulate)
    yield f"simulate: {'x'.join(map(str, cfg.simulate.shape))} voxels, tilts {cfg.simulate.tilt_min:g}..." \
          f"{cfg.simulate.tilt_max:g} deg, defocus {cfg.simulate.defocus:g} A" \
          f"{', even/odd halves' if cfg.simulate.halves else ''} -> {star}"
    if cfg.simulate.defocus > 0 or (not cfg.simulate.halves and cfg.deconv.noise_filter):
        # CTF deconvolution, or without a CTF the measured Wiener filter of the single-tomogram mode
        deconv(star, cfg.deconv.model_copy(update={"deconv_folder": str(out / "deconv")}), cfg.io)
        yield f"deconv -> {out / 'deconv'}"
    make_mask(star, cfg.make_mask.model_copy(update={"mask_folder": str(out / "mask")}), cfg.io)
    yield f"make_mask -> {out / 'mask'}"
    sub_star = extract(star, cfg.extract.model_copy(update={"subtomo_folder": str(out / "subtomo"),
                                                            "subtomo_star": str(out / "subtomo.star")}), cfg.io)
    yield f"extract -> {sub_star}"
    yield star, sub_star


def run_demo(out_dir: str | Path, cfg: IsoNetConfig | None = None) -> Iterator[str]:
    """Run the whole workflow on a synthetic tomogram in ``out_dir``; yield report lines as it goes."""
    import torch

    from isonet_pl.evaluate import wedge_correlations
    from isonet_pl.io.mrc import read_mrc
    from isonet_pl.plot import slice_preview, write_png
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.refine import refine

    cfg = cfg or demo_config()
    out = Path(out_dir).resolve()
    t0 = time.perf_counter()
    for item in demo_inputs(out, cfg):
        if isinstance(item, str):
            yield item
        else:
            star, sub_star = item
    paths = {name: str(out / name) for name in ("results", "corrected")}
    t1 = time.perf_counter()
    model = refine(sub_star, cfg.refine.model_copy(update={"result_dir": paths["results"]}))
    yield f"refine: {cfg.refine.iterations} iterations in {time.perf_counter() - t1:.0f} s -> {model}"
    predict(star, model, cfg.predict.model_copy(update={"output_dir": paths["corrected"]}), cfg.io)
    yield f"predict -> {paths['corrected']}"

    raw, _ = read_mrc(out / "tomos" / "sim_00.mrc")
    truth, _ = read_mrc(out / "ground_truth" / "sim_00.mrc")
    corrected, _ = read_mrc(out / "corrected" / "sim_00_corrected.mrc")
    tilt = (cfg.simulate.tilt_min, cfg.simulate.tilt_max)
    scores = {name: wedge_correlations(vol, truth, *tilt, **BAND) for name, vol in
              (("raw", raw), ("corrected", corrected))}
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    for name, s in scores.items():
        yield f"correlation with the ground truth, {name:9s}: overall {s['overall']:.3f}, " \
              f"inside the missing wedge {s['in_wedge']:.3f}"
    mid_z, mid_y = raw.shape[0] // 2, raw.shape[1] // 2
    write_png(out / "preview_xy.png", np.concatenate([slice_preview(v[mid_z]) for v in (raw, corrected, truth)], 1))
    write_png(out / "preview_xz.png", np.concatenate([slice_preview(v[:, mid_y]) for v in (raw, corrected, truth)],
                                                     1))
    yield f"previews (raw | corrected | ground truth): {out / 'preview_xy.png'}, {out / 'preview_xz.png'}"
    yield f"loss curve: {Path(paths['results']) / 'losses.svg'}"
    yield f"done in {time.perf_counter() - t0:.0f} s on {torch.get_num_threads()} thread(s); outputs in {out}"
