"""Fixtures of the workflow tests."""

from __future__ import annotations

import pytest
import torch

from isonet_pl.config import ExtractConfig, IOConfig, RefineConfig, SimulateConfig


@pytest.fixture(scope="session")
def subtomo_star(tmp_path_factory):
    """12 subtomograms (crop 24, cube 16) extracted from a simulated tomogram."""
    from isonet_pl.workflows.extract import extract
    from isonet_pl.workflows.simulate import simulate

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("refine")
    star = simulate(root / "sim", SimulateConfig(shape=(40, 64, 64), number_subtomos=12, seed=4))
    return extract(star, ExtractConfig(cube_size=16, crop_size=24, subtomo_folder=str(root / "subtomo"),
                                       subtomo_star=str(root / "subtomo.star"), use_deconv_tomo=False),
                   IOConfig(zarr_chunks=(32, 32, 32), zarr_levels=1))




@pytest.fixture(scope="session")
def n2n_model(tmp_path_factory):
    """(tomograms.star, model_iter02.ckpt, result_dir): a tiny n2n refine on even/odd halves of a simulation."""
    from isonet_pl.workflows.extract import extract
    from isonet_pl.workflows.refine import refine
    from isonet_pl.workflows.simulate import simulate

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("n2n")
    star = simulate(root / "sim", SimulateConfig(shape=(40, 64, 64), number_subtomos=8, halves=True, seed=2))
    sub = extract(star, ExtractConfig(cube_size=16, crop_size=24, subtomo_folder=str(root / "st"),
                                      subtomo_star=str(root / "st.star")), IOConfig(zarr_levels=1))
    # ema_decay 0.5: the n2n default 0.99 would leave these 12 steps' weights near their initialisation
    ckpt = refine(sub, RefineConfig(result_dir=str(root / "r"), iterations=2, epochs=2, steps_per_epoch=3,
                                    batch_size=2, filter_base=4, unet_depth=2, convs_per_depth=1,
                                    preprocessing_ncpus=0, mw_weight=2.0, residual=False, wedge_target="average",
                                    frequency_power=0.5, fill_normalization="tomogram", ema_decay=0.5))
    return star, ckpt, root / "r"
