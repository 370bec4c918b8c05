"""simulate: synthetic tomograms with ground truth, for the tests, the demo and the benchmarks."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from isonet_pl.config import PrepareStarConfig, SimulateConfig
from isonet_pl.errors import InputError
from isonet_pl.io.mrc import write_mrc
from isonet_pl.io.paths import check_output_dir
from isonet_pl.io.star import HALF_COLUMNS, relative_to
from isonet_pl.preprocess.ctf import Microscope
from isonet_pl.project import tomogram_table
from isonet_pl.simulate import simulate_tomogram

logger = logging.getLogger(__name__)

def simulate(out_dir: str | Path, cfg: SimulateConfig | None = None) -> Path:
    """Simulate ``cfg.n_tomograms`` tomograms and write them with a ``tomograms.star``.

    Writes, in ``out_dir``: ``tomos/sim_NN.mrc`` (the tomogram), ``ground_truth/sim_NN.mrc``
    (the phantom in the tomogram's contrast convention: protein dark), with ``--halves``
    also ``even/sim_NN.mrc`` and ``odd/sim_NN.mrc``, plus ``tomograms.star`` (pixel size,
    defocus, tilt range, half columns) and ``simulation.json`` (the settings).

    Returns
    -------
    Path
        The ``tomograms.star`` written.
    """
    cfg = cfg or SimulateConfig()
    out = check_output_dir(out_dir, option="OUT_DIR")
    if (out / "tomograms.star").exists() and not (out / "simulation.json").exists():
        raise InputError("holds a tomograms.star that simulate did not write; it would be replaced", out,
                         "choose another OUT_DIR")
    folders = {"tomogram": "tomos", "ground_truth": "ground_truth"}
    if cfg.halves:
        folders.update(even="even", odd="odd")
    for sub in folders.values():
        check_output_dir(out / sub)
    files: dict[str, list[Path]] = {k: [] for k in folders}
    for i in range(cfg.n_tomograms):
        t0 = time.perf_counter()
        volumes = simulate_tomogram(
            shape_zyx=cfg.shape, tilt_min=cfg.tilt_min, tilt_max=cfg.tilt_max, tilt_step=cfg.tilt_step,
            pixel_size=cfg.pixel_size, snr=cfg.snr, defocus_angstrom=cfg.defocus,
            microscope=Microscope(cfg.voltage, cfg.cs), halves=cfg.halves, slab_fraction=cfg.slab_fraction,
            n_membranes=cfg.membranes, membrane_tilt=cfg.membrane_tilt,
            seed=cfg.seed + i)
        for key, sub in folders.items():
            path = out / sub / f"sim_{i:02d}.mrc"
            write_mrc(path, volumes[key], voxel_size=cfg.pixel_size)
            files[key].append(path)
        logger.info("simulated %s (%s voxels) in %.1f s", files["tomogram"][-1], "x".join(map(str, cfg.shape)),
                    time.perf_counter() - t0)
    star = out / "tomograms.star"
    prep = PrepareStarConfig(output_star=str(star), pixel_size=cfg.pixel_size, defocus=cfg.defocus,
                             number_subtomos=cfg.number_subtomos, tilt_min=cfg.tilt_min, tilt_max=cfg.tilt_max)
    table = tomogram_table(files["tomogram"], star, prep)
    if cfg.halves:
        for column, key in zip(HALF_COLUMNS, ("even", "odd"), strict=False):
            table.df[column] = [relative_to(p, out) for p in files[key]]
    table.write()
    (out / "simulation.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=1))
    logger.info("wrote %s", star)
    return star
