"""Projects as users bring them: IsoNet2, RELION-5 and AreTomo3 files read right, nothing silently wrong.

Fixtures are written here from the formats' documentation: RELION-5's ``data_global`` (``# version 50001``)
with per-tilt-series STAR files, IsoNet2's ``tomograms.star`` as its ``prepare_star`` writes it (``None`` for
empty values), AreTomo3's half names.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

import numpy as np
import pandas as pd
import pytest
import starfile

from isonet_pl.config import DeconvConfig, IOConfig, MaskConfig, PrepareStarConfig
from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.mrc import read_mrc, write_mrc

IO = IOConfig(zarr_chunks=(16, 16, 16), zarr_levels=1)
SHAPE = (16, 32, 32)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _volume(path, seed, voxel_size=10.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mrc(path, np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32), voxel_size=voxel_size)
    return path


def _isonet2_star(root, full=False, halves=True):
    """An IsoNet2 tomograms.star: halves only (_rlnTomoName None), or with the averages (--create_average),
    or full tomograms only (prepare_star --full: halves None, _rlnTiltStep)."""
    rows = []
    for i, (name, defocus, volt, tilt) in enumerate((("TS_01", 39057.0, 200.0, (-50.0, 65.0)),
                                                     ("TS_02", 25000.0, 300.0, (-60.0, 60.0)))):
        even = _volume(root / "even" / f"{name}_EVN.mrc", 2 * i)
        odd = _volume(root / "odd" / f"{name}_ODD.mrc", 2 * i + 1)
        full_path = _volume(root / "full" / f"{name}.mrc", 10 + i) if full else None
        rows.append({"rlnIndex": i + 1, "rlnTomoName": f"full/{name}.mrc" if full else "None",
                     "rlnTomoReconstructedTomogramHalf1": str(even.relative_to(root)) if halves else "None",
                     "rlnTomoReconstructedTomogramHalf2": str(odd.relative_to(root)) if halves else "None",
                     "rlnPixelSize": 10.0, "rlnDefocus": defocus, "rlnVoltage": volt, "rlnSphericalAberration": 2.7,
                     "rlnAmplitudeContrast": 0.1, "rlnMaskBoundary": "None", "rlnMaskName": "None",
                     "rlnTiltMin": tilt[0], "rlnTiltMax": tilt[1], "rlnBoxFile": "None",
                     "rlnNumberSubtomo": 50 + 30 * i})
        if not halves:
            rows[-1]["rlnTiltStep"] = 3.0
        assert full_path is None or full_path.exists()
    star = root / "tomograms.star"
    starfile.write(pd.DataFrame(rows), star)
    return star


def test_isonet2_halves_only_table_is_read_with_its_own_meaning(tmp_path, monkeypatch, caplog):
    """IsoNet2's _rlnTomoName None means halves only: each row's average gets its own file (not None.mrc),
    per-row defocus, voltage, Cs, amplitude contrast, tilt range and subtomogram count are kept, the user's
    file is left byte-identical, and the format is logged in one line."""
    monkeypatch.chdir(tmp_path)
    star = _isonet2_star(tmp_path)
    before = _digest(star)
    with caplog.at_level(logging.INFO):
        table = read_tomogram_star(star)
    assert "IsoNet2 tomograms_isonet.star (from IsoNet2): 2 tomograms with halves" in caplog.text
    assert table.path == tmp_path / "tomograms_isonet.star" and _digest(star) == before
    df = table.df
    assert list(df["rlnTomoName"]) == ["TS_01", "TS_02"]
    assert list(df["rlnMicrographName"]) == ["isonet_averages/TS_01.mrc", "isonet_averages/TS_02.mrc"]
    assert list(df["rlnDefocus"]) == [39057.0, 25000.0] and list(df["rlnVoltage"]) == [200.0, 300.0]
    assert list(df["rlnAmplitudeContrast"]) == [0.1, 0.1] and list(df["rlnNumberSubtomo"]) == [50, 80]
    assert list(df["rlnTiltMin"]) == [-50.0, -60.0] and list(df["rlnTiltMax"]) == [65.0, 60.0]
    assert list(df["rlnTomoReconstructedTomogramHalf1"]) == ["even/TS_01_EVN.mrc", "even/TS_02_EVN.mrc"]
    even, odd = (read_mrc(tmp_path / d / f"TS_01_{t}.mrc")[0] for d, t in (("even", "EVN"), ("odd", "ODD")))
    np.testing.assert_allclose(read_mrc(tmp_path / "isonet_averages" / "TS_01.mrc")[0], (even + odd) / 2, rtol=1e-6)
    assert table.output_keys() == ["TS_01", "TS_02"]


def test_isonet2_average_and_full_only_tables(tmp_path, monkeypatch):
    """With --create_average _rlnTomoName is the tomogram itself; a prepare_star --full table (halves None,
    _rlnTiltStep) is read as full tomograms without halves (it was refused)."""
    monkeypatch.chdir(tmp_path)
    table = read_tomogram_star(_isonet2_star(tmp_path, full=True))
    assert list(table.df["rlnMicrographName"]) == ["full/TS_01.mrc", "full/TS_02.mrc"]
    assert not (tmp_path / "isonet_averages").exists()
    os.remove(tmp_path / "tomograms_isonet.star")
    table = read_tomogram_star(_isonet2_star(tmp_path, full=True, halves=False))
    assert list(table.df["rlnMicrographName"]) == ["full/TS_01.mrc", "full/TS_02.mrc"]
    assert "rlnTomoReconstructedTomogramHalf1" not in table.df.columns


def test_star_microscope_values_reach_deconv(tmp_path, monkeypatch, caplog):
    """A 200 kV row is deconvolved for 200 kV (it was bit-identical to 300 kV), and the log names the values."""
    from isonet_pl.workflows.deconv import deconv

    monkeypatch.chdir(tmp_path)
    _volume(tmp_path / "t.mrc", 0)
    outputs = {}
    for volt in (200.0, 300.0):
        starfile.write(pd.DataFrame([{"rlnIndex": 1, "rlnMicrographName": "t.mrc", "rlnPixelSize": 10.0,
                                      "rlnDefocus": 30000.0, "rlnVoltage": volt, "rlnAmplitudeContrast": 0.1}]),
                       tmp_path / f"v{volt:.0f}.star")
        with caplog.at_level(logging.INFO):
            deconv(tmp_path / f"v{volt:.0f}.star", DeconvConfig(deconv_folder=f"d{volt:.0f}"), IO)
        outputs[volt] = read_mrc(tmp_path / f"d{volt:.0f}" / "t.mrc")[0]
    assert "200 kV, Cs 2.7 mm, amplitude contrast 0.1" in caplog.text
    assert np.abs(outputs[200.0] - outputs[300.0]).max() > 1e-3


def _relion(root, names=("TS_01", "TS_02")):
    """A RELION-5 project: Tomograms/job010/tomograms.star (# version 50001, data_global, 200 kV) with full
    tomograms and per-tilt-series STAR files in AlignTiltSeries/job005/."""
    rows = []
    for i, name in enumerate(names):
        rec = _volume(root / "Tomograms" / "job010" / "tomograms" / f"rec_{name}.mrc", i)
        angles = np.arange(-51.0, 61.0, 3.0)
        series = root / "AlignTiltSeries" / "job005" / f"{name}.star"
        series.parent.mkdir(parents=True, exist_ok=True)
        starfile.write({name: pd.DataFrame({"rlnTomoNominalStageTiltAngle": angles,
                                            "rlnDefocusU": 31000.0 + 0 * angles, "rlnDefocusV": 30000.0 + 0 * angles})},
                       series)
        rows.append({"rlnTomoName": name, "rlnVoltage": 200.0, "rlnSphericalAberration": 2.7,
                     "rlnAmplitudeContrast": 0.1, "rlnTomoTiltSeriesStarFile": str(series.relative_to(root)),
                     "rlnTomoTiltSeriesPixelSize": 2.5, "rlnTomoTomogramBinning": 4.0,
                     "rlnTomoReconstructedTomogram": str(rec.relative_to(root))})
    star = root / "Tomograms" / "job010" / "tomograms.star"
    starfile.write({"global": pd.DataFrame(rows)}, star)
    star.write_text("\n# version 50001\n" + star.read_text())
    return star


def test_relion5_read_from_anywhere_with_its_microscope(tmp_path, monkeypatch):
    """RELION's project-relative paths are found when run from elsewhere (the project folder is found above
    the STAR file); voltage, Cs and amplitude contrast are read per tomogram; every tomogram without tilt
    images is named."""
    star = _relion(tmp_path / "proj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = _digest(star)
    table = read_tomogram_star(star)
    assert list(table.df["rlnVoltage"]) == [200.0, 200.0] and list(table.df["rlnAmplitudeContrast"]) == [0.1, 0.1]
    assert list(table.df["rlnDefocus"]) == [30500.0, 30500.0] and list(table.df["rlnPixelSize"]) == [10.0, 10.0]
    assert table.get_path(1, "rlnMicrographName").exists() and _digest(star) == before


def test_relion5_table_is_merged_not_rebuilt(tmp_path, monkeypatch, caplog):
    """When the RELION file changes after its table was made, the table keeps its results and hand edits;
    new tomograms are added, removed ones dropped with a warning, changed inputs reset their results."""
    monkeypatch.chdir(tmp_path)
    star = _relion(tmp_path, names=("TS_01", "TS_02"))
    table = read_tomogram_star(star)
    table.set_value(0, "rlnDeconvTomoName", "deconv/TS_01.mrc")
    table.set_value(0, "rlnNumberSubtomo", 7)
    table.set_value(1, "rlnMaskName", "mask/TS_02_mask.mrc")
    table.write()
    time.sleep(0.02)
    os.utime(star)  # touched: newer than its table
    again = read_tomogram_star(star)
    assert again.df["rlnDeconvTomoName"].iloc[0] == "deconv/TS_01.mrc" and again.df["rlnNumberSubtomo"].iloc[0] == 7
    assert again.df["rlnMaskName"].iloc[1] == "mask/TS_02_mask.mrc"
    time.sleep(0.02)
    _relion(tmp_path, names=("TS_01", "TS_03"))  # a rerun job: TS_02 gone, TS_03 new
    with caplog.at_level(logging.WARNING):
        merged = read_tomogram_star(star)
    assert list(merged.df["rlnTomoName"]) == ["TS_01", "TS_03"]
    assert merged.df["rlnDeconvTomoName"].iloc[0] == "deconv/TS_01.mrc" and merged.df["rlnNumberSubtomo"].iloc[0] == 7
    assert list(merged.df["rlnIndex"]) == [1, 3]
    assert "added TS_03" in caplog.text and "dropped TS_02" in caplog.text
    time.sleep(0.02)
    raw = starfile.read(star)
    raw.loc[0, "rlnTomoReconstructedTomogram"] = str(_volume(tmp_path / "Tomograms" / "job011" / "rec_TS_01.mrc", 9)
                                                      .relative_to(tmp_path))
    starfile.write({"global": raw}, star)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        changed = read_tomogram_star(star)
    assert changed.df["rlnDeconvTomoName"].iloc[0] == "None"
    assert "TS_01: _rlnMicrographName tomograms/rec_TS_01.mrc -> ../job011/rec_TS_01.mrc" in caplog.text
    assert changed.df["rlnNumberSubtomo"].iloc[0] == 7  # hand edits of other columns stay


def test_rewriting_keeps_other_blocks_and_block_names(tmp_path, monkeypatch):
    """A table in a file with several data blocks is rewritten with every block and its name kept."""
    from isonet_pl.workflows.mask import make_mask

    monkeypatch.chdir(tmp_path)
    _volume(tmp_path / "t.mrc", 0)
    star = tmp_path / "t.star"
    starfile.write({"optics": pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0]}),
                    "tomograms": pd.DataFrame([{"rlnIndex": 1, "rlnMicrographName": "t.mrc", "rlnPixelSize": 10.0}])},
                   star)
    make_mask(star, MaskConfig(density_percentage=100, std_percentage=100), IO)
    blocks = starfile.read(star, always_dict=True)
    assert list(blocks) == ["optics", "tomograms"]
    assert blocks["optics"]["rlnVoltage"].iloc[0] == 300.0
    assert blocks["tomograms"]["rlnMaskName"].iloc[0] == "mask/t_mask.mrc"


@pytest.mark.parametrize("even,odd,full", [
    (("TS_01_EVN_Vol.mrc", "TS_02_EVN_Vol.mrc"), ("TS_01_ODD_Vol.mrc", "TS_02_ODD_Vol.mrc"),
     ["TS_01_Vol.mrc", "TS_02_Vol.mrc"]),                                      # AreTomo3
    (("TS_01_EVN.mrc",), ("TS_01_ODD.mrc",), ["TS_01.mrc"]),                    # the IsoNet2 tutorial
    (("a_even.mrc", "b_even.mrc"), ("a_odd.mrc", "b_odd.mrc"), ["a.mrc", "b.mrc"]),
    (("same.mrc",), ("same.mrc",), ["same.mrc"]),                               # identical names
])
def test_prepare_star_pairs_half_names(tmp_path, monkeypatch, even, odd, full):
    """prepare_star --even --odd pairs AreTomo3/IsoNet2 half names by their common stem; the averages are
    named after it; the pixel size comes from the headers when --pixel_size is not given."""
    from isonet_pl.workflows.prepare import prepare_star

    monkeypatch.chdir(tmp_path)
    for i, (e, o) in enumerate(zip(even, odd, strict=False)):
        _volume(tmp_path / "even" / e, 2 * i, voxel_size=8.5)
        _volume(tmp_path / "odd" / o, 2 * i + 1, voxel_size=8.5)
    star = prepare_star(tmp_path / "tomos", PrepareStarConfig(even="even", odd="odd",
                                                              output_star=str(tmp_path / "t.star")))
    df = starfile.read(star)
    assert list(df["rlnMicrographName"]) == [f"tomos/{f}" for f in full]
    assert list(df["rlnTomoReconstructedTomogramHalf1"]) == [f"even/{e}" for e in even]
    assert list(df["rlnTomoReconstructedTomogramHalf2"]) == [f"odd/{o}" for o in odd]
    assert list(df["rlnPixelSize"]) == [8.5] * len(full)


def test_prepare_star_pairing_errors(tmp_path, monkeypatch):
    """Ambiguous pairs and unpaired halves are errors that list them; a header without a pixel size asks for
    --pixel_size."""
    from isonet_pl.workflows.prepare import prepare_star

    monkeypatch.chdir(tmp_path)
    for name in ("TS_01_EVN.mrc", "TS_01_even.mrc"):
        _volume(tmp_path / "even" / name, 0)
    _volume(tmp_path / "odd" / "TS_01_ODD.mrc", 1)
    with pytest.raises(InputError, match="TS_01_EVN.mrc, TS_01_even.mrc would all pair as 'TS_01'"):
        prepare_star(tmp_path / "tomos", PrepareStarConfig(even="even", odd="odd"))
    os.remove(tmp_path / "even" / "TS_01_even.mrc")
    _volume(tmp_path / "even" / "TS_02_EVN.mrc", 2)
    with pytest.raises(InputError, match="TS_02_EVN.mrc only in --even"):
        prepare_star(tmp_path / "tomos", PrepareStarConfig(even="even", odd="odd"))
    _volume(tmp_path / "nopix" / "a.mrc", 0, voxel_size=0.0)
    with pytest.raises(InputError, match="a.mrc: the MRC header gives no pixel size.*--pixel_size"):
        prepare_star(tmp_path / "nopix", PrepareStarConfig())
    assert prepare_star(tmp_path / "nopix", PrepareStarConfig(pixel_size=12.0)).exists()


def test_a_bad_row_2_fails_before_row_1_is_written(tmp_path, monkeypatch):
    """Every selected row's inputs are checked before the first is processed."""
    from isonet_pl.workflows.deconv import deconv

    monkeypatch.chdir(tmp_path)
    _volume(tmp_path / "a.mrc", 0)
    starfile.write(pd.DataFrame([{"rlnIndex": 1, "rlnMicrographName": "a.mrc", "rlnPixelSize": 10.0,
                                  "rlnDefocus": 30000.0},
                                 {"rlnIndex": 2, "rlnMicrographName": "gone.mrc", "rlnPixelSize": 10.0,
                                  "rlnDefocus": 30000.0}]), tmp_path / "t.star")
    before = _digest(tmp_path / "t.star")
    with pytest.raises(InputError, match="row 2 points to a missing file"):
        deconv(tmp_path / "t.star", DeconvConfig(), IO)
    assert not (tmp_path / "deconv" / "a.mrc").exists() and _digest(tmp_path / "t.star") == before
