"""The model card stored in checkpoints: validated on load, checked against the tomogram predict corrects."""

import logging

import pytest

from isonet_pl.errors import InputError
from isonet_pl.model.card import ModelCard, check_tomogram, read_card
from isonet_pl.model.module import IsoNetModule

CARD = {"method": "n2n", "cube_size": 32, "crop_size": 48, "tilt_ranges": [[-60.0, 60.0]], "pixel_size": 10.0,
        "normalize_percentile": True, "normalization": "tomogram", "settings": {"precision": "32"}}


def test_card_round_trip_through_a_checkpoint(tmp_path):
    module = IsoNetModule(net={"depth": 2, "base_channels": 4}, meta=ModelCard.model_validate(CARD).model_dump())
    path = tmp_path / "m.ckpt"
    import pytorch_lightning as pl

    trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    loaded = IsoNetModule.load_from_checkpoint(path, map_location="cpu")
    card = read_card(loaded, path)
    assert card.method == "n2n" and card.tilt_ranges == [(-60.0, 60.0)] and card.pixel_size == 10.0


def test_invalid_card_is_a_clear_error(tmp_path):
    module = IsoNetModule(net={"depth": 2, "base_channels": 4}, meta={**CARD, "method": "magic"})
    with pytest.raises(InputError, match="model card is not valid.*method"):
        read_card(module, tmp_path / "m.ckpt")


def test_mismatching_tomogram_is_reported(caplog):
    card = ModelCard.model_validate(CARD)
    with caplog.at_level(logging.WARNING, logger="isonet_pl"):
        check_tomogram(card, "a.mrc", (-60.0, 60.0), 10.2)
        assert not caplog.text
        check_tomogram(card, "b.mrc", (-45.0, 60.0), 10.0)
        check_tomogram(card, "c.mrc", (-60.0, 60.0), 13.0)
    assert "b.mrc: tilt range -45…60°" in caplog.text and "c.mrc: pixel size 13 Å" in caplog.text
