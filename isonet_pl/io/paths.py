"""File-system helpers: input checks with clear errors, and atomic outputs.

Every output of isonet-pl (MRC, Zarr store, STAR file) is written under a temporary
name in the destination folder and renamed into place only when complete, so an
interrupted or failed run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from isonet_pl.errors import InputError

logger = logging.getLogger(__name__)


def check_readable_file(path: str | Path, what: str = "file", option: str | None = None) -> Path:
    """Return ``path`` as a Path if it is an existing, readable file, else raise InputError."""
    path = Path(path)
    hint = f"check {option}" if option else "check the path"
    if not path.exists():
        raise InputError(f"{what} does not exist", path, hint)
    if path.is_dir():
        raise InputError(f"expected a {what}, found a folder", path, hint)
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} is not readable", path, "fix its permissions")
    return path


def check_output_dir(path: str | Path, option: str | None = None) -> Path:
    """Create the output folder ``path`` if needed and check that it is writable."""
    path = Path(path)
    hint = f"choose another {option}" if option else "choose another output location"
    if path.exists() and not path.is_dir():
        raise InputError("output folder is an existing file", path, hint)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder ({exc.strerror})", path, hint) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError("output folder is not writable", path, hint)
    return path


def check_output_file(path: str | Path, option: str | None = None) -> Path:
    """Check that the file ``path`` can be written (its folder is created if needed)."""
    path = Path(path)
    hint = f"choose another {option}" if option else "choose another output file"
    if path.is_dir():
        raise InputError("output file is an existing folder", path, hint)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError("output file is not writable", path, hint)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        check_output_dir(parent)
    except InputError as exc:
        raise InputError(f"cannot write here: {exc.problem}", path, hint) from None
    return path


def check_not_input(output: str | Path, inputs: Iterable[str | Path], option: str, folder: bool = False) -> Path:
    """Refuse an output that is one of the ``inputs`` (links resolved) or, for an output ``folder`` that is
    replaced as a whole, one that holds an input or the current folder.

    Raises
    ------
    InputError
        Naming the output, the input it would replace, and the option to change.
    """
    output = Path(output)
    real = Path(os.path.realpath(output))
    for path in inputs:
        other = Path(os.path.realpath(path))
        if other == real or (folder and other.is_relative_to(real)):
            what = "is" if other == real else "holds"
            raise InputError(f"{option} {what} an input of this command ({path}); it would be replaced", output,
                             f"choose another {option}")
    if folder and Path(os.path.realpath(".")).is_relative_to(real):
        raise InputError(f"{option} holds the current folder; it would be replaced", output,
                         f"choose another {option}")
    return output


def check_replaceable_folder(folder: str | Path, own: Callable[[Path], bool], option: str) -> Path:
    """Check that a folder a command replaces as a whole holds nothing but that command's earlier outputs
    (``own(path relative to the folder)`` true for every file and subfolder in it); missing or empty is fine.

    Raises
    ------
    InputError
        Naming the first file the command did not write.
    """
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise InputError(f"{option} is {'a link' if folder.is_symlink() else 'a file'}, not a folder this command "
                         "wrote", folder, f"choose another {option}")
    if not folder.exists():
        return folder
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            rel = (Path(root) / name).relative_to(folder)
            if not own(rel) or (Path(root) / name).is_symlink():
                raise InputError(f"{option} holds files this command did not write (e.g. {rel}); it would replace "
                                 "the whole folder", folder, f"choose another {option}, or move those files away")
    return folder


_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")


def temporary_sibling(path: Path) -> Path:
    """A unique hidden name next to ``path`` for writing before the final rename:
    ``.<name>.tmp-<pid>-<random>`` (the process id lets later runs sweep what a killed run left)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries that killed runs left in ``folder`` (their process no longer exists).

    Returns
    -------
    list of Path
        What was deleted.
    """
    swept = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return swept
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            remove(entry)
            swept.append(entry)
    if swept:
        logger.info("removed %d unfinished temporaries of interrupted runs in %s", len(swept), folder)
    return swept


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    Works for files and folders (Zarr stores). An existing ``path`` is replaced only
    after the new one is complete. On an exception the temporary is deleted; what a killed
    run left in the folder is swept first (:func:`sweep_temporaries`).
    """
    path = Path(path)
    sweep_temporaries(path.parent if str(path.parent) else Path("."))
    tmp = temporary_sibling(path)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    replace(tmp, path)


def replace(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``, replacing a file or folder already there."""
    if dst.is_dir() and not dst.is_symlink():
        old = temporary_sibling(dst)
        os.replace(dst, old)
        os.replace(src, dst)
        remove(old)
    else:
        os.replace(src, dst)


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
