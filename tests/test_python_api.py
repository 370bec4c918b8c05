"""The Python API: every name ``isonet_pl.workflows`` exports imports, and the documented example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_every_exported_workflow_imports():
    """isonet_pl.workflows.run_demo raised ModuleNotFoundError."""
    import isonet_pl.workflows as w

    assert all(callable(getattr(w, name)) for name in w.__all__)
    import isonet_pl.workflows.deconv  # noqa: F401 (a submodule named like its function, imported first)
    from isonet_pl.workflows import deconv

    assert deconv.__name__ == "deconv" and callable(deconv)
    with pytest.raises(AttributeError):
        w.no_such_command  # noqa: B018


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path, monkeypatch):
    """docs/python-api.md's example, run as written, on a small simulated tomogram with small settings."""
    import shutil

    import torch

    from isonet_pl.config import SimulateConfig
    from isonet_pl.workflows.simulate import simulate

    torch.set_num_threads(1)
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    simulate(tmp_path / "sim", SimulateConfig(shape=(48, 96, 96), defocus=30000, seed=3))
    shutil.copytree(tmp_path / "sim" / "tomos", tmp_path / "tomos")
    smoke = Path(__file__).resolve().parents[1] / "conf" / "smoke.yaml"
    (tmp_path / "settings.yaml").write_text(smoke.read_text())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102
    assert Path(namespace["model"]).exists()
    assert any(Path("corrected_tomos").glob("*_corrected.mrc"))
