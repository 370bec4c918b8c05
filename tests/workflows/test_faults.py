"""The fault table of issue 46 kept as tests: data loss, code execution, rows misfiled, broken writes.

Each test reproduces one fault a hostile-but-fair review found; the commands run here must not change or
remove any file they did not create (:func:`snapshot` hashes a project tree before and after).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from isonet_pl.config import RefineConfig
from isonet_pl.errors import InputError

ONE = dict(iterations=1, epochs=1, steps_per_epoch=2, batch_size=2, filter_base=4, unet_depth=2, convs_per_depth=1,
           preprocessing_ncpus=0)


def snapshot(folder: Path) -> dict[str, str]:
    """{path relative to ``folder``: sha256 of its bytes (or ``link -> target``)} of every file below it."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            found[rel] = f"link -> {os.readlink(path)}" if path.is_symlink() else \
                hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_untouched(before: dict[str, str], after: dict[str, str]) -> None:
    """Every file of ``before`` is still there with the same content (new files are allowed)."""
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"changed or removed: {changed[:10]}"


# --------------------------------------------------------------------------- 3. checkpoints never run code
class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: a stand-in for any code a crafted file could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def crafted_checkpoint(path: Path, marker: Path, real: Path | None = None) -> Path:
    """A checkpoint (a copy of ``real``'s content, or a minimal one) with an object that creates ``marker``."""
    payload = torch.load(real, map_location="cpu", weights_only=True) if real else {"state_dict": {}, "epoch": 0}
    payload["hyper_parameters"] = {**payload.get("hyper_parameters", {}), "evil": _Payload(marker)}
    torch.save(payload, path)
    return path


def test_crafted_checkpoint_runs_no_code_anywhere(subtomo_star, tmp_path):
    """predict's model, --pretrained_model, --continue_from and a left epoch checkpoint: refused, nothing run."""
    from isonet_pl.model.checkpoint import read_checkpoint
    from isonet_pl.training.resume import epoch_checkpoint
    from isonet_pl.workflows.predict import load_model
    from isonet_pl.workflows.refine import refine

    marker = tmp_path / "code_ran"
    good = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "good"), **ONE))
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker, good)
    with pytest.raises(InputError, match="nothing in it was run"):
        read_checkpoint(evil)
    with pytest.raises(InputError, match="evil.ckpt: .*not loaded"):
        load_model(evil)
    with pytest.raises(InputError, match="evil.ckpt: .*not loaded"):
        refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "b"), pretrained_model=str(evil), **ONE))
    # a finished run whose last model was replaced by the crafted file
    crafted_checkpoint(good, marker, good)
    with pytest.raises(InputError, match="model_iter01.ckpt: .*not loaded"):
        refine(subtomo_star, RefineConfig(continue_from=str(tmp_path / "good"), **dict(ONE, iterations=2)))
    # an epoch checkpoint left by a killed run: ignored with a warning, never loaded
    state = tmp_path / "state"
    state.mkdir()
    crafted_checkpoint(state / "epoch.ckpt", marker)
    assert epoch_checkpoint(state, 1, 2) is None
    assert not marker.exists()


def test_our_checkpoints_load_with_weights_only(subtomo_star, tmp_path):
    """Every file refine writes (models and the epoch checkpoint) loads without weights_only=False."""
    from isonet_pl.model.checkpoint import read_checkpoint
    from isonet_pl.workflows.refine import refine

    refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), remove_intermediate=False,
                                      **dict(ONE, epochs=2)))
    files = sorted((tmp_path / "r").rglob("*.ckpt"))
    assert files
    for path in files:
        assert "state_dict" in read_checkpoint(path)


# --------------------------------------------------------------------------- 4. output keys unique by construction
@pytest.mark.parametrize("names, expected", [
    (["A/X/t.mrc", "B/X/t.mrc", "C/X_t_1.mrc"], None),
    (["A/t.mrc", "B/t.mrc", "A/T.mrc"], None),  # equal once case is ignored (macOS, Windows)
    (["a/t.mrc", "b/t.mrc", "c/a_t.mrc", "d/b_t.mrc"], None),
    (["run1/TS_01.mrc", "run2/TS_01.mrc"], ["run1_TS_01", "run2_TS_01"]),  # readable keys kept
])
def test_output_keys_are_unique_after_every_renaming_pass(tmp_path, names, expected):
    import pandas as pd
    import starfile

    from isonet_pl.io.formats import read_tomogram_star

    star = tmp_path / "t.star"
    starfile.write(pd.DataFrame({"rlnIndex": range(1, len(names) + 1), "rlnMicrographName": names}), star)
    keys = read_tomogram_star(star).output_keys()
    assert len({k.casefold() for k in keys}) == len(keys), keys
    if expected:
        assert keys == expected


