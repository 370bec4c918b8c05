"""The isonet-pl command line: help, both option spellings, commands end to end, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from isonet_pl.io.mrc import write_mrc

COMMANDS = ["prepare_star", "prepare_subtomo_star", "deconv", "make_mask", "extract", "refine", "predict", "simulate",
            "convert", "check", "config", "demo", "gui"]


def assert_clean_error(code: int, err: str, *words: str) -> None:
    """A failure: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip() and not line[:2].isdigit()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


def no_temporaries(folder: Path) -> bool:
    """True when no hidden temporary output is left anywhere below ``folder``."""
    return not any(".tmp-" in p.name for p in folder.rglob("*"))


def test_help_lists_every_subcommand(run_cli):
    """isonet-pl --help names all subcommands."""
    code, out, _ = run_cli(["--help"])
    assert code == 0
    for cmd in COMMANDS:
        assert cmd in out


def test_version(run_cli):
    """--version prints the package version."""
    from isonet_pl import __version__

    code, out, _ = run_cli(["--version"])
    assert code == 0 and __version__ in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(run_cli, cmd):
    """--help and -h work on every subcommand; dashed command names work too."""
    assert run_cli([cmd, "--help"])[0] == 0
    assert run_cli([cmd.replace("_", "-"), "-h"])[0] == 0


def test_prepare_star_with_both_spellings(run_cli, tomo_folder, tmp_path):
    """--pixel_size and --pixel-size are the same option; rows are sorted, tilt range written."""
    code, _, err = run_cli(["prepare_star", tomo_folder, "--pixel_size", "7.5", "--number-subtomos", "12",
                            "--tilt_min", "-50", "--tilt-max", "65", "--output_star", tmp_path / "t.star"])
    assert code == 0, err
    df = starfile.read(tmp_path / "t.star")
    assert list(df["rlnMicrographName"]) == ["tomos/a_tomo.mrc", "tomos/b_tomo.rec"]
    assert list(df.columns[:6]) == ["rlnIndex", "rlnMicrographName", "rlnPixelSize", "rlnDefocus",
                                    "rlnNumberSubtomo", "rlnMaskBoundary"]
    assert (df["rlnPixelSize"] == 7.5).all() and (df["rlnNumberSubtomo"] == 12).all()
    assert (df["rlnTiltMin"] == -50).all() and (df["rlnTiltMax"] == 65).all()
    assert (df["rlnMaskBoundary"] == "None").all()


def test_config_file_then_command_line(run_cli, tomo_folder, tmp_path):
    """--config values apply; command-line options override them."""
    (tmp_path / "c.yaml").write_text("prepare_star:\n  pixel_size: 5.0\n  defocus: 25000\n")
    code, _, err = run_cli(["--config", tmp_path / "c.yaml", "prepare_star", tomo_folder, "--defocus", "30000",
                            "--output_star", tmp_path / "t.star"])
    assert code == 0, err
    df = starfile.read(tmp_path / "t.star")
    assert (df["rlnPixelSize"] == 5.0).all() and (df["rlnDefocus"] == 30000).all()


def test_prepare_subtomo_star_matches_isonet(run_cli, reference, tmp_path):
    """On IsoNet's subtomogram folder we write the rows IsoNet wrote (crop 48 -> cube 32)."""
    shutil.copytree(reference / "isonet_project" / "subtomo", tmp_path / "subtomo")
    code, _, err = run_cli(["prepare_subtomo_star", "subtomo"], cwd=tmp_path)
    assert code == 0, err
    ours = starfile.read(tmp_path / "subtomo.star")
    theirs = starfile.read(reference / "isonet_project" / "subtomo_from_folder.star")
    for col in theirs.columns:
        assert list(ours[col]) == list(theirs[col]), col


