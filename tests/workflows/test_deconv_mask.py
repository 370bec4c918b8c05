"""deconv and make_mask end to end: IsoNet's project, modes, dask.distributed, bad input."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import starfile

from isonet_pl.config import DeconvConfig, ExtractConfig, IOConfig, MaskConfig
from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.mrc import read_mrc, write_mrc
from isonet_pl.workflows.deconv import deconv
from isonet_pl.workflows.extract import extract
from isonet_pl.workflows.mask import make_mask

IO = IOConfig(zarr_chunks=(32, 32, 32), zarr_levels=1)


@pytest.fixture
def project(tmp_path, reference):
    """A copy of IsoNet's project with only the raw tomograms and a fresh tomograms.star."""
    dst = tmp_path / "p"
    shutil.copytree(reference / "isonet_project" / "tomos", dst / "tomos")
    df = starfile.read(reference / "isonet_project" / "tomograms.star")
    starfile.write(df[["rlnIndex", "rlnMicrographName", "rlnPixelSize", "rlnDefocus", "rlnNumberSubtomo",
                       "rlnMaskBoundary"]], dst / "tomograms.star")
    return dst


def test_isonet_project_through_deconv_and_make_mask(project, reference, monkeypatch):
    """Our deconv equals IsoNet's deconv outputs; our masks agree with IsoNet's on >= 99 % of voxels."""
    monkeypatch.chdir(project)
    deconv("tomograms.star", DeconvConfig(snrfalloff=1.0, deconvstrength=1.0), IO)
    make_mask("tomograms.star", MaskConfig(patch_size=4, density_percentage=50, std_percentage=50, z_crop=0.1), IO)
    table = read_tomogram_star(project / "tomograms.star")
    for row, name in enumerate(["TS_01", "TS_02"]):
        ours, info = read_mrc(table.get_path(row, "rlnDeconvTomoName"))
        theirs, _ = read_mrc(reference / "isonet_project" / "deconv" / f"{name}.mrc")
        assert np.sqrt(np.mean((ours - theirs) ** 2) / np.mean(theirs**2)) <= 1e-4
        assert info.voxel_size == (10.0, 10.0, 10.0)
        mask, _ = read_mrc(table.get_path(row, "rlnMaskName"))
        their_mask, _ = read_mrc(reference / "isonet_project" / "mask" / f"{name}_mask.mrc")
        assert mask.dtype == their_mask.dtype and (mask == their_mask).mean() >= 0.99
    assert list(table.df["rlnDeconvTomoName"]) == ["deconv/TS_01.mrc", "deconv/TS_02.mrc"]
    assert list(table.df["rlnMaskName"]) == ["mask/TS_01_mask.mrc", "mask/TS_02_mask.mrc"]
    # the mask is also a label layer of the tomogram's OME-Zarr store (NGFF 0.5), for napari
    import zarr

    group = zarr.open_group(project / "zarr" / "deconv" / "TS_01.zarr", mode="r")
    assert dict(group["labels"].attrs["ome"])["labels"] == ["mask"]
    label = group["labels"]["mask"]
    assert dict(label.attrs["ome"])["image-label"]["source"]["image"] == "../../"
    np.testing.assert_array_equal(label["0"][...], read_mrc(table.get_path(0, "rlnMaskName"))[0])


def test_chunked_mode_is_chosen_when_memory_is_short(project, monkeypatch, caplog):
    """A tiny memory budget switches to chunked mode; the log says so; the result stays close."""
    monkeypatch.chdir(project)
    with caplog.at_level(logging.INFO):
        deconv("tomograms.star", DeconvConfig(memory_budget=0.001, deconv_folder="dc"), IO, tomo_idx="1")
    assert "chunked" in caplog.text
    deconv("tomograms.star", DeconvConfig(deconv_folder="dw"), IO, tomo_idx="1")
    a, _ = read_mrc(project / "dc" / "TS_01.mrc")
    b, _ = read_mrc(project / "dw" / "TS_01.mrc")
    assert np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)) < 0.05  # 64^3 volume, blocks of 256 cover most of it