# --------------------------------------------------------------------------- 5. labels never break a write
@pytest.mark.parametrize("command", ["isonet-pl deconv t ü.star", "isonet-pl deconv t\tx.star",
                                     "isonet-pl deconv t\udcff.star", "isonet-pl make_mask " + "é" * 400])
def test_provenance_labels_never_break_a_write(tmp_path, monkeypatch, command):
    import mrcfile
    import numpy as np

    from isonet_pl.io import mrc

    monkeypatch.setitem(mrc.PROVENANCE, "command", command)
    path = mrc.write_mrc(tmp_path / "a.mrc", np.zeros((4, 4, 4), np.float32))
    with mrcfile.open(path, permissive=False) as f:
        labels = [bytes(f.header.label[i]).decode("ascii").rstrip() for i in range(int(f.header.nlabl))]
    ours = [i for i, x in enumerate(labels) if x.startswith("isonet-pl ")]
    assert ours and all(len(x) <= 80 and x.isprintable() for x in labels)
    assert any(e in labels[ours[0] + 1] for e in ("\\x", "\\t", "\\u"))


# ------------------------------------------------------------ 1. nothing replaced that a command did not make
@pytest.fixture
def project(tmp_path, monkeypatch):
    """A simulated project (tomograms.star, tomos/sim_00.mrc) in ``tmp_path/p``, the current folder."""
    from isonet_pl.config import SimulateConfig
    from isonet_pl.workflows.simulate import simulate

    torch.set_num_threads(1)
    star = simulate(tmp_path / "p", SimulateConfig(shape=(40, 64, 64), number_subtomos=4, seed=1))
    monkeypatch.chdir(star.parent)
    return star


def _extract(star, **options):
    from isonet_pl.config import ExtractConfig, IOConfig
    from isonet_pl.workflows.extract import extract

    cfg = ExtractConfig(cube_size=16, crop_size=24, use_deconv_tomo=False, **options)
    return extract(star, cfg, IOConfig(zarr_chunks=(32, 32, 32), zarr_levels=1))


@pytest.mark.parametrize("folder, says", [
    ("tomos", "--subtomo_folder holds an input"),  # it deleted the raw tomograms (exit 0)
    ("..", "--subtomo_folder holds an input"),  # the whole project
    (".", "--subtomo_folder holds an input"),
    ("tomos/sim_00.mrc", "--subtomo_folder is an input"),
    ("ground_truth", "holds files this command did not write .*sim_00.mrc"),
])
def test_extract_never_replaces_a_folder_it_did_not_write(project, folder, says):
    before = snapshot(project.parent.parent)
    with pytest.raises(InputError, match=says):
        _extract(project, subtomo_folder=folder)
    assert_untouched(before, snapshot(project.parent.parent))


def test_extract_replaces_its_own_earlier_output_only(project):
    """A rerun replaces the folder of an earlier extract (also one written before the marker existed); a file
    added to it by hand makes it refused; a link is never followed."""
    from isonet_pl.workflows.extract import MARKER

    _extract(project, subtomo_folder="sub")
    _extract(project, subtomo_folder="sub", seed=1)  # its own: replaced
    (Path("sub") / MARKER).unlink()  # an earlier version's folder: subtomograms only
    _extract(project, subtomo_folder="sub", subtomo_star="sub/sub.star")  # the STAR inside it is its own too
    _extract(project, subtomo_folder="sub", subtomo_star="sub/sub.star")
    (Path("sub") / "notes.txt").write_text("mine")
    before = snapshot(project.parent)
    with pytest.raises(InputError, match="did not write .*notes.txt"):
        _extract(project, subtomo_folder="sub", subtomo_star="sub/sub.star")
    Path("elsewhere").mkdir()
    Path("link").symlink_to("elsewhere")
    with pytest.raises(InputError, match="is a link"):
        _extract(project, subtomo_folder="link")
    assert_untouched(before, snapshot(project.parent))


@pytest.mark.parametrize("name", ["tomograms.star", "./tomograms.star", "alias.star", "other_tomograms.star",
                                  "tomos/sim_00.mrc"])