def test_convert_makes_zarr_stores_for_isonet_project(run_cli, reference, tmp_path):
    """convert reads IsoNet's tomograms.star and converts raw and deconvolved tomograms."""
    shutil.copytree(reference / "isonet_project", tmp_path / "p", ignore=shutil.ignore_patterns("subtomo*"))
    code, _, err = run_cli(["convert", tmp_path / "p" / "tomograms.star", "--tomo_idx", "2",
                            "--zarr_chunks", "32,32,32"])
    assert code == 0, err
    zarr_dir = tmp_path / "p" / "zarr"
    stores = sorted(str(p.relative_to(zarr_dir)) for p in zarr_dir.rglob("*.zarr"))
    assert stores == ["deconv/TS_02.zarr", "tomos/TS_02.zarr"]  # readable: the project's tree, mirrored


def test_check_runs(run_cli):
    """check reports versions, CPU features and devices."""
    code, out, _ = run_cli(["check"])
    assert code == 0 and "torch" in out and "CUDA devices" in out
    assert "CPU bf16 instructions: " in out and "huge pages for large tensors: " in out


def test_config_prints_defaults(run_cli):
    """config prints a YAML with every section."""
    code, out, _ = run_cli(["config"])
    assert code == 0 and "prepare_star:" in out and "io:" in out


# --- bad input: one line, non-zero exit, nothing half-written ------------------------------------------------

def test_folder_without_tomograms(run_cli, tmp_path):
    """A folder with no .mrc/.rec files."""
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["prepare_star", tmp_path / "empty", "--output_star", tmp_path / "t.star"])
    assert_clean_error(code, err, "empty", "no .mrc or .rec")
    assert not (tmp_path / "t.star").exists()


def test_non_mrc_named_mrc(run_cli, tomo_folder, tmp_path):
    """A text file named .mrc is named in the error."""
    (tomo_folder / "c_fake.mrc").write_text("this is text\n" * 200)
    code, _, err = run_cli(["prepare_star", tomo_folder, "--output_star", tmp_path / "t.star"])
    assert_clean_error(code, err, "c_fake.mrc", "MRC")
    assert not (tmp_path / "t.star").exists()


def test_truncated_mrc(run_cli, tomo_folder, tmp_path):
    """A truncated tomogram is reported as truncated."""
    path = tomo_folder / "a_tomo.mrc"
    path.write_bytes(path.read_bytes()[:5000])
    code, _, err = run_cli(["prepare_star", tomo_folder, "--output_star", tmp_path / "t.star"])
    assert_clean_error(code, err, "a_tomo.mrc", "truncated")


def test_2d_mrc(run_cli, tomo_folder, tmp_path):
    """A 2-D image among the tomograms."""
    with mrcfile.new(tomo_folder / "c_image.mrc") as m:
        m.set_data(np.zeros((16, 16), np.float32))
    code, _, err = run_cli(["prepare_star", tomo_folder, "--output_star", tmp_path / "t.star"])
    assert_clean_error(code, err, "c_image.mrc", "2-D")


def test_star_missing_required_column(run_cli, tmp_path):
    """A tomogram STAR without _rlnMicrographName."""
    starfile.write(pd.DataFrame({"rlnIndex": [1], "rlnPixelSize": [10.0]}), tmp_path / "t.star")
    code, _, err = run_cli(["convert", tmp_path / "t.star"])
    assert_clean_error(code, err, "t.star", "rlnMicrographName")


def test_star_row_pointing_to_missing_file(run_cli, tmp_path):
    """A row whose tomogram does not exist."""
    starfile.write(pd.DataFrame({"rlnIndex": [1], "rlnMicrographName": ["tomos/gone.mrc"]}), tmp_path / "t.star")
    code, _, err = run_cli(["convert", tmp_path / "t.star"])
    assert_clean_error(code, err, "t.star", "gone.mrc", "row 1")


@pytest.mark.parametrize("idx", ["x", "3", "2-1"])
def test_invalid_tomo_idx(run_cli, tomo_folder, tmp_path, idx):
    """Malformed or unknown tomo_idx values."""
    assert run_cli(["prepare_star", tomo_folder, "--output_star", tmp_path / "t.star"])[0] == 0
    code, _, err = run_cli(["convert", tmp_path / "t.star", "--tomo_idx", idx])
    assert_clean_error(code, err, "tomo_idx")
    assert not (tmp_path / "zarr").exists() or not any((tmp_path / "zarr").iterdir())


