"""Every Zarr store the commands write is valid OME-NGFF 0.5, checked with an independent reader
(``ome-zarr-models``): images, their resolution levels, and the mask labels with the image's levels and colours."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from isonet_pl.config import DeconvConfig, ExtractConfig, IOConfig, MaskConfig, PredictConfig, SimulateConfig

ome_zarr_models = pytest.importorskip("ome_zarr_models")


def _validate(store: Path) -> list[str]:
    """The store's problems as an independent reader sees them ([] when valid)."""
    import zarr
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = Image.from_zarr(zarr.open_group(store, mode="r"))
        except Exception as exc:
            return [f"{store}: {exc}"]
        problems = []
        group = zarr.open_group(store, mode="r")
        n_levels = len(image.attributes.ome.multiscales[0].datasets)
        for name in (group["labels"].attrs["ome"]["labels"] if "labels" in group else []):
            try:
                label = ImageLabel.from_zarr(group["labels"][name])
            except Exception as exc:
                problems.append(f"{store} labels/{name}: {exc}")
                continue
            ome = label.attributes.ome
            if len(ome.multiscales[0].datasets) != n_levels:
                problems.append(f"{store} labels/{name}: {len(ome.multiscales[0].datasets)} levels, image {n_levels}")
            if not ome.image_label.colors:
                problems.append(f"{store} labels/{name}: no colours")
    return problems


def test_every_store_every_command_writes_is_valid_ngff(tmp_path, monkeypatch, n2n_model):
    """deconv (tomogram and halves), make_mask (label), extract's copies and predict's output: all valid, labels
    with the image's levels and colours (4 of 24 stores were rejected: labels with one level of two); half
    stores are named after their files."""
    import zarr

    from isonet_pl.workflows.deconv import deconv
    from isonet_pl.workflows.extract import extract
    from isonet_pl.workflows.mask import make_mask
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.simulate import simulate

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    star = simulate(Path("p"), SimulateConfig(shape=(64, 96, 96), defocus=20000, halves=True, seed=1))
    io = IOConfig(zarr_levels=3, zarr_chunks=(32, 32, 32))
    deconv(star, DeconvConfig(), io)
    make_mask(star, MaskConfig(), io)
    extract(star, ExtractConfig(cube_size=16, crop_size=24, subtomo_folder="sub"), io)
    predict(star, n2n_model[1], PredictConfig(), io)
    stores = sorted(Path("p").rglob("*.zarr"))
    assert len(stores) >= 8
    problems = [p for store in stores for p in _validate(store)]
    assert problems == []
    labelled = [s for s in stores if (s / "labels" / "mask").exists()]
    assert labelled and all(len(zarr.open_group(s, mode="r")["labels"]["mask"]) == 2 for s in labelled)
    names = {zarr.open_group(s, mode="r").attrs["ome"]["multiscales"][0]["name"] for s in stores}
    assert {"even/sim_00", "odd/sim_00", "tomos/sim_00"} <= names
