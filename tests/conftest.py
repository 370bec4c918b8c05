"""Shared fixtures: small seeded volumes written as MRC files, and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from isonet_pl.io.mrc import write_mrc

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when no CUDA device is present."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def machine_cache(tmp_path_factory):
    """Keep what the package caches about the machine (precision choices) out of the user's cache folder,
    also for the command lines the tests start."""
    import os

    os.environ["ISONET_PL_CACHE"] = str(tmp_path_factory.mktemp("machine_cache"))
    return Path(os.environ["ISONET_PL_CACHE"])


@pytest.fixture
def rng():
    """A seeded generator."""
    return np.random.default_rng(0)


@pytest.fixture
def volume(rng):
    """A float32 volume with ragged sizes (z, y, x) = (37, 70, 53)."""
    return rng.normal(size=(37, 70, 53)).astype(np.float32)


@pytest.fixture
def tomo_folder(tmp_path, rng):
    """A folder with two small tomograms (.mrc and .rec) and a non-tomogram file."""
    folder = tmp_path / "tomos"
    folder.mkdir()
    write_mrc(folder / "b_tomo.rec", rng.normal(size=(24, 40, 48)).astype(np.float32), voxel_size=10.0)
    write_mrc(folder / "a_tomo.mrc", rng.normal(size=(24, 40, 48)).astype(np.float32), voxel_size=10.0)
    (folder / "notes.txt").write_text("not a tomogram")
    return folder


@pytest.fixture
def reference():
    """The folder of IsoNet 0.2's reference outputs (skips if absent)."""
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is not present")
    return REFERENCE


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run ``isonet-pl ARGS`` in-process in a folder; return (exit code, stdout, stderr)."""
    from isonet_pl.cli.main import main

    def run(args: list[str], cwd: Path | None = None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
