"""Settings: the shipped YAML presets, precedence and validation."""

from __future__ import annotations

from importlib.resources import files

import pytest
from pydantic import ValidationError

from isonet_pl.config import (
    ExtractConfig,
    IsoNetConfig,
    PrepareStarConfig,
    default_yaml,
    load_config,
    save_config,
    with_overrides,
)
from isonet_pl.errors import InputError

CONF = files("isonet_pl.conf")


def test_default_yaml_matches_the_models():
    """conf/default.yaml is exactly what the settings models say (regenerate it with default_yaml())."""
    assert CONF.joinpath("default.yaml").read_text() == default_yaml()


@pytest.mark.parametrize("name", ["default.yaml", "smoke.yaml", "demo.yaml", "n2n.yaml", "n2n_nosheets.yaml"])
def test_every_preset_loads_and_round_trips(tmp_path, name):
    """Each shipped preset validates, and save -> load gives the same settings."""
    cfg = load_config(CONF.joinpath(name))
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_unknown_key_is_an_error(tmp_path):
    """A misspelt key in a config file is rejected, naming it."""
    (tmp_path / "c.yaml").write_text("prepare_star:\n  pixelsize: 5\n")
    with pytest.raises(InputError, match="pixelsize"):
        load_config(tmp_path / "c.yaml")


def test_cli_values_override_file_values(tmp_path):
    """defaults < file < command line; None on the command line keeps the file value."""
    (tmp_path / "c.yaml").write_text("prepare_star:\n  pixel_size: 5\n  defocus: 20000\n")
    section = load_config(tmp_path / "c.yaml").prepare_star
    merged = with_overrides(section, {"pixel_size": 7.5, "defocus": None})
    assert merged.pixel_size == 7.5 and merged.defocus == 20000 and merged.number_subtomos == 100


@pytest.mark.parametrize("overrides,word", [({"pixel_size": -1}, "pixel_size"), ({"tilt_min": 70}, "tilt_min"),
                                            ({"number_subtomos": 0}, "number_subtomos")])
def test_invalid_values_name_the_option(overrides, word):
    """Out-of-range values give an error naming the option."""
    with pytest.raises(InputError, match=word):
        with_overrides(PrepareStarConfig(), overrides)


def test_a_removed_choice_is_refused_naming_the_allowed_ones(tmp_path):
    """predict.batch_norm_statistics ``auto`` (default for two days, removed) in a config file is a clear error
    naming the key and the choices, not silently read as another choice."""
    (tmp_path / "c.yaml").write_text("predict:\n  batch_norm_statistics: auto\n")
    with pytest.raises(InputError, match="batch_norm_statistics 'auto'.*'model', 'halves' or 'input'"):
        load_config(tmp_path / "c.yaml")


def test_tuple_settings_accept_comma_strings():
    """zarr_chunks / shape accept "32,64,64" as on the command line."""
    cfg = IsoNetConfig.model_validate({"io": {"zarr_chunks": "32,64,64"}, "simulate": {"shape": "32 48 48"}})
    assert cfg.io.zarr_chunks == (32, 64, 64) and cfg.simulate.shape == (32, 48, 48)


def test_gpu_ids_and_scheduler_addresses(tmp_path):
    """gpuID as YAML numbers (0, [0, 1]) is accepted as text; a malformed gpuID or dask scheduler address is a
    clear error before anything runs (a malformed scheduler gave a traceback and a 20 s hang)."""
    from isonet_pl.config import DeconvConfig, PredictConfig, RefineConfig, load_config

    path = tmp_path / "g.yaml"
    path.write_text("refine:\n  gpuID: 0\npredict:\n  gpuID: [0, 1]\n")
    cfg = load_config(path)
    assert cfg.refine.gpuID == "0" and cfg.predict.gpuID == "0,1"
    assert RefineConfig(gpuID="0, 2").gpuID == "0,2"
    for bad in ("0;rm", "a", "", True):
        with pytest.raises(ValidationError, match="GPU numbers"):
            PredictConfig(gpuID=bad)
    assert DeconvConfig(dask_scheduler="tcp://10.0.0.1:8786").dask_scheduler == "tcp://10.0.0.1:8786"
    for bad in ("tcp://host:abc", "host", "http://x y:1"):
        with pytest.raises(ValidationError, match="scheduler address"):
            DeconvConfig(dask_scheduler=bad)


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", float("inf")])
def test_non_finite_settings_are_refused(value):
    """inf and nan are refused for every number (deconv --cs inf wrote an all-NaN tomogram)."""
    from isonet_pl.config import DeconvConfig, RefineConfig

    with pytest.raises(ValidationError, match="finite"):
        DeconvConfig(cs=value)
    with pytest.raises(ValidationError, match="finite"):
        RefineConfig(noise_level=(value,), noise_start_iter=(1,))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0, float("nan"), float("inf")])
def test_a_bad_background_share_is_refused(bad):
    """extract --background_share is a share in [0, 1): anything else is an error, not a silent clip."""
    with pytest.raises(ValueError, match="background_share"):
        ExtractConfig(background_share=bad)
    assert ExtractConfig(background_share=0.0).background_share == 0.0
