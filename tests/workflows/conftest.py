"""Fixtures of the workflow tests."""

from __future__ import annotations

import pytest
import torch

from isonet_pl.config import ExtractConfig, IOConfig, SimulateConfig


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