def test_extract_subtomo_star_never_replaces_a_table_it_did_not_write(project, name):
    """--subtomo_star tomograms.star overwrote the tomogram table; through a link, or another tomogram
    table, or any other file, the same."""
    import shutil

    Path("alias.star").symlink_to("tomograms.star")
    shutil.copy("tomograms.star", "other_tomograms.star")
    before = snapshot(project.parent)
    with pytest.raises(InputError, match="--subtomo_star is an input|not a subtomogram table"):
        _extract(project, subtomo_folder="sub", subtomo_star=name)
    assert_untouched(before, snapshot(project.parent))
    assert not Path("sub").exists()


def test_outputs_never_replace_a_file_the_table_names(project, n2n_model):
    """make_mask, deconv, predict: an output named as a tomogram of the table is refused before any work."""
    import shutil

    import pandas as pd
    import starfile

    from isonet_pl.config import DeconvConfig, IOConfig, MaskConfig, PredictConfig
    from isonet_pl.workflows.deconv import deconv
    from isonet_pl.workflows.mask import make_mask
    from isonet_pl.workflows.predict import predict

    one = starfile.read("tomograms.star")
    before = snapshot(project.parent)
    with pytest.raises(InputError, match=r"--deconv_folder is an input of this command \(.*sim_00.mrc\)"):
        deconv(project, DeconvConfig(deconv_folder="tomos"), IOConfig(zarr_levels=1))
    for suffix in ("mask", "corrected"):
        shutil.copy("tomos/sim_00.mrc", f"tomos/sim_00_{suffix}.mrc")
    rows = [one.assign(rlnIndex=i + 1, rlnMicrographName=f"tomos/{name}.mrc")
            for i, name in enumerate(("sim_00", "sim_00_mask", "sim_00_corrected"))]
    starfile.write(pd.concat(rows, ignore_index=True), "tomograms.star", overwrite=True)
    before = snapshot(project.parent)
    with pytest.raises(InputError, match=r"--mask_folder is an input of this command \(.*sim_00_mask.mrc\)"):
        make_mask(project, MaskConfig(mask_folder="tomos"), IOConfig(zarr_levels=1))
    with pytest.raises(InputError, match=r"--output_dir is an input of this command \(.*sim_00_corrected.mrc\)"):
        predict(project, n2n_model[1], PredictConfig(output_dir="tomos"), IOConfig(zarr_levels=1))
    assert_untouched(before, snapshot(project.parent))


# ------------------------------------------------------------ 2. rows identified by their tomogram, not _rlnIndex
def test_changes_land_on_their_row_after_the_table_was_renumbered(tmp_path):
    """A command's results replayed under the lock onto a table renumbered and reordered meanwhile (the GUI's
    Save renumbers 1..n) land on the row of the same tomogram: sim_01's output went to sim_00's row."""
    import pandas as pd
    import starfile

    from isonet_pl.io.formats import read_tomogram_star

    star = tmp_path / "t.star"
    names = ["tomos/sim_00.mrc", "tomos/sim_01.mrc", "tomos/sim_02.mrc"]
    starfile.write(pd.DataFrame({"rlnIndex": [1, 2, 3], "rlnMicrographName": names}), star)
    table = read_tomogram_star(star)  # a command reads the table...
    starfile.write(pd.DataFrame({"rlnIndex": [1, 2], "rlnMicrographName": [names[1], names[0]]}), star,
                   overwrite=True)  # ...the GUI deletes row 3, reorders and renumbers meanwhile...
    table.ensure_column("rlnDeconvTomoName", "None")
    table.set_value(1, "rlnDeconvTomoName", "deconv/sim_01.mrc")  # ...then the command records its results
    table.set_value(2, "rlnDeconvTomoName", "deconv/sim_02.mrc")
    table.write()
    df = starfile.read(star)
    assert dict(zip(df["rlnMicrographName"], df["rlnDeconvTomoName"], strict=True)) == {
        names[1]: "deconv/sim_01.mrc", names[0]: "None"}  # sim_02's row is gone: its result is not misfiled


