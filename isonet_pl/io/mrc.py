"""MRC volumes: header checks, block reads and streamed writes without memory maps.

Arrays are ZYX (``mrcfile`` order); voxel sizes and origins are ZYX tuples in Å.
Reads and writes go through ordinary positional file I/O rather than ``numpy.memmap``,
so the resident memory of a conversion stays at one block, whatever the file size
(a memory map keeps every page it touched resident until it is unmapped).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
from mrcfile import dtypes as mrc_dtypes
from mrcfile import utils as mrc_utils

from isonet_pl.errors import InputError
from isonet_pl.io.paths import atomic_path, check_readable_file

logger = logging.getLogger(__name__)

HEADER_BYTES = 1024
#: The command that writes files now (set by the CLI), recorded in each MRC file's labels as IMOD does.
PROVENANCE = {"command": ""}
#: Labels an MRC header holds.
MAX_LABELS = 10


def label_text(text: str) -> str:
    """``text`` as MRC labels allow it (printable ASCII): other characters escaped (``ü`` -> ``\\xfc``,
    a tab -> ``\\t``), so a file or folder name of any kind never breaks a write."""
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)


def provenance_labels() -> list[str]:
    """MRC header labels (80 printable ASCII characters each) naming isonet-pl, its version, the date and the
    command (escaped by :func:`label_text`)."""
    import time

    from isonet_pl import __version__

    first = label_text(f"isonet-pl {__version__}  {time.strftime('%d-%b-%y %H:%M:%S')}")
    command = label_text(PROVENANCE["command"])
    lines = [command[i:i + 80] for i in range(0, len(command), 80)]
    return [first[:80]] + lines[:MAX_LABELS - 2]  # mrcfile's own label comes first


@dataclass(frozen=True)
class MrcInfo:
    """What isonet-pl needs from an MRC header.

    Attributes
    ----------
    path : Path
        The file.
    shape : tuple of int
        (nz, ny, nx).
    dtype : numpy.dtype
        Data type as stored (byte order included).
    voxel_size : tuple of float
        (z, y, x) in Å; 0 where the header has none.
    origin : tuple of float
        Header origin (z, y, x) in Å.
    data_offset : int
        Byte offset of the first voxel.
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    data_offset: int

    @property
    def nbytes(self) -> int:
        """Size of the voxel data in bytes."""
        return int(np.prod(self.shape)) * self.dtype.itemsize


def read_mrc_info(path: str | Path, min_size: int = 2) -> MrcInfo:
    """Read and check the header of a 3-D MRC file.

    Parameters
    ----------
    path : str or Path
        The MRC file.
    min_size : int
        Smallest accepted edge along every axis (a 2-D image has nz = 1).

    Raises
    ------
    InputError
        If the file is missing, not an MRC file, not 3-D, or shorter than its header says.
    """
    path = check_readable_file(path, what="MRC file")
    try:
        with warnings.catch_warnings():  # permissive mode warns about what we check below
            warnings.simplefilter("ignore")
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                header = mrc.header.copy()
    except Exception as exc:  # mrcfile raises ValueError/struct errors on garbage
        raise InputError(f"not a readable MRC file ({exc})", path, "check the file or convert it to MRC") from None
    if header is None or bytes(header.map) not in (b"MAP ", b"MAP\x00") and not _plausible(header):
        raise InputError("not an MRC file (no MAP stamp and an implausible header)", path,
                         "check the file or convert it to MRC")
    try:
        dtype = mrc_utils.data_dtype_from_header(header)
    except Exception:
        raise InputError(f"unsupported MRC mode {int(header.mode)}", path,
                         "convert it to float32 (mode 2)") from None
    if dtype.kind == "c":  # a Fourier transform, not a density: casting it would drop the imaginary part
        raise InputError(f"MRC mode {int(header.mode)} holds complex values (a Fourier transform), not a tomogram",
                         path, "give the reconstructed density (real values, e.g. mode 2)")
    shape = (int(header.nz), int(header.ny), int(header.nx))
    if min(shape) < 1:
        raise InputError(f"invalid dimensions {shape} (z, y, x)", path, "check the file")
    if shape[0] < min_size:
        raise InputError(f"is a 2-D image ({shape[1]}x{shape[2]}), not a tomogram", path,
                         "give a 3-D reconstruction (nz > 1)")
    offset = HEADER_BYTES + int(header.nsymbt)
    info = MrcInfo(
        path=path,
        shape=shape,
        dtype=dtype,
        voxel_size=_voxel_size_zyx(header),
        origin=(float(header.origin.z), float(header.origin.y), float(header.origin.x)),
        data_offset=offset,
    )
    size = path.stat().st_size
    if size < offset + info.nbytes:
        raise InputError(
            f"truncated MRC file: {size} bytes, the header needs {offset + info.nbytes}", path,
            "copy or write the file again")
    if size > offset + info.nbytes:  # the header's size or mode is wrong: the voxels would be read scrambled
        raise InputError(
            f"MRC file is {size - offset - info.nbytes} bytes longer than its header says ({shape[2]}x{shape[1]}x"
            f"{shape[0]} voxels of {dtype.itemsize} bytes after {offset} header bytes)", path,
            "fix the header (dimensions, mode, extended header size) or write the file again")
    if min(info.voxel_size) <= 0:
        logger.warning("%s: the header gives no voxel size (%s Å); outputs take the STAR file's pixel size "
                       "where there is one", path, "x".join(f"{v:g}" for v in info.voxel_size[::-1]))
    return info


