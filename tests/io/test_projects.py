"""Projects as users keep them (issue 43): edits and reruns followed, RELION-5 geometry, tables that are not
tomogram tables, parser leniency. Each test reproduces a defect found on users' layouts; fixtures are built
from the formats' documentation (see ``test_formats.py`` for the writers)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import starfile
from test_formats import _isonet2_star, _relion, _volume

from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.mrc import read_mrc


# ------------------------------------------------------------ derived tables follow the user's file
@pytest.mark.parametrize("column, value", [("rlnDefocus", 41000.0), ("rlnPixelSize", 12.5), ("rlnTiltMax", 50.0)])
def test_an_edit_of_the_users_isonet2_file_reaches_its_table(tmp_path, monkeypatch, caplog, column, value):
    """An edited IsoNet2 defocus or pixel size was dropped once tomograms_isonet.star existed; now it replaces
    the table's value, resets the results that depend on it (warned, naming it) and keeps the other rows."""
    monkeypatch.chdir(tmp_path)
    star = _isonet2_star(tmp_path)
    table = read_tomogram_star(star)
    for row in (0, 1):
        table.set_value(row, "rlnDeconvTomoName", f"deconv/TS_0{row + 1}.mrc")
    table.write()
    raw = starfile.read(star)
    raw.loc[0, column] = value
    starfile.write(raw, star, overwrite=True)
    with caplog.at_level(logging.WARNING):
        again = read_tomogram_star(star)
    assert again.df[column].iloc[0] == value
    assert again.df["rlnDeconvTomoName"].iloc[0] == "None"  # made with the old value: reset
    assert again.df["rlnDeconvTomoName"].iloc[1] == "deconv/TS_02.mrc"  # untouched row keeps its result
    assert f"TS_01: _{column}" in caplog.text and "reset" in caplog.text


def test_a_hand_edit_of_the_table_survives_an_unrelated_change_of_the_users_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    star = _isonet2_star(tmp_path)
    table = read_tomogram_star(star)
    table.set_value(0, "rlnDefocus", 33333.0)  # the user corrects the defocus in our table
    table.write()
    raw = starfile.read(star)
    raw.loc[1, "rlnNumberSubtomo"] = 7  # then edits another row of their own file
    starfile.write(raw, star, overwrite=True)
    again = read_tomogram_star(star)
    assert again.df["rlnDefocus"].iloc[0] == 33333.0 and again.df["rlnNumberSubtomo"].iloc[1] == 7


def test_new_halves_under_the_same_names_remake_the_average(tmp_path, monkeypatch, caplog):
    """A rerun writing new half files: the average of the halves was not remade and no longer matched them."""
    monkeypatch.chdir(tmp_path)
    star = _isonet2_star(tmp_path)
    read_tomogram_star(star)
    _volume(tmp_path / "even" / "TS_01_EVN.mrc", 40)
    _volume(tmp_path / "odd" / "TS_01_ODD.mrc", 41)
    with caplog.at_level(logging.WARNING):
        read_tomogram_star(star)
    assert "TS_01: its input files were rewritten" in caplog.text
    even, odd = (read_mrc(tmp_path / d / f"TS_01_{t}.mrc")[0] for d, t in (("even", "EVN"), ("odd", "ODD")))
    np.testing.assert_allclose(read_mrc(tmp_path / "isonet_averages" / "TS_01.mrc")[0], (even + odd) / 2, rtol=1e-6)


def test_a_copied_project_is_not_seen_as_changed(tmp_path, monkeypatch, caplog):
    """Copying a project (new times, same bytes) keeps its table and results as they are."""
    monkeypatch.chdir(tmp_path)
    star = _isonet2_star(tmp_path / "a")
    table = read_tomogram_star(star)
    table.set_value(0, "rlnDeconvTomoName", "deconv/TS_01.mrc")
    table.write()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with caplog.at_level(logging.WARNING):
        copy = read_tomogram_star(tmp_path / "b" / "tomograms.star")
    assert copy.df["rlnDeconvTomoName"].iloc[0] == "deconv/TS_01.mrc" and "changed since" not in caplog.text