def test_a_table_reached_through_a_link_is_updated_where_it_lives(tmp_path):
    import pandas as pd
    import starfile

    from isonet_pl.io.formats import read_tomogram_star

    real = tmp_path / "real" / "t.star"
    real.parent.mkdir()
    starfile.write(pd.DataFrame({"rlnIndex": [1], "rlnMicrographName": ["a.mrc"]}), real)
    link = tmp_path / "link.star"
    link.symlink_to(real)
    table = read_tomogram_star(link)
    table.set_value(0, "rlnDefocus", 5000.0)
    table.write()
    assert link.is_symlink() and starfile.read(real)["rlnDefocus"].iloc[0] == 5000.0


# ------------------------------------------------------------ 6. bounds, statistics, buffers, pixel sizes
def test_counts_and_noise_levels_are_bounded():
    from isonet_pl.config import ExtractConfig, PrepareStarConfig

    with pytest.raises(Exception, match="less than or equal to 100000"):
        PrepareStarConfig(number_subtomos=10_000_000)
    with pytest.raises(Exception, match="noise_level 1e\\+30 is outside 0..5"):
        RefineConfig(noise_level=(1e30,), noise_start_iter=(1,))
    assert ExtractConfig().cube_size


def test_extract_refuses_a_count_that_does_not_fit_the_disk(project, monkeypatch):
    import shutil

    import starfile

    df = starfile.read("tomograms.star")
    starfile.write(df.assign(rlnNumberSubtomo=10_000_000), "tomograms.star", overwrite=True)
    with pytest.raises(InputError, match="_rlnNumberSubtomo of row 1 is '10000000', not a whole number >= 1 and "
                                         "<= 100000"):
        _extract(project, subtomo_folder="sub")
    starfile.write(df.assign(rlnNumberSubtomo=50_000), "tomograms.star", overwrite=True)
    usage = shutil.disk_usage(".")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10**9))
    with pytest.raises(InputError, match=r"50000 subtomograms of 24\^3 need 2.8 GB, 1.0 GB are free"):
        _extract(project, subtomo_folder="sub")
    assert not Path("sub").exists()


@pytest.mark.parametrize("column, value, says", [("Std", "nan", "_rlnTomoStd of row 1 is 'nan'"),
                                                 ("Std", "1e30", "_rlnTomoStd of row 1 is '1e\\+30'"),
                                                 ("P96", "1e9", "normalise the subtomogram to a std of")])
def test_subtomogram_statistics_that_are_not_the_tomograms_are_refused(subtomo_star, tmp_path, column, value, says):
    """NaN or 1e30 statistics in a subtomogram table trained silently."""
    import shutil

    from isonet_pl.training.subtomograms import load_subtomograms

    copy = tmp_path / "copy"
    shutil.copytree(subtomo_star.parent, copy, ignore=shutil.ignore_patterns("zarr", "sim", "refine*"))
    text = (copy / subtomo_star.name).read_text().splitlines()
    header = [line for line in text if line.startswith("_rln")]
    col = next(i for i, h in enumerate(header) if h.split()[0] == f"_rlnTomo{column}")
    first = next(i for i, line in enumerate(text) if line.strip() and not line.startswith(("_", "#", "data", "loop")))
    cells = text[first].split()
    cells[col] = value
    text[first] = "\t".join(cells)
    (copy / subtomo_star.name).write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match=says):
        load_subtomograms(copy / subtomo_star.name)


