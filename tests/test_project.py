"""The project layer: rows as Tomogram objects, their volumes, stores and recorded outputs."""

import numpy as np
import pytest

from isonet_pl.config import IOConfig, SimulateConfig
from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.mrc import read_mrc, write_mrc
from isonet_pl.io.star import CORRECTED_COLUMN, DECONV_COLUMN, TOMOGRAM_COLUMN
from isonet_pl.io.zarr_store import write_tomogram
from isonet_pl.project import tomograms

IO = IOConfig(zarr_chunks=(16, 16, 16), zarr_levels=1)


@pytest.fixture
def star(tmp_path):
    from isonet_pl.workflows.simulate import simulate

    return simulate(tmp_path / "sim", SimulateConfig(shape=(24, 32, 32), number_subtomos=2, halves=True, seed=1))


def test_rows_know_their_volumes(star):
    (tomo,) = tomograms(read_tomogram_star(star), IO)
    assert tomo.key == "sim_00" and tomo.number == 1 and tomo.has_halves and tomo.deconvolved is None
    assert tomo.source_column(True) == TOMOGRAM_COLUMN and tomo.tilt_range == (-60.0, 60.0)
    store = tomo.store()
    assert store.shape == (24, 32, 32) and store.path.name == "sim_00.zarr"
    assert len(tomo.half_arrays(False, store.shape)) == 2 and tomo.half_arrays(True, store.shape) == []
    with pytest.raises(InputError, match="differs from the tomogram"):
        tomo.half_arrays(False, (1, 2, 3))


def test_record_output_writes_mrc_and_the_table(star, tmp_path):
    table = read_tomogram_star(star)
    (tomo,) = tomograms(table, IO)
    volume = np.arange(24 * 32 * 32, dtype=np.float32).reshape(24, 32, 32)
    out_mrc = tmp_path / "sim" / "out" / "sim_00_corrected.mrc"
    out_mrc.parent.mkdir()
    out_zarr = tomo.output_zarr(out_mrc)
    assert out_zarr.parent.is_dir() and out_zarr.name == "sim_00_corrected.zarr"
    write_tomogram(volume, out_zarr, (10.0, 10.0, 10.0), levels=1, chunks=(16, 16, 16))
    tomo.record_output(out_zarr, out_mrc, CORRECTED_COLUMN)
    np.testing.assert_array_equal(read_mrc(out_mrc)[0], volume)
    again = read_tomogram_star(star)  # written to disk, relative to the STAR file
    assert again.df[CORRECTED_COLUMN].iloc[0] == "out/sim_00_corrected.mrc"


def test_missing_files_fail_before_any_work(star, tmp_path):
    table = read_tomogram_star(star)
    table.set_value(0, DECONV_COLUMN, "deconv/missing.mrc")
    table.write()
    with pytest.raises(InputError, match="missing file"):
        tomograms(read_tomogram_star(star), IO, columns=(DECONV_COLUMN,))
    write_mrc(tmp_path / "sim" / "x.mrc", np.zeros((2, 2, 2), np.float32))  # unrelated file: no effect
    assert tomograms(read_tomogram_star(star), IO)[0].deconvolved.name == "missing.mrc"