def test_isonet2_averages_of_halves_with_one_name_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    star = _isonet2_star(tmp_path)
    raw = starfile.read(star)
    for run in ("run1", "run2"):
        for d, t, seed in (("even", "EVN", 1), ("odd", "ODD", 2)):
            _volume(tmp_path / run / d / f"TS_01_{t}.mrc", seed + (run == "run2") * 10)
    raw["rlnTomoReconstructedTomogramHalf1"] = ["run1/even/TS_01_EVN.mrc", "run2/even/TS_01_EVN.mrc"]
    raw["rlnTomoReconstructedTomogramHalf2"] = ["run1/odd/TS_01_ODD.mrc", "run2/odd/TS_01_ODD.mrc"]
    starfile.write(raw, star, overwrite=True)
    table = read_tomogram_star(star)
    files = [table.get_path(r, "rlnMicrographName") for r in (0, 1)]
    assert files[0] != files[1] and all(f.exists() for f in files)
    assert not np.allclose(read_mrc(files[0])[0], read_mrc(files[1])[0])


def test_isonet2_coordinate_files_are_refused_clearly(tmp_path, monkeypatch):
    """IsoNet2 coordinate files were ignored (100 random positions drawn, logged as info only)."""
    monkeypatch.chdir(tmp_path)
    star = _isonet2_star(tmp_path)
    raw = starfile.read(star)
    raw.loc[0, "rlnBoxFile"] = "coords/TS_01.coords"
    starfile.write(raw, star, overwrite=True)
    with pytest.raises(InputError, match="row 1 names a coordinate file .*does not read IsoNet2 coordinate files"):
        read_tomogram_star(star)


def test_outputs_of_a_relion_project_are_recorded_relative_to_it(tmp_path, monkeypatch):
    """A copied RELION project read the original's outputs (absolute paths in the derived table)."""
    monkeypatch.chdir(tmp_path)
    star = _relion(tmp_path)
    table = read_tomogram_star(star)
    out = tmp_path / "deconv" / "TS_01.mrc"
    table.set_value(0, "rlnDeconvTomoName", table.relative(out))
    assert table.df["rlnDeconvTomoName"].iloc[0] == "../../deconv/TS_01.mrc"


# ------------------------------------------------------------ RELION-5 geometry
def test_relion5_tilt_range_from_the_aligned_tilts(tmp_path, monkeypatch, caplog):
    """On a pre-tilted lamella the wedge was set from the nominal stage angles (−50…70) for a tomogram
    reconstructed from the aligned tilts (−60…60)."""
    monkeypatch.chdir(tmp_path)
    star = _relion(tmp_path, names=("TS_01",))
    series = tmp_path / "AlignTiltSeries" / "job005" / "TS_01.star"
    nominal = np.arange(-50.0, 71.0, 3.0)
    starfile.write({"TS_01": pd.DataFrame({"rlnTomoNominalStageTiltAngle": nominal,
                                           "rlnTomoYTilt": np.linspace(-60.0, 60.0, nominal.size),
                                           "rlnDefocusU": 31000.0 + 0 * nominal})}, series, overwrite=True)
    table = read_tomogram_star(star)
    assert table.tilt_range(0) == (-60.0, 60.0)
    starfile.write({"TS_01": pd.DataFrame({"rlnTomoNominalStageTiltAngle": nominal,
                                           "rlnDefocusU": 31000.0 + 0 * nominal})}, series, overwrite=True)
    with caplog.at_level(logging.WARNING):
        table = read_tomogram_star(star)
    assert table.tilt_range(0) == (-50.0, 70.0) and "nominal stage angles" in caplog.text


# ------------------------------------------------------------ tables that list no reconstructed tomogram
def _write(path, blocks):
    path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write(blocks, path)
    return path