def _plausible(header: np.recarray) -> bool:
    return 0 < int(header.nx) < 1 << 20 and 0 < int(header.ny) < 1 << 20 and 0 < int(header.nz) < 1 << 20


def _voxel_size_zyx(header: np.recarray) -> tuple[float, float, float]:
    out = []
    for n, cell in ((header.mz, header.cella.z), (header.my, header.cella.y), (header.mx, header.cella.x)):
        out.append(float(cell) / int(n) if int(n) > 0 else 0.0)
    return tuple(out)  # type: ignore[return-value]


def read_block(info: MrcInfo, z: tuple[int, int], y: tuple[int, int] | None = None) -> np.ndarray:
    """Read the voxels ``[z0:z1, y0:y1, :]`` with positional reads (no memory map).

    Returns
    -------
    numpy.ndarray
        Shape (z1 - z0, y1 - y0, nx), the stored dtype in native byte order.
    """
    nz, ny, nx = info.shape
    z0, z1 = z
    y0, y1 = (0, ny) if y is None else y
    row = nx * info.dtype.itemsize
    out = np.empty((z1 - z0, y1 - y0, nx), dtype=info.dtype)
    buf = out.reshape(z1 - z0, -1).view(np.uint8)
    with open(info.path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        for i, zi in enumerate(range(z0, z1)):
            start = info.data_offset + (zi * ny + y0) * row
            _pread_into(fd, buf[i], start)
    return out.astype(info.dtype.newbyteorder("="), copy=False)


def _pread_into(fd: int, view: np.ndarray, offset: int) -> None:
    mv = memoryview(view)
    done = 0
    while done < len(mv):
        n = os.preadv(fd, [mv[done:]], offset + done)
        if n <= 0:
            raise OSError(f"unexpected end of file at byte {offset + done}")
        done += n


def iter_blocks(info: MrcInfo, depth: int, rows: int | None = None
                ) -> Iterator[tuple[tuple[int, int], tuple[int, int], np.ndarray]]:
    """Yield ``((z0, z1), (y0, y1), block)`` covering the volume in z-major order."""
    nz, ny, _ = info.shape
    rows = ny if rows is None else rows
    for z0 in range(0, nz, depth):
        z1 = min(nz, z0 + depth)
        for y0 in range(0, ny, rows):
            y1 = min(ny, y0 + rows)
            yield (z0, z1), (y0, y1), read_block(info, (z0, z1), (y0, y1))


def read_mrc(path: str | Path) -> tuple[np.ndarray, MrcInfo]:
    """Read a whole 3-D MRC volume into memory (for small volumes: subtomograms, tests).

    Returns
    -------
    data : numpy.ndarray
        Shape (nz, ny, nx), the stored dtype.
    info : MrcInfo
        Its header.
    """
    info = read_mrc_info(path)
    return read_block(info, (0, info.shape[0])), info


class MrcWriter:
    """Write an MRC volume block by block, under a temporary name renamed on success.

    Header statistics (min, max, mean, rms) are accumulated from the blocks, so the
    result passes ``mrcfile.validate``. Use as a context manager; on an exception the
    temporary file is removed and nothing appears under the final name.

    Parameters
    ----------
    path : str or Path
        Final file name.
    shape : tuple of int
        (nz, ny, nx).
    dtype : numpy dtype
        One of the MRC data types (int8, int16, uint16, float16, float32, complex64);
        uint8 is stored as uint16 (mode 6) as mrcfile does.
    voxel_size : float or tuple of float
        Å, isotropic or (z, y, x).
    origin : tuple of float
        Header origin (z, y, x) in Å.
    """

    def __init__(self, path: str | Path, shape: tuple[int, int, int], dtype: np.dtype | str,
                 voxel_size: float | tuple[float, float, float] = 1.0,
                 origin: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        if dtype == np.uint8:
            dtype = np.dtype(np.uint16)
        if dtype == np.float64:
            dtype = np.dtype(np.float32)
        self.dtype = dtype.newbyteorder("<")
        self.mode = mrc_utils.mode_from_dtype(dtype)
        vs = (voxel_size,) * 3 if np.isscalar(voxel_size) else tuple(voxel_size)
        self.voxel_size = tuple(float(v) for v in vs)
        self.origin = tuple(float(o) for o in origin)
        self._atomic = atomic_path(self.path)
        self._fd: int | None = None
        self._stats = [np.inf, -np.inf, 0.0, 0.0, 0]  # min, max, sum, sum of squares, count

    def __enter__(self) -> MrcWriter:
        tmp = self._atomic.__enter__()
        with mrcfile.new_mmap(tmp, shape=self.shape, mrc_mode=self.mode, fill=None, overwrite=True) as mrc:
            mrc.voxel_size = (self.voxel_size[2], self.voxel_size[1], self.voxel_size[0])
            mrc.header.origin = (self.origin[2], self.origin[1], self.origin[0])
            for line in provenance_labels():
                mrc.add_label(line)
        self._tmp = tmp
        self._fd = os.open(tmp, os.O_RDWR)
        return self

    def write(self, block: np.ndarray, z0: int, y0: int = 0) -> None:
        """Write ``block`` (shape (dz, dy, nx)) at ``[z0:z0+dz, y0:y0+dy, :]``."""
        nz, ny, nx = self.shape
        dz, dy, bx = block.shape
        if bx != nx or z0 + dz > nz or y0 + dy > ny:
            raise ValueError(f"block {block.shape} at z={z0}, y={y0} does not fit {self.shape}")
        data = np.ascontiguousarray(block, dtype=self.dtype)
        self._update_stats(data)
        row = nx * self.dtype.itemsize
        offset = HEADER_BYTES
        flat = data.reshape(dz, -1)
        for i in range(dz):
            start = offset + ((z0 + i) * ny + y0) * row
            mv = memoryview(flat[i]).cast("B")
            done = 0
            while done < len(mv):
                done += os.pwrite(self._fd, mv[done:], start + done)

    def _update_stats(self, data: np.ndarray) -> None:
        values = data.real if np.iscomplexobj(data) else data
        s = self._stats
        s[0] = min(s[0], float(values.min()))
        s[1] = max(s[1], float(values.max()))
        v64 = values.astype(np.float64)
        s[2] += float(v64.sum())
        s[3] += float(np.square(v64).sum())
        s[4] += values.size

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._finish_header()
            except BaseException as error:  # an incomplete file must not be renamed into place
                exc_type, exc, tb = type(error), error, error.__traceback__
        os.close(self._fd)
        if exc is None:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(exc_type, exc, tb)  # removes the temporary and re-raises
            raise exc

    def _finish_header(self) -> None:
        vmin, vmax, total, total_sq, count = self._stats
        expected = int(np.prod(self.shape))
        if count < expected:
            raise ValueError(f"{self.path}: only {count} of {expected} voxels were written")
        mean = total / count
        rms = np.sqrt(max(total_sq / count - mean * mean, 0.0))
        raw = bytearray(os.pread(self._fd, HEADER_BYTES, 0))
        header = np.frombuffer(raw, dtype=mrc_dtypes.HEADER_DTYPE).copy()
        header["dmin"], header["dmax"] = vmin, vmax
        header["dmean"], header["rms"] = mean, rms
        os.pwrite(self._fd, header.tobytes(), 0)


def write_mrc(path: str | Path, data: np.ndarray, voxel_size: float | tuple[float, float, float] = 1.0,
              origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Path:
    """Write a whole in-memory volume (shape (nz, ny, nx)) to an MRC file atomically."""
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"expected a 3-D array (z, y, x), got shape {data.shape}")
    with MrcWriter(path, data.shape, data.dtype, voxel_size, origin) as writer:
        writer.write(data, 0)
    return Path(path)
