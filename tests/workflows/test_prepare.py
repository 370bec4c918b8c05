"""prepare_star on folders as users lay them out: links to tomograms elsewhere."""

from __future__ import annotations

import logging

import numpy as np
import starfile

from isonet_pl.config import PrepareStarConfig
from isonet_pl.io.mrc import write_mrc
from isonet_pl.workflows.prepare import prepare_star


def test_links_are_kept_and_dangling_links_warned(tmp_path, monkeypatch, caplog):
    """A linked tomogram is recorded by its link (not its target), relative to the STAR file; a link to a
    missing file is skipped with a warning naming it (it was skipped silently)."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "storage"
    store.mkdir()
    write_mrc(store / "real.mrc", np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32),
              voxel_size=10.0)
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    (tomos / "TS_01.mrc").symlink_to(store / "real.mrc")
    (tomos / "TS_02.mrc").symlink_to(store / "gone.mrc")
    with caplog.at_level(logging.WARNING):
        prepare_star(tomos, PrepareStarConfig(output_star=str(tmp_path / "tomograms.star")))
    assert list(starfile.read(tmp_path / "tomograms.star")["rlnMicrographName"]) == ["tomos/TS_01.mrc"]
    assert any("TS_02.mrc" in r.getMessage() and "missing file" in r.getMessage() for r in caplog.records)