def test_output_that_cannot_be_written(run_cli, tomo_folder, tmp_path):
    """An output STAR below a regular file cannot be created."""
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(["prepare_star", tomo_folder, "--output_star", tmp_path / "afile" / "t.star"])
    assert_clean_error(code, err, "t.star", "choose another")
    assert no_temporaries(tmp_path)


def test_invalid_option_value(run_cli, tomo_folder, tmp_path):
    """An out-of-range value names the option."""
    code, _, err = run_cli(["prepare_star", tomo_folder, "--pixel_size", "-3"])
    assert_clean_error(code, err, "pixel_size")
    code, _, err = run_cli(["prepare_star", tomo_folder, "--tilt_min", "50", "--tilt_max", "40"])
    assert_clean_error(code, err, "Error: tilt_min (50.0) must be below tilt_max (40.0)")
    code, _, err = run_cli(["predict", tmp_path / "t.star", tmp_path / "m.ckpt", "--flips", "3"])
    assert_clean_error(code, err, "flips must be 1, 2 or 4, got 3")


def test_debug_shows_the_traceback(run_cli, tmp_path):
    """--debug re-raises so the traceback is visible."""
    from isonet_pl.errors import InputError

    with pytest.raises(InputError):
        run_cli(["--debug", "prepare_star", tmp_path / "nope"])