def test_non_finite_batch_norm_statistics_are_never_saved():
    """--noise_level 1e30 saved checkpoints with infinite batch-norm variance (the guard read weights only)."""
    from isonet_pl.model.module import IsoNetModule
    from isonet_pl.training.callbacks import TrainingDiverged, check_finite, non_finite_state

    module = IsoNetModule(net=dict(depth=1, base_channels=2, convs_per_level=1))
    assert non_finite_state(module) is None
    norm = next(m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    norm.running_var.fill_(float("inf"))
    assert non_finite_state(module).startswith("the buffer ")
    with pytest.raises(TrainingDiverged, match="iteration 3: the buffer .*running_var holds NaN or infinite"):
        check_finite(module, 3)


def test_outputs_carry_the_pixel_size_used_when_the_header_has_none(project):
    """A voxel size 0 in the header stayed 0 in the outputs; the STAR file's is used (and written) now."""
    import mrcfile

    from isonet_pl.config import IOConfig, MaskConfig
    from isonet_pl.workflows.mask import make_mask

    with mrcfile.open("tomos/sim_00.mrc", mode="r+") as f:
        f.voxel_size = 0.0
    make_mask(project, MaskConfig(mask_folder="mask"), IOConfig(zarr_levels=1))
    with mrcfile.open("mask/sim_00_mask.mrc") as f:
        assert float(f.voxel_size.x) == pytest.approx(10.0)


def test_prepare_star_and_simulate_never_replace_a_table_they_did_not_write(project):
    """prepare_star overwrote an existing tomograms.star (a user's IsoNet2 file included) without a word."""
    from isonet_pl.config import PrepareStarConfig, SimulateConfig
    from isonet_pl.workflows.prepare import prepare_star
    from isonet_pl.workflows.simulate import simulate

    before = snapshot(project.parent)
    with pytest.raises(InputError, match="tomograms.star: exists; .*give --overwrite"):
        prepare_star("tomos", PrepareStarConfig(output_star="tomograms.star", pixel_size=10))
    Path("simulation.json").unlink()
    before = snapshot(project.parent)
    with pytest.raises(InputError, match="holds a tomograms.star that simulate did not write"):
        simulate(".", SimulateConfig(shape=(40, 64, 64), seed=1))
    assert_untouched(before, snapshot(project.parent))
    assert prepare_star("tomos", PrepareStarConfig(output_star="tomograms.star", pixel_size=10, overwrite=True))


def test_the_whole_pipeline_changes_no_file_it_did_not_make(project, tmp_path):
    """deconv, make_mask, extract, refine and predict, run in a project: every file that was there before is
    unchanged except the tomogram table, which the commands update as documented."""
    from isonet_pl.config import DeconvConfig, IOConfig, MaskConfig, PredictConfig
    from isonet_pl.workflows.deconv import deconv
    from isonet_pl.workflows.mask import make_mask
    from isonet_pl.workflows.predict import predict
    from isonet_pl.workflows.refine import refine

    (project.parent / "notes").mkdir()
    (project.parent / "notes" / "a.txt").write_text("mine")
    before = snapshot(project.parent)
    io = IOConfig(zarr_chunks=(32, 32, 32), zarr_levels=1)
    deconv(project, DeconvConfig(), io)
    make_mask(project, MaskConfig(), io)
    sub = _extract(project)
    model = refine(sub, RefineConfig(result_dir="results", **ONE))
    predict(project, model, PredictConfig(), io)
    after = snapshot(project.parent)
    assert after["tomograms.star"] != before.pop("tomograms.star")
    assert_untouched(before, after)


# ------------------------------------------------------------ sizes from the data (issue 43)
@pytest.mark.parametrize("options, says", [
    ({"cube_size": 32}, r"thinner than the subtomograms \(48 voxels: --cube_size 32 \+ 16\).*use --cube_size 24, "
                        "the largest that fits"),
    ({"cube_size": 16, "crop_size": 48}, r"use --cube_size 40 --crop_size 40"),
])
def test_extract_checks_the_cube_against_every_tomogram_first(project, options, says):
    """The README's extract --cube_size 64 failed on 64-slice tomograms with no suggested value."""
    before = snapshot(project.parent)
    from isonet_pl.config import ExtractConfig, IOConfig
    from isonet_pl.workflows.extract import extract

    with pytest.raises(InputError, match=says):
        extract(project, ExtractConfig(use_deconv_tomo=False, subtomo_folder="sub", **options),
                IOConfig(zarr_levels=1))
    assert_untouched(before, snapshot(project.parent))
    assert not Path("sub").exists() and not Path("zarr").exists()


def test_a_cube_that_refine_cannot_use_is_refused_by_extract():
    """--cube_size 30 passed extract and failed in refine."""
    from isonet_pl.config import ExtractConfig

    with pytest.raises(Exception, match="cube_size 30 is not a multiple of 8.*use 24 or 32"):
        ExtractConfig(cube_size=30)


def test_refine_names_the_tomogram_table_to_predict_on(subtomo_star, tmp_path, caplog):
    """refine's "next:" line printed a placeholder instead of the STAR file."""
    import logging

    from isonet_pl.io.star import read_star
    from isonet_pl.workflows.refine import refine

    source = read_star(subtomo_star).resolve(read_star(subtomo_star).df["rlnTomogramStarFile"].iloc[0])
    assert source.name == "tomograms.star" and source.exists()
    with caplog.at_level(logging.INFO):
        model = refine(subtomo_star, RefineConfig(result_dir=str(tmp_path / "r"), **ONE))
    assert f"next: isonet-pl predict {source} {model}" in caplog.text
