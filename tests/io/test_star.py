"""STAR tables: IsoNet's files read as written, round trips, selections, errors."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import starfile

from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.star import parse_tomo_idx, read_subtomo_star, write_star

PROJECT = "isonet_project"


def test_reads_isonet_tomogram_star_as_written(reference):
    """IsoNet's tomograms.star: columns, None, ./ prefixes and paths relative to the STAR folder."""
    table = read_tomogram_star(reference / PROJECT / "tomograms.star")
    assert list(table.df["rlnIndex"]) == [1, 2]
    assert table.get_path(0, "rlnMicrographName") == reference / PROJECT / "tomos" / "TS_01.mrc"
    assert table.get_path(1, "rlnDeconvTomoName").resolve() == (reference / PROJECT / "deconv" / "TS_02.mrc")
    assert table.get_path(0, "rlnMaskBoundary", required=False) is None
    assert table.tilt_range(0) == (-60.0, 60.0)


@pytest.mark.parametrize("name", ["subtomo.star", "subtomo_from_folder.star"])
def test_reads_isonet_subtomo_stars(reference, name):
    """Both of IsoNet's subtomogram tables read, with integer sizes and existing files."""
    table = read_subtomo_star(reference / PROJECT / name)
    assert len(table.df) == 16
    assert table.df["rlnCubeSize"].iloc[0] == 32 and table.df["rlnCropSize"].iloc[0] == 48
    assert all(table.get_path(i, "rlnImageName").exists() for i in range(16))


def test_written_star_reads_back_and_keeps_isonet_format(tmp_path, reference):
    """Our output reads back equal in starfile, keeps IsoNet's labels, ints, None and unknown columns."""
    table = read_tomogram_star(reference / PROJECT / "tomograms.star")
    table.df["myColumn"] = ["x", "y"]
    out = write_star(table.df, tmp_path / "t.star")
    back = starfile.read(out)
    pd.testing.assert_frame_equal(back.astype(str), table.df.astype(str).reset_index(drop=True),
                                  check_dtype=False)
    text = out.read_text()
    assert "_rlnMicrographName" in text and "_myColumn" in text
    rows = [line.split() for line in text.splitlines() if line.split()[:1] == ["1"]]
    assert rows[0][4] == "8"  # rlnNumberSubtomo stays an integer
    assert rows[0][5] == "None"


def test_isonet_style_parser_reads_our_output(tmp_path, reference):
    """IsoNet's own rules (labels start with _rln, whitespace split) parse what we write."""
    table = read_tomogram_star(reference / PROJECT / "tomograms.star")
    text = write_star(table.df, tmp_path / "t.star").read_text().splitlines()
    labels, rows = [], []
    for line in text:
        tokens = line.split()
        if tokens and tokens[0].startswith("_rln"):
            labels.append(tokens[0][1:])
        elif labels and tokens:
            rows.append(dict(zip(labels, tokens, strict=False)))
    assert len(rows) == 2 and rows[1]["rlnMicrographName"] == "tomos/TS_02.mrc"
    assert int(rows[0]["rlnNumberSubtomo"]) == 8 and float(rows[0]["rlnPixelSize"]) == 10.0


@pytest.mark.parametrize("text,expected", [("1,3-4", [(1, 1), (3, 4)]), ("2", [(2, 2)]),
                                           ("5-7 9", [(5, 7), (9, 9)]), (3, [(3, 3)])])
def test_parse_tomo_idx(text, expected):
    """IsoNet's tomo_idx syntax: commas, spaces and inclusive ranges."""
    assert parse_tomo_idx(text) == expected


@pytest.mark.parametrize("text", ["a", "3-1", "1,,x", "-2", ""])
def test_invalid_tomo_idx_is_a_clear_error(text):
    """Malformed selections are rejected with the fix in the message."""
    with pytest.raises(InputError, match="tomo_idx"):
        parse_tomo_idx(text)