def test_installed_console_script(tmp_path):
    """The installed `isonet-pl` runs, and exits non-zero on bad input without a traceback."""
    exe = Path(sys.executable).with_name("isonet-pl")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    ok = subprocess.run([exe, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0 and "prepare_star" in ok.stdout
    bad = subprocess.run([exe, "prepare_star", "missing_folder"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "missing_folder" in bad.stderr


def test_no_generic_cli_module_is_installed(tmp_path):
    """Installing the package does not put a top-level `cli` or `conf` module on the path."""
    code = "import importlib.util as u; print(u.find_spec('cli'), u.find_spec('conf'), u.find_spec('isonet_pl.cli'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path).stdout.split()
    assert out[0] == "None" and out[1] == "None" and out[2] != "None"


def test_simulate_writes_tomograms_ground_truth_halves_and_star(run_cli, tmp_path):
    """simulate --halves: MRC files with voxel size, and a STAR file that prepare_star-based steps read."""
    from isonet_pl.io.formats import read_tomogram_star
    from isonet_pl.io.mrc import read_mrc

    code, _, err = run_cli(["simulate", tmp_path / "sim", "--shape", "32,48,48", "--halves", "--pixel_size", "8",
                            "--tilt_min", "-50", "--tilt_max", "65", "--seed", "3"])
    assert code == 0, err
    table = read_tomogram_star(tmp_path / "sim" / "tomograms.star")
    assert table.tilt_range(0) == (-50.0, 65.0)
    tomo, info = read_mrc(table.get_path(0, "rlnMicrographName"))
    even, _ = read_mrc(table.get_path(0, "rlnTomoReconstructedTomogramHalf1"))
    odd, _ = read_mrc(table.get_path(0, "rlnTomoReconstructedTomogramHalf2"))
    truth, _ = read_mrc(tmp_path / "sim" / "ground_truth" / "sim_00.mrc")
    assert tomo.shape == truth.shape == (32, 48, 48) and info.voxel_size == (8.0, 8.0, 8.0)
    np.testing.assert_allclose(tomo, (even + odd) / 2, rtol=1e-4, atol=1e-4 * np.abs(tomo).max())
    assert np.corrcoef(tomo.ravel(), truth.ravel())[0, 1] > 0.05


def test_demo_runs_on_the_smoke_preset(run_cli, tmp_path):
    """The demo runs end to end with conf/smoke.yaml and reports an identical round trip."""
    from importlib.resources import files

    code, out, err = run_cli(["--config", files("isonet_pl.conf").joinpath("smoke.yaml"), "demo", tmp_path / "d"])
    assert code == 0, err
    assert "inside the missing wedge" in out
    for name in ("preview_xy.png", "preview_xz.png", "scores.json", "results/losses.svg",
                 "corrected/sim_00_corrected.mrc", "deconv/sim_00.mrc", "mask/sim_00_mask.mrc"):
        assert (tmp_path / "d" / name).exists(), name


def test_prepare_star_with_even_and_odd_halves(run_cli, tmp_path):
    """--even/--odd: pairs matched by name, RELION-5 half columns, averages written (streamed) where missing."""
    from isonet_pl.io.mrc import read_mrc

    rng = np.random.default_rng(0)
    for half in ("even", "odd"):
        (tmp_path / half).mkdir()
        for name in ("t1.mrc", "t2.mrc"):
            write_mrc(tmp_path / half / name, rng.normal(size=(20, 40, 36)).astype(np.float32), voxel_size=8.0)
    code, _, err = run_cli(["prepare_star", tmp_path / "full", "--even", tmp_path / "even", "--odd", tmp_path / "odd",
                            "--output_star", tmp_path / "t.star", "--pixel_size", "8"])
    assert code == 0, err
    df = starfile.read(tmp_path / "t.star")
    assert list(df["rlnMicrographName"]) == ["full/t1.mrc", "full/t2.mrc"]
    assert list(df["rlnTomoReconstructedTomogramHalf1"]) == ["even/t1.mrc", "even/t2.mrc"]
    assert list(df["rlnTomoReconstructedTomogramHalf2"]) == ["odd/t1.mrc", "odd/t2.mrc"]
    avg, info = read_mrc(tmp_path / "full" / "t2.mrc")
    expected = (read_mrc(tmp_path / "even" / "t2.mrc")[0] + read_mrc(tmp_path / "odd" / "t2.mrc")[0]) / 2
    np.testing.assert_allclose(avg, expected, rtol=1e-6)
    assert info.voxel_size == (8.0, 8.0, 8.0)


@pytest.mark.parametrize("problem", ["unmatched", "shape", "one_half"])
def test_bad_halves(run_cli, tmp_path, problem):
    """Unmatched names, halves of different shapes, or only one of --even/--odd: clear errors."""
    rng = np.random.default_rng(0)
    for half in ("even", "odd"):
        (tmp_path / half).mkdir()
    write_mrc(tmp_path / "even" / "t1.mrc", rng.normal(size=(20, 40, 36)).astype(np.float32))
    other = {"unmatched": ("t9.mrc", (20, 40, 36)), "shape": ("t1.mrc", (20, 40, 30)),
             "one_half": ("t1.mrc", (20, 40, 36))}[problem]
    write_mrc(tmp_path / "odd" / other[0], rng.normal(size=other[1]).astype(np.float32))
    args = ["prepare_star", tmp_path / "full", "--even", tmp_path / "even", "--output_star", tmp_path / "t.star"]
    if problem != "one_half":
        args += ["--odd", tmp_path / "odd"]
    code, _, err = run_cli(args)
    word = {"unmatched": "without a partner", "shape": "odd half", "one_half": "both --even and --odd"}[problem]
    assert_clean_error(code, err, word)
    assert not (tmp_path / "t.star").exists()


def test_error_after_an_open_progress_line_starts_a_fresh_line(monkeypatch, capsys):
    """An error raised while a progress bar's line is open ("\\r 45%") is printed on a line of its own, so
    logs (and the GUI, which shows the last Error: line) get it whole."""
    import importlib

    from isonet_pl.cli.main import main

    from isonet_pl.errors import InputError

    convert_module = importlib.import_module("isonet_pl.workflows.convert")

    def failing(*args, **kwargs):
        import sys

        sys.stdout.write("\r[#####     ] | 45% Completed")
        raise InputError("tomogram contains NaN or infinite values", "t.mrc", "fix it")

    monkeypatch.setattr(convert_module, "convert", failing)
    assert main(["convert", "x.star"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("\nError: t.mrc: tomogram contains NaN")
    assert main(["convert", "--zarr_levels", "0", "x.star"]) == 1
    assert capsys.readouterr().err.startswith("Error:")  # no stray blank line when the line was closed
