"""RELION-5 tomograms.star files are read as tomogram tables (split reconstructions included)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import starfile

from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.mrc import read_mrc, write_mrc


def _relion_project(root, with_series=True, full=False):
    """A RELION-5 layout: Tomograms/job010/tomograms.star (global block) with half tomograms and,
    in AlignTiltSeries/, the tilt images of each series (nominal angles, defocus per image)."""
    rng = np.random.default_rng(0)
    rows = []
    for name in ("TS_01", "TS_02"):
        halves = [rng.standard_normal((20, 24, 28)).astype(np.float32) for _ in range(2)]
        row = {"rlnTomoName": name, "rlnTomoTiltSeriesStarFile": f"AlignTiltSeries/job005/{name}.star",
               "rlnVoltage": 300.0, "rlnTomoTiltSeriesPixelSize": 1.35, "rlnTomoTomogramBinning": 8.0}
        for k, half in enumerate(halves):
            path = root / "Tomograms" / "job010" / "tomograms" / f"rec_{name}_half{k + 1}.mrc"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_mrc(path, half, voxel_size=10.8)
            row[f"rlnTomoReconstructedTomogramHalf{k + 1}"] = str(path.relative_to(root))
        if full:
            row["rlnTomoReconstructedTomogram"] = row["rlnTomoReconstructedTomogramHalf1"]
        rows.append(row)
        if with_series:
            angles = np.arange(-54.0, 64.0, 3.0)
            series = pd.DataFrame({"rlnTomoNominalStageTiltAngle": angles,
                                   "rlnDefocusU": 30000 + 100 * np.abs(angles), "rlnDefocusV": 29000 + 0 * angles})
            (root / "AlignTiltSeries" / "job005").mkdir(parents=True, exist_ok=True)
            starfile.write({name: series}, root / "AlignTiltSeries" / "job005" / f"{name}.star")
    star = root / "Tomograms" / "job010" / "tomograms.star"
    starfile.write({"global": pd.DataFrame(rows)}, star)
    return star


def test_relion5_split_reconstructions(tmp_path, monkeypatch):
    """Halves, pixel size (tilt-series pixel x binning), defocus at 0°, tilt range; the average is written
    once beside the STAR file; the RELION file is left as it was and its table is reused."""
    monkeypatch.chdir(tmp_path)  # RELION paths are relative to the project folder
    star = _relion_project(tmp_path)
    before = hashlib.sha256(star.read_bytes()).hexdigest()
    table = read_tomogram_star(star)
    assert table.path == star.with_name("tomograms_isonet.star") and table.path.exists()
    assert list(table.df["rlnTomoName"]) == ["TS_01", "TS_02"]
    np.testing.assert_allclose(table.df["rlnPixelSize"], 1.35 * 8)
    np.testing.assert_allclose(table.df["rlnDefocus"], 29500.0)
    np.testing.assert_allclose(table.df["rlnTiltMin"], -54.0)
    np.testing.assert_allclose(table.df["rlnTiltMax"], 63.0)
    avg = read_mrc(table.get_path(0, "rlnMicrographName"))[0]
    h1 = read_mrc(table.get_path(0, "rlnTomoReconstructedTomogramHalf1"))[0]
    h2 = read_mrc(table.get_path(0, "rlnTomoReconstructedTomogramHalf2"))[0]
    np.testing.assert_allclose(avg, (h1 + h2) / 2, rtol=1e-6)
    assert table.get_path(0, "rlnMicrographName").parent.name == "isonet_averages"
    # results of later steps go to our table, and reading the RELION file again returns them
    table.set_value(0, "rlnDefocus", 12345.0)
    table.write()
    again = read_tomogram_star(star)
    assert again.df["rlnDefocus"].iloc[0] == 12345.0
    assert hashlib.sha256(star.read_bytes()).hexdigest() == before


def test_relion5_full_tomogram_and_missing_series(tmp_path, monkeypatch, caplog):
    """A full reconstruction is used as is; without tilt images the defaults come with a warning."""
    monkeypatch.chdir(tmp_path)
    star = _relion_project(tmp_path, with_series=False, full=True)
    table = read_tomogram_star(star)
    assert table.get_path(0, "rlnMicrographName").name == "rec_TS_01_half1.mrc"
    assert not (star.parent / "isonet_averages").exists()
    assert table.df["rlnDefocus"].iloc[0] == 0 and table.df["rlnTiltMin"].iloc[0] == -60
    assert "no tilt images" in caplog.text


def test_relion5_missing_half_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    star = _relion_project(tmp_path)
    next((star.parent / "tomograms").glob("rec_TS_02_half2.mrc")).unlink()
    with pytest.raises(InputError, match="missing file"):
        read_tomogram_star(star)
    assert not star.with_name("tomograms_isonet.star").exists()