def test_select_rows_and_unknown_index(reference):
    """select() maps rlnIndex values to rows; ranges take the rows that exist; an index not in the table or
    a range that selects nothing is an error."""
    table = read_tomogram_star(reference / PROJECT / "tomograms.star")
    assert table.select("2") == [1] and table.select(None) == [0, 1] and table.select("1-3") == [0, 1]
    with pytest.raises(InputError, match="tomo_idx 3 not in the table"):
        table.select("1,3")
    with pytest.raises(InputError, match="tomo_idx 5-9 not in the table"):
        table.select("5-9")


def test_huge_tomo_idx_range_is_not_expanded(reference):
    """--tomo_idx 1-999999999 selects the rows that exist at once (it was a 22 GB list)."""
    table = read_tomogram_star(reference / PROJECT / "tomograms.star")
    assert table.select("1-999999999") == [0, 1]
    assert parse_tomo_idx("1-999999999999999999") == [(1, 999999999999999999)]


def test_missing_required_column_is_a_clear_error(tmp_path):
    """A tomogram table without _rlnMicrographName names the column."""
    starfile.write(pd.DataFrame({"rlnIndex": [1], "rlnPixelSize": [10.0]}), tmp_path / "t.star")
    with pytest.raises(InputError, match="rlnMicrographName"):
        read_tomogram_star(tmp_path / "t.star")


def test_row_pointing_to_missing_file_is_a_clear_error(tmp_path):
    """get_path names the STAR file, the row and the column to fix."""
    starfile.write(pd.DataFrame({"rlnIndex": [1], "rlnMicrographName": ["gone.mrc"]}), tmp_path / "t.star")
    table = read_tomogram_star(tmp_path / "t.star")
    with pytest.raises(InputError, match="row 1 points to a missing file"):
        table.get_path(0, "rlnMicrographName")


def test_non_numeric_value_is_a_clear_error(tmp_path):
    """A pixel size that is not a number is reported with its row."""
    starfile.write(pd.DataFrame({"rlnMicrographName": ["a.mrc", "b.mrc"], "rlnPixelSize": ["10", "ten"]}),
                   tmp_path / "t.star")
    with pytest.raises(InputError, match="rlnPixelSize of row 2"):
        read_tomogram_star(tmp_path / "t.star")


def test_asymmetric_tilt_range_is_kept(tmp_path):
    """Per-tomogram tilt columns are read per row."""
    df = pd.DataFrame({"rlnMicrographName": ["a.mrc", "b.mrc"], "rlnTiltMin": [-50.0, -60.0],
                       "rlnTiltMax": [65.0, 60.0]})
    starfile.write(df, tmp_path / "t.star")
    table = read_tomogram_star(tmp_path / "t.star")
    assert table.tilt_range(0) == (-50.0, 65.0) and table.tilt_range(1) == (-60.0, 60.0)
    assert pd.api.types.is_integer_dtype(table.df["rlnIndex"])


def test_two_commands_updating_one_table_keep_each_others_columns(tmp_path):
    """deconv and make_mask read the table at their start and write it after each tomogram: the changes of
    each are replayed on the file's current content under a lock, so neither loses the other's column."""
    star = tmp_path / "t.star"
    starfile.write(pd.DataFrame({"rlnIndex": [1, 2], "rlnMicrographName": ["a.mrc", "b.mrc"]}), star)
    first, second = read_tomogram_star(star), read_tomogram_star(star)
    first.ensure_column("rlnDeconvTomoName", "None")
    first.set_value(1, "rlnDeconvTomoName", "deconv/b.mrc")
    second.ensure_column("rlnMaskName", "None")
    second.set_value(0, "rlnMaskName", "mask/a_mask.mrc")
    first.write()
    second.write()
    df = starfile.read(star)
    assert list(df["rlnDeconvTomoName"]) == ["None", "deconv/b.mrc"]
    assert list(df["rlnMaskName"]) == ["mask/a_mask.mrc", "None"]


