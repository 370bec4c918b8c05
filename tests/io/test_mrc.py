"""MRC reading and streamed writing."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from isonet_pl.errors import InputError
from isonet_pl.io.mrc import MrcWriter, read_block, read_mrc, read_mrc_info, write_mrc


@pytest.mark.parametrize("dtype", ["float32", "int16", "int8", "uint16", "float16"])
def test_write_read_roundtrip_keeps_data_voxel_size_origin(tmp_path, rng, dtype):
    """write_mrc then read_mrc gives the same voxels, voxel size and origin."""
    data = (rng.normal(size=(9, 14, 11)) * 30).astype(dtype)
    path = write_mrc(tmp_path / "v.mrc", data, voxel_size=(3.0, 2.0, 1.5), origin=(1.0, -2.0, 4.5))
    back, info = read_mrc(path)
    assert back.dtype == data.dtype and np.array_equal(back, data)
    assert info.voxel_size == (3.0, 2.0, 1.5) and info.origin == (1.0, -2.0, 4.5)
    with mrcfile.open(path) as m:
        assert np.array_equal(m.data, data)


def test_written_file_passes_mrcfile_validate(tmp_path, volume):
    """The header statistics of a streamed file are right: mrcfile.validate accepts it."""
    path = tmp_path / "v.mrc"
    with MrcWriter(path, volume.shape, np.float32, 7.0) as w:
        for z0 in range(0, volume.shape[0], 10):
            for y0 in range(0, volume.shape[1], 32):
                w.write(volume[z0:z0 + 10, y0:y0 + 32], z0, y0)
    assert mrcfile.validate(str(path))
    assert np.array_equal(read_mrc(path)[0], volume)


def test_read_block_matches_mrcfile(tmp_path, volume):
    """A block read with positional reads equals the same slice through mrcfile."""
    path = write_mrc(tmp_path / "v.mrc", volume)
    info = read_mrc_info(path)
    assert np.array_equal(read_block(info, (5, 17), (3, 40)), volume[5:17, 3:40])


def test_failed_write_leaves_no_file(tmp_path, volume):
    """An exception while writing leaves neither the final file nor a temporary."""
    path = tmp_path / "v.mrc"
    with pytest.raises(RuntimeError):
        with MrcWriter(path, volume.shape, np.float32) as w:
            w.write(volume[:5], 0)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_write_is_refused(tmp_path, volume):
    """Closing a writer before every voxel was written raises and leaves nothing."""
    with pytest.raises(ValueError, match="voxels were written"):
        with MrcWriter(tmp_path / "v.mrc", volume.shape, np.float32) as w:
            w.write(volume[:5], 0)
    assert list(tmp_path.iterdir()) == []


def test_not_an_mrc_file_is_a_clear_error(tmp_path):
    """A text file named .mrc gives an InputError naming the file."""
    bad = tmp_path / "fake.mrc"
    bad.write_text("hello, I am not a volume\n" * 100)
    with pytest.raises(InputError, match="fake.mrc"):
        read_mrc_info(bad)


def test_truncated_mrc_is_a_clear_error(tmp_path, volume):
    """A file shorter than its header says is reported as truncated."""
    path = write_mrc(tmp_path / "v.mrc", volume)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_mrc_info(path)


def test_2d_mrc_is_a_clear_error(tmp_path):
    """A single image (nz = 1) is not accepted as a tomogram."""
    path = tmp_path / "image.mrc"
    with mrcfile.new(path) as m:
        m.set_data(np.zeros((20, 30), np.float32))
    with pytest.raises(InputError, match="2-D"):
        read_mrc_info(path)


def test_missing_file_is_a_clear_error(tmp_path):
    """A missing path names the file."""
    with pytest.raises(InputError, match="does not exist"):
        read_mrc_info(tmp_path / "nope.mrc")


def test_file_longer_than_its_header_is_refused(tmp_path, volume):
    """Extra bytes after the data mean a wrong header (the voxels would be read scrambled)."""
    path = tmp_path / "long.mrc"
    write_mrc(path, volume, voxel_size=10.0)
    with open(path, "ab") as fh:
        fh.write(b"\0" * 4 * volume.shape[2])
    with pytest.raises(InputError, match="long.mrc: MRC file is .* bytes longer than its header says"):
        read_mrc_info(path)


def test_complex_mode_is_refused(tmp_path):
    """A complex MRC (a Fourier transform) is refused instead of being cast to real values."""
    path = tmp_path / "fft.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((4, 8, 8), np.complex64))
    with pytest.raises(InputError, match="fft.mrc: MRC mode 4 holds complex values"):
        read_mrc_info(path)


def test_voxel_size_zero_is_warned(tmp_path, volume, caplog):
    """A header without a voxel size is read, with a warning naming the file."""
    import logging

    path = tmp_path / "novs.mrc"
    write_mrc(path, volume, voxel_size=0.0)
    with caplog.at_level(logging.WARNING):
        read_mrc_info(path)
    assert any("novs.mrc" in r.getMessage() and "no voxel size" in r.getMessage() for r in caplog.records)


def test_written_files_carry_the_program_and_command(tmp_path, volume):
    """Every MRC we write names isonet-pl, its version and the command in its labels (IMOD's habit)."""
    from isonet_pl.io.mrc import PROVENANCE

    PROVENANCE["command"] = "isonet-pl deconv tomograms.star --voltage 200"
    try:
        write_mrc(tmp_path / "a.mrc", volume, voxel_size=10.0)
    finally:
        PROVENANCE["command"] = ""
    with mrcfile.open(tmp_path / "a.mrc", header_only=True) as mrc:
        labels = [bytes(label).decode().strip() for label in mrc.header.label[: int(mrc.header.nlabl)]]
    assert any(label.startswith("isonet-pl ") for label in labels)
    assert "isonet-pl deconv tomograms.star --voltage 200" in labels