def test_same_result_on_a_distributed_cluster(project, monkeypatch):
    """--dask_scheduler runs the chunked computation on a LocalCluster of 2 workers, same result."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.chdir(project)
    cfg = dict(chunk_size=32, overlap_rate=0.5)
    deconv("tomograms.star", DeconvConfig(deconv_folder="local", **cfg), IO, tomo_idx="1")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        deconv("tomograms.star", DeconvConfig(deconv_folder="remote", dask_scheduler=cluster.scheduler_address,
                                              **cfg), IO, tomo_idx="1")
        make_mask("tomograms.star", MaskConfig(mask_folder="rmask", dask_scheduler=cluster.scheduler_address),
                  IO, tomo_idx="1")
    make_mask("tomograms.star", MaskConfig(mask_folder="lmask"), IO, tomo_idx="1")
    np.testing.assert_allclose(read_mrc(project / "remote" / "TS_01.mrc")[0],
                               read_mrc(project / "local" / "TS_01.mrc")[0],
                               rtol=1e-5, atol=1e-6)
    assert np.array_equal(read_mrc(project / "rmask" / "TS_01_mask.mrc")[0],
                          read_mrc(project / "lmask" / "TS_01_mask.mrc")[0])


def test_defocus_zero_is_skipped_with_a_warning(project, monkeypatch, caplog):
    """With --noise_filter false (and --plane_halves false), rows with defocus 0 are not deconvolved (as IsoNet),
    with a warning."""
    monkeypatch.chdir(project)
    df = starfile.read("tomograms.star")
    df.loc[0, "rlnDefocus"] = 0.0
    starfile.write(df, "tomograms.star", overwrite=True)
    deconv("tomograms.star", DeconvConfig(noise_filter=False, plane_halves=False), IO)
    table = read_tomogram_star("tomograms.star")
    assert "defocus is 0" in caplog.text
    assert table.df["rlnDeconvTomoName"].iloc[0] == "None" and table.df["rlnDeconvTomoName"].iloc[1] != "None"


def test_mask_boundary_text_file_restricts_the_mask(project, monkeypatch):
    """--mask_boundary with a text polygon keeps the mask inside it (our extension: IsoNet ignored it)."""
    monkeypatch.chdir(project)
    (project / "box.txt").write_text("20 20 10\n70 20 10\n70 70 10\n20 70 10\n")
    make_mask("tomograms.star", MaskConfig(mask_boundary="box.txt"), IO, tomo_idx="1")
    mask, _ = read_mrc(project / "mask" / "TS_01_mask.mrc")
    assert mask.any() and not mask[:, :18, :].any() and not mask[:, 74:, :].any()


# --- bad input --------------------------------------------------------------------------------------------------

def _star(tmp_path, vol, **columns):
    write_mrc(tmp_path / "t.mrc", vol, voxel_size=10.0)
    row = {"rlnIndex": 1, "rlnMicrographName": "t.mrc", "rlnPixelSize": 10.0, "rlnDefocus": 30000.0}
    row.update(columns)
    starfile.write(pd.DataFrame([row]), tmp_path / "t.star")
    return tmp_path / "t.star"


@pytest.mark.parametrize("column,value,word", [
    ("rlnPixelSize", 0.0, "_rlnPixelSize of row 1 is '0.0', not a number > 0"),
    ("rlnSnrFalloff", -1.0, "_rlnSnrFalloff of row 1 is '-1.0', not a number > 0"),
    ("rlnDeconvStrength", np.inf, "_rlnDeconvStrength of row 1 is 'inf', not a number > 0"),
    ("rlnDefocus", np.nan, "_rlnDefocus of row 1 is 'nan', not a number >= 0"),
    ("rlnNumberSubtomo", 2.5, "_rlnNumberSubtomo of row 1 is '2.5', not a whole number >= 1"),
    ("rlnIndex", "x", "_rlnIndex of row 1 is 'x', not a whole number >= 0"),
    ("rlnMaskStdPercentage", 150.0, "_rlnMaskStdPercentage of row 1 is '150.0', not a number > 0 and <= 100"),
    ("rlnTiltMax", "-70", "invalid tilt range -60.0..-70.0"),
])
def test_bad_star_values_for_deconv(tmp_path, monkeypatch, column, value, word):
    """Every numeric column used is checked, for every row, before any work: finite, in range, whole
    numbers where counts are meant (non-finite values gave NaN tomograms or trained to loss 0)."""
    monkeypatch.chdir(tmp_path)
    star = _star(tmp_path, np.random.default_rng(0).normal(size=(16, 32, 32)).astype(np.float32), **{column: value})
    with pytest.raises(InputError, match=word):
        deconv(star, DeconvConfig(), IO)


@pytest.mark.parametrize("fill,word", [(0.0, "constant"), (np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                       ("one inf", "NaN or infinite"), ("one nan", "NaN or infinite")])
def test_constant_or_nan_tomogram(tmp_path, monkeypatch, fill, word):
    """A constant tomogram, or one with a NaN or an infinity anywhere, is refused by deconv, make_mask and
    extract (extract wrote inf into subtomo.star), naming the file; nothing is written."""
    monkeypatch.chdir(tmp_path)
    if isinstance(fill, str):
        vol = np.random.default_rng(0).normal(size=(16, 32, 32)).astype(np.float32)
        vol[3, 4, 5] = np.inf if fill == "one inf" else np.nan
    else:
        vol = np.full((16, 32, 32), fill, np.float32)
    star = _star(tmp_path, vol)
    with pytest.raises(InputError, match=f"t.mrc: tomogram .*{word}"):
        deconv(star, DeconvConfig(), IO)
    with pytest.raises(InputError, match=f"t.mrc: tomogram .*{word}"):
        make_mask(star, MaskConfig(use_deconv_tomo=False), IO)
    with pytest.raises(InputError, match=f"t.mrc: tomogram .*{word}"):
        extract(star, ExtractConfig(cube_size=8, crop_size=8, subtomo_star=str(tmp_path / "s.star"),
                                    subtomo_folder=str(tmp_path / "sub")), IO)
    assert not (tmp_path / "mask" / "t_mask.mrc").exists() and not (tmp_path / "s.star").exists()
    assert not list((tmp_path / "deconv").glob("*.mrc"))


def test_unreadable_boundary_file(project, monkeypatch):
    """A boundary file that is neither an IMOD model nor a point list is a clear error."""
    monkeypatch.chdir(project)
    (project / "bad.mod").write_bytes(b"\x00\x01garbage")
    with pytest.raises(InputError, match="bad.mod"):
        make_mask("tomograms.star", MaskConfig(mask_boundary="bad.mod"), IO)


def test_empty_mask_is_a_clear_error(project, monkeypatch):
    """A boundary outside the volume leaves no voxel: the error says what to change."""
    monkeypatch.chdir(project)
    (project / "far.txt").write_text("500 500 10\n600 500 10\n600 600 10\n")
    with pytest.raises(InputError, match="empty"):
        make_mask("tomograms.star", MaskConfig(mask_boundary="far.txt"), IO, tomo_idx="1")
    assert not (project / "mask" / "TS_01_mask.mrc").exists()


@pytest.mark.parametrize("args,word", [(["--overlap_rate", "1.5"], "overlap_rate"),
                                       (["--chunk_size", "4"], "chunk_size"),
                                       (["--snrfalloff", "0"], "snrfalloff")])
def test_bad_deconv_options(run_cli, project, args, word):
    """Impossible deconv options are one-line errors naming the option."""
    code, _, err = run_cli(["deconv", project / "tomograms.star", *args], cwd=project)
    assert code != 0 and word in err and "Traceback" not in err


@pytest.mark.parametrize("args,word", [(["--density_percentage", "0"], "density_percentage"),
                                       (["--std_percentage", "150"], "std_percentage"),
                                       (["--z_crop", "0.5"], "z_crop")])
def test_bad_mask_options(run_cli, project, args, word):
    """Percentages outside (0, 100] and z_crop outside [0, 0.5) are one-line errors."""
    code, _, err = run_cli(["make_mask", project / "tomograms.star", *args], cwd=project)
    assert code != 0 and word in err and "Traceback" not in err


def test_deconv_processes_both_halves(tmp_path, monkeypatch):
    """With half tomograms in the table, deconv writes them too (own folders and columns); the mask uses the average."""
    from isonet_pl.config import SimulateConfig
    from isonet_pl.workflows.simulate import simulate

    monkeypatch.chdir(tmp_path)
    star = simulate(tmp_path / "sim", SimulateConfig(shape=(32, 48, 48), halves=True, defocus=30000))
    deconv(star, DeconvConfig(deconv_folder=str(tmp_path / "dc")), IO)
    table = read_tomogram_star(star)
    for column, sub in (("rlnDeconvTomoHalf1", "half1"), ("rlnDeconvTomoHalf2", "half2")):
        assert table.get_path(0, column).resolve() == (tmp_path / "dc" / sub / "sim_00.mrc")
    even, _ = read_mrc(tmp_path / "dc" / "half1" / "sim_00.mrc")
    odd, _ = read_mrc(tmp_path / "dc" / "half2" / "sim_00.mrc")
    assert even.shape == (32, 48, 48) and not np.allclose(even, odd)


def test_extract_takes_the_same_centres_from_both_halves(tmp_path, monkeypatch):
    """Half subtomograms are cut at the same centres as the average's: their mean equals it."""
    from isonet_pl.config import ExtractConfig, SimulateConfig
    from isonet_pl.io.star import read_subtomo_star
    from isonet_pl.workflows.extract import extract
    from isonet_pl.workflows.simulate import simulate

    monkeypatch.chdir(tmp_path)
    star = simulate(tmp_path / "sim", SimulateConfig(shape=(32, 48, 48), halves=True, number_subtomos=3))
    sub = extract(star, ExtractConfig(cube_size=16, crop_size=24, subtomo_folder="st", subtomo_star="st.star"), IO)
    table = read_subtomo_star(sub)
    for row in range(3):
        avg, _ = read_mrc(table.get_path(row, "rlnImageName"))
        even, _ = read_mrc(table.get_path(row, "rlnImageNameHalf1"))
        odd, _ = read_mrc(table.get_path(row, "rlnImageNameHalf2"))
        np.testing.assert_allclose((even + odd) / 2, avg, rtol=1e-4, atol=1e-4 * np.abs(avg).max())