def test_a_held_table_lock_is_a_clear_error(tmp_path):
    """A STAR file locked by another run for too long gives a one-line error naming it."""
    import threading

    from isonet_pl.io.star import table_lock

    star = tmp_path / "t.star"
    starfile.write(pd.DataFrame({"rlnIndex": [1], "rlnMicrographName": ["a.mrc"]}), star)
    held, release = threading.Event(), threading.Event()

    def hold():
        with table_lock(star):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        with pytest.raises(InputError, match="t.star: another isonet-pl run has held its lock"):
            with table_lock(star, timeout=0.3):
                pass
    finally:
        release.set()
        thread.join()
    with table_lock(star, timeout=1):  # free again
        pass


def test_duplicate_rows_and_output_keys(tmp_path):
    """Two rows naming one tomogram (also through a link) are refused; rows whose files share a name get
    unique output keys from their folders (their outputs overwrote each other)."""
    for sub in ("run1", "run2"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "TS_01.mrc").write_bytes(b"")
    (tmp_path / "link.mrc").symlink_to(tmp_path / "run1" / "TS_01.mrc")
    star = tmp_path / "t.star"
    starfile.write(pd.DataFrame({"rlnIndex": [1, 2, 3], "rlnMicrographName": ["run1/TS_01.mrc", "run2/TS_01.mrc",
                                                                              "run1/TS_01.mrc"]}), star)
    with pytest.raises(InputError, match="rows 1 and 3 name the same tomogram TS_01.mrc"):
        read_tomogram_star(star)
    starfile.write(pd.DataFrame({"rlnIndex": [1, 2], "rlnMicrographName": ["run1/TS_01.mrc", "link.mrc"]}), star)
    with pytest.raises(InputError, match="rows 1 and 2 name the same tomogram"):
        read_tomogram_star(star)
    starfile.write(pd.DataFrame({"rlnIndex": [1, 1], "rlnMicrographName": ["run1/TS_01.mrc", "run2/TS_01.mrc"]}),
                   star)
    with pytest.raises(InputError, match="same _rlnIndex 1"):
        read_tomogram_star(star)
    starfile.write(pd.DataFrame({"rlnIndex": [1, 2], "rlnMicrographName": ["run1/TS_01.mrc", "run2/TS_01.mrc"]}),
                   star)
    assert read_tomogram_star(star).output_keys() == ["run1_TS_01", "run2_TS_01"]
    starfile.write(pd.DataFrame({"rlnIndex": [1, 2], "rlnMicrographName": ["run1/TS_01.mrc", "link.mrc"],
                                 "rlnTomoName": ["TS 01", "other"]}), star)
    with pytest.raises(InputError):  # the link is still the same file
        read_tomogram_star(star)


def test_temporaries_of_killed_runs_are_swept(tmp_path):
    """Hidden temporaries whose process is gone are removed by the next write into their folder; those of a
    live process (or not ours) stay."""
    import subprocess
    import sys

    from isonet_pl.io.paths import atomic_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale_dir = tmp_path / f".a.zarr.tmp-{dead}-0123abcd"
    stale_dir.mkdir()
    (stale_dir / "chunk").write_bytes(b"x")
    stale_file = tmp_path / f".t.star.tmp-{dead}-89abcdef"
    stale_file.write_text("half")
    live = tmp_path / f".b.mrc.tmp-{os.getppid()}-00000000"
    live.write_text("someone else's")
    other = tmp_path / ".hidden"
    other.write_text("user file")
    with atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("done")
    assert not stale_dir.exists() and not stale_file.exists()
    assert live.exists() and other.exists() and (tmp_path / "new.txt").read_text() == "done"


def test_a_column_named_twice_is_refused(tmp_path):
    """A STAR table with one column twice is refused (which value counts would be a guess)."""
    star = tmp_path / "dup.star"
    star.write_text("data_\nloop_\n_rlnIndex #1\n_rlnMicrographName #2\n_rlnPixelSize #3\n_rlnPixelSize #4\n"
                    "1 a.mrc 10 12\n")
    with pytest.raises(InputError, match="dup.star: column _rlnPixelSize appears twice"):
        read_tomogram_star(star)
