"""The CUDA paths: refine and predict on a GPU (skipped without one; the CPU runs the same code in the other
tests)."""

from __future__ import annotations

import pytest
import torch

from isonet_pl.config import IOConfig, PredictConfig, RefineConfig

pytestmark = pytest.mark.gpu


def test_refine_and_predict_on_a_gpu(subtomo_star, tmp_path):
    """A tiny refine on the first GPU (precision auto: bf16-mixed or 16-mixed there) and predict with its model
    on the GPU: finite outputs, and the checkpoint loads on the CPU."""
    from isonet_pl.io.mrc import read_mrc
    from isonet_pl.io.star import read_star
    from isonet_pl.model.checkpoint import load_module
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.refine import refine

    model = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), iterations=2, epochs=1,
                                              steps_per_epoch=2, batch_size=2, filter_base=4, unet_depth=2,
                                              convs_per_depth=1, preprocessing_ncpus=0, gpuID="0",
                                              precision="auto"))
    module = load_module(model)
    assert module.meta["settings"]["precision"] in ("bf16-mixed", "16-mixed")
    table = read_star(subtomo_star)
    star = table.resolve(table.df["rlnTomogramStarFile"].iloc[0])
    predict(star, model, PredictConfig(output_dir=str(tmp_path / "out"), gpuID="0"), IOConfig(zarr_levels=1))
    (out,) = (tmp_path / "out").glob("*_corrected.mrc")
    data, _ = read_mrc(out)
    assert torch.isfinite(torch.from_numpy(data)).all()