def test_same_named_tomograms_get_their_own_outputs(tmp_path, monkeypatch):
    """Two tomograms with one file name in different folders: deconv, make_mask and extract write each its
    own files (they overwrote each other: subtomo.star listed 12 subtomograms, 8 files existed)."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    rows = []
    for i, sub in enumerate(("run1", "run2")):
        (tmp_path / sub).mkdir()
        write_mrc(tmp_path / sub / "t.mrc", rng.normal(size=(16, 32, 32)).astype(np.float32), voxel_size=10.0)
        rows.append({"rlnIndex": i + 1, "rlnMicrographName": f"{sub}/t.mrc", "rlnPixelSize": 10.0,
                     "rlnDefocus": 30000.0, "rlnNumberSubtomo": 3})
    starfile.write(pd.DataFrame(rows), tmp_path / "t.star")
    deconv(tmp_path / "t.star", DeconvConfig(), IO)
    make_mask(tmp_path / "t.star", MaskConfig(density_percentage=100, std_percentage=100), IO)
    out = extract(tmp_path / "t.star", ExtractConfig(cube_size=8, crop_size=8), IO)
    table = starfile.read(tmp_path / "t.star")
    assert list(table["rlnDeconvTomoName"]) == ["deconv/run1_t.mrc", "deconv/run2_t.mrc"]
    assert list(table["rlnMaskName"]) == ["mask/run1_t_mask.mrc", "mask/run2_t_mask.mrc"]
    names = list(starfile.read(out)["rlnImageName"])
    assert len(names) == 6 == len(set(names)) == len(list((tmp_path / "subtomo").glob("*.mrc")))


def test_unwritable_outputs_are_found_before_the_work(tmp_path, monkeypatch):
    """A Zarr folder that cannot be made is reported before deconv computes anything (it was found after)."""
    monkeypatch.chdir(tmp_path)
    star = _star(tmp_path, np.random.default_rng(0).normal(size=(16, 32, 32)).astype(np.float32))
    before = star.read_bytes()
    (tmp_path / "zarr").write_text("not a folder")
    for run in (lambda: deconv(star, DeconvConfig(), IO), lambda: make_mask(star, MaskConfig(), IO)):
        with pytest.raises(InputError, match="zarr: output folder is an existing file"):
            run()
    assert star.read_bytes() == before and not (tmp_path / "deconv").exists() and not (tmp_path / "mask").exists()


def test_rows_without_ctf_get_the_measured_wiener_filter(tmp_path, caplog):
    """defocus 0, no halves: deconv writes the tomogram Wiener-filtered with the noise of its empty slices (closer to
    the ground truth than the raw one), logged; with halves, or --noise_filter false, the row is skipped."""
    from isonet_pl.config import SimulateConfig
    from isonet_pl.workflows.simulate import simulate

    star = simulate(tmp_path / "sim", SimulateConfig(shape=(64, 96, 96), number_subtomos=4, seed=3))
    with caplog.at_level(logging.INFO, logger="isonet_pl"):
        deconv(star, DeconvConfig(deconv_folder=str(tmp_path / "sim" / "deconv"), plane_halves=False), IO)
    assert "Wiener-filtered sim_00.mrc" in caplog.text and "noise measured on empty slices" in caplog.text
    table = read_tomogram_star(star)
    filtered = read_mrc(table.get_path(0, "rlnDeconvTomoName"))[0]
    raw = read_mrc(tmp_path / "sim" / "tomos" / "sim_00.mrc")[0]
    truth = read_mrc(tmp_path / "sim" / "ground_truth" / "sim_00.mrc")[0]

    def corr(a):
        return np.corrcoef(a.ravel(), truth.ravel())[0, 1]

    assert corr(filtered) > corr(raw) + 0.2  # raw WBP at SNR 0.5 is mostly noise voxel by voxel

    star2 = simulate(tmp_path / "off", SimulateConfig(shape=(64, 96, 96), number_subtomos=4, seed=3))
    deconv(star2, DeconvConfig(deconv_folder=str(tmp_path / "off" / "deconv"), noise_filter=False, plane_halves=False),
           IO)
    assert "rlnDeconvTomoName" not in read_tomogram_star(star2).df.columns or \
        read_tomogram_star(star2).get_path(0, "rlnDeconvTomoName", required=False) is None
    caplog.clear()
    star3 = simulate(tmp_path / "halves", SimulateConfig(shape=(64, 96, 96), number_subtomos=4, seed=3, halves=True))
    with caplog.at_level(logging.WARNING, logger="isonet_pl"):
        deconv(star3, DeconvConfig(deconv_folder=str(tmp_path / "halves" / "deconv")), IO)
    assert "the even/odd mode denoises from its halves" in caplog.text
    assert read_tomogram_star(star3).get_path(0, "rlnDeconvTomoName", required=False) is None


def test_rows_without_ctf_or_empty_slices_are_filtered_with_the_tilt_axis_model(tmp_path, caplog):
    """A tomogram trimmed to its specimen (no empty slice) gets the Wiener filter with the noise of the tilt-axis
    model (logged as such); one whose noise the model does not describe is left as it is, with one warning for the
    command that gives the reason and the remedy."""
    from isonet_pl.config import PrepareStarConfig, SimulateConfig
    from isonet_pl.workflows.prepare import prepare_star
    from isonet_pl.workflows.simulate import simulate

    star = simulate(tmp_path / "sim", SimulateConfig(shape=(96, 96, 96), slab_fraction=0.9, number_subtomos=4, seed=3))
    for folder in ("tomos", "ground_truth"):  # trimmed to the specimen: the central 64 of its 86 slices
        path = tmp_path / "sim" / folder / "sim_00.mrc"
        write_mrc(path, read_mrc(path)[0][16:80], voxel_size=10.0)
    with caplog.at_level(logging.INFO, logger="isonet_pl"):
        deconv(star, DeconvConfig(deconv_folder=str(tmp_path / "sim" / "deconv"), plane_halves=False), IO)
    assert "Wiener-filtered sim_00.mrc" in caplog.text and "noise from the tilt-axis model" in caplog.text
    filtered = read_mrc(read_tomogram_star(star).get_path(0, "rlnDeconvTomoName"))[0]
    raw = read_mrc(tmp_path / "sim" / "tomos" / "sim_00.mrc")[0]
    truth = read_mrc(tmp_path / "sim" / "ground_truth" / "sim_00.mrc")[0]

    def corr(a):
        return np.corrcoef(a.ravel(), truth.ravel())[0, 1]

    assert corr(filtered) > corr(raw) + 0.2

    folder = tmp_path / "lowpassed"  # no empty slice, and a noise no back-projection gives: a low-passed volume
    folder.mkdir()
    k = np.sqrt(sum(g**2 for g in np.meshgrid(np.fft.fftfreq(48), np.fft.fftfreq(96), np.fft.rfftfreq(96),
                                             indexing="ij")))
    noise = np.random.default_rng(0).standard_normal((48, 96, 96))
    volume = np.fft.irfftn(np.fft.rfftn(noise) / (1 + (k / 0.25) ** 8), s=noise.shape, axes=(0, 1, 2))
    write_mrc(folder / "a.mrc", volume.astype(np.float32), voxel_size=10.0)
    write_mrc(folder / "b.mrc", volume[:, ::-1].astype(np.float32), voxel_size=10.0)
    star2 = prepare_star(folder, PrepareStarConfig(output_star=str(tmp_path / "lowpassed.star")))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="isonet_pl"):
        deconv(star2, DeconvConfig(deconv_folder=str(tmp_path / "lowpassed_deconv")), IO)
    warnings = [r.getMessage() for r in caplog.records if "not denoised" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 2" in warnings[0] and "a.mrc" in warnings[0] and "Remedy" in warnings[0]
    # nor plane halves: one warning too, and the rows keep no half columns
    warnings = [r.getMessage() for r in caplog.records if "got no plane halves" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 2" in warnings[0] and "tilt-axis noise model does not fit" in warnings[0]
    assert read_tomogram_star(star2).get_path(0, "rlnTomoReconstructedTomogramHalf1", required=False) is None
    assert read_tomogram_star(star2).get_path(0, "rlnDeconvTomoName", required=False) is None


@pytest.mark.parametrize("defocus", [0.0, 30000.0])
def test_rows_without_halves_get_halves_of_their_even_and_odd_planes(tmp_path, caplog, defocus):
    """deconv's default for a row without halves: halves made of its even and odd Y planes, named in the half columns
    (deconvolved like real halves with a CTF; without one the even/odd mode denoises, so no Wiener filter), which
    extract then cuts; a tomogram interpolated along Y (neighbouring planes share noise) gets none, with a warning,
    and takes IsoNet's mode (the Wiener filter without a CTF)."""
    from scipy import ndimage

    from isonet_pl.config import SimulateConfig
    from isonet_pl.preprocess.split import split_planes
    from isonet_pl.workflows.simulate import simulate

    star = simulate(tmp_path / "sim", SimulateConfig(shape=(64, 96, 96), number_subtomos=4, seed=3, defocus=defocus))
    with caplog.at_level(logging.INFO, logger="isonet_pl"):
        deconv(star, DeconvConfig(deconv_folder=str(tmp_path / "sim" / "deconv")), IO)
    assert "even/odd halves made of its even and odd Y planes" in caplog.text
    table = read_tomogram_star(star)
    raw = read_mrc(tmp_path / "sim" / "tomos" / "sim_00.mrc")[0]
    for k, column in enumerate(("rlnTomoReconstructedTomogramHalf1", "rlnTomoReconstructedTomogramHalf2")):
        path = table.get_path(0, column)
        assert path.parent == tmp_path / "sim" / "deconv" / "planes" / f"half{k + 1}"
        np.testing.assert_array_equal(read_mrc(path)[0], split_planes(raw)[k])
    deconvolved = [table.get_path(0, c, required=False) for c in ("rlnDeconvTomoName", "rlnDeconvTomoHalf1",
                                                                  "rlnDeconvTomoHalf2")]
    if defocus:
        assert all(p is not None and p.exists() for p in deconvolved)
    else:
        assert deconvolved == [None, None, None] and "Wiener-filtered" not in caplog.text
    make_mask(star, MaskConfig(mask_folder=str(tmp_path / "sim" / "mask")), IO)
    sub = extract(star, ExtractConfig(subtomo_folder=str(tmp_path / "sim" / "subtomo"),
                                      subtomo_star=str(tmp_path / "sim" / "subtomo.star"), cube_size=16), IO)
    assert {"rlnImageNameHalf1", "rlnImageNameHalf2"} <= set(starfile.read(sub).columns)

    # interpolated along Y: neighbouring planes share noise, so no plane halves
    shifted = tmp_path / "shifted"
    star2 = simulate(shifted, SimulateConfig(shape=(64, 96, 96), number_subtomos=4, seed=3, defocus=defocus))
    path = shifted / "tomos" / "sim_00.mrc"
    write_mrc(path, ndimage.shift(read_mrc(path)[0], (0, 0.5, 0), order=1, mode="nearest"), voxel_size=10.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="isonet_pl"):
        deconv(star2, DeconvConfig(deconv_folder=str(shifted / "deconv")), IO)
    warnings = [r.getMessage() for r in caplog.records if "got no plane halves" in r.getMessage()]
    assert len(warnings) == 1 and "neighbouring Y planes correlates" in warnings[0]
    table = read_tomogram_star(star2)
    assert table.get_path(0, "rlnTomoReconstructedTomogramHalf1", required=False) is None
    assert table.get_path(0, "rlnDeconvTomoName") is not None  # deconvolved, or Wiener-filtered without a CTF