@pytest.mark.parametrize("kind, blocks, says", [
    ("aligned_tilt_series.star", {"global": pd.DataFrame({"rlnTomoName": ["TS_01"], "rlnTomoTiltSeriesStarFile":
                                  ["AlignTiltSeries/job005/tilt_series/TS_01.star"],
                                  "rlnTomoTiltSeriesPixelSize": [1.35]})}, "no reconstructed tomogram files"),
    ("warp_tomograms.star", {"": pd.DataFrame({"rlnTomoName": ["TS_01.tomostar"], "rlnTomoSizeX": [4096],
                                               "rlnTomoSizeY": [4096], "rlnTomoSizeZ": [1200],
                                               "rlnTomoTiltSeriesPixelSize": [1.0]})},
     "no reconstructed tomogram files"),
    ("particles.star", {"particles": pd.DataFrame({"rlnTomoName": ["TS_01"] * 2, "rlnCoordinateX": [1.0, 2.0],
                                                   "rlnMicrographName": ["TS_01.tomostar"] * 2})},
     "is a particle table"),
    ("optimisation_set.star", {"": {"rlnTomoParticlesFile": "particles.star",
                                    "rlnTomoTomogramsFile": "Tomograms/job010/tomograms.star"}},
     r"optimisation set.*\(Tomograms/job010/tomograms.star\)"),
    ("TS_01.tomostar", {"": pd.DataFrame({"wrpMovieName": ["a.tif"], "wrpAngleTilt": [0.0]})},
     r"Warp tilt series \(.tomostar\)"),
    ("TS_01.star", {"TS_01": pd.DataFrame({"rlnMicrographName": ["a.mrc", "b.mrc"],
                                           "rlnTomoNominalStageTiltAngle": [0.0, 3.0]})}, "tilt images"),
])
def test_tables_without_reconstructed_tomograms_are_refused_before_anything_is_written(tmp_path, kind, blocks, says):
    """RELION's aligned_tilt_series.star and WarpTools' *_tomograms.star crashed (IndexError) after creating
    isonet_averages/; a Warp particle STAR was told to 'remove one of the rows'."""
    path = _write(tmp_path / kind, blocks)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=says):
        read_tomogram_star(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ------------------------------------------------------------ what RELION's parser accepts
def test_a_one_row_key_value_table_and_blank_lines_after_loop_are_read(tmp_path):
    """A one-row table as key-value pairs was refused as missing a label it has; a blank line or comment after
    loop_ (RELION accepts it) gave a parser error."""
    _volume(tmp_path / "a.mrc", 0)
    (tmp_path / "kv.star").write_text("data_\n\n_rlnMicrographName a.mrc\n_rlnPixelSize 10\n")
    table = read_tomogram_star(tmp_path / "kv.star")
    assert list(table.df["rlnMicrographName"]) == ["a.mrc"] and table.pixel_size(0) == 10
    (tmp_path / "c.star").write_text("data_\n\nloop_\n\n# written by hand\n_rlnMicrographName #1\n"
                                     "_rlnPixelSize #2\na.mrc 10\n")
    table = read_tomogram_star(tmp_path / "c.star")
    assert list(table.df["rlnMicrographName"]) == ["a.mrc"]


# ------------------------------------------------------------ halves paired as users keep them
@pytest.mark.parametrize("names, pairs", [
    (["TS_01_EVN_Vol.mrc", "TS_01_ODD_Vol.mrc", "TS_01_Vol.mrc", "TS_02_EVN_Vol.mrc", "TS_02_ODD_Vol.mrc"],
     [("TS_01_EVN_Vol.mrc", "TS_01_ODD_Vol.mrc"), ("TS_02_EVN_Vol.mrc", "TS_02_ODD_Vol.mrc")]),  # AreTomo3's folder
    (["a_half1.mrc", "a_half2.mrc", "b_half1.mrc", "b_half2.mrc"],
     [("a_half1.mrc", "a_half2.mrc"), ("b_half1.mrc", "b_half2.mrc")]),
])
def test_halves_side_by_side_in_one_folder_pair_by_their_tags(tmp_path, caplog, names, pairs):
    from isonet_pl.workflows.prepare import pair_halves

    for i, name in enumerate(names):
        _volume(tmp_path / "out" / name, i)
    with caplog.at_level(logging.INFO):
        found = pair_halves(tmp_path / "out", tmp_path / "out")
    assert [(e.name, o.name) for _, e, o in found] == pairs
    assert all(f"paired {e} with {o}" in caplog.text for e, o in pairs)


def test_names_with_even_or_odd_in_them_pair_as_they_are(tmp_path):
    """Identical names in the two folders pair as they are: 'odd_shape_TS_01' is not read as a tag."""
    from isonet_pl.workflows.prepare import pair_halves

    for side in ("e", "o"):
        for i, name in enumerate(("cell_odd_shape.mrc", "cell_even_more.mrc")):
            _volume(tmp_path / side / name, i)
    found = pair_halves(tmp_path / "e", tmp_path / "o")
    assert [(n, e.name, o.name) for n, e, o in found] == [
        ("cell_even_more", "cell_even_more.mrc", "cell_even_more.mrc"),
        ("cell_odd_shape", "cell_odd_shape.mrc", "cell_odd_shape.mrc")]
