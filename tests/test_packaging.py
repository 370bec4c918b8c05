"""Packaging: every subpackage is listed in setup.cfg, so `pip install .` ships it."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_setup_cfg():
    """Each isonet_pl/**/__init__.py folder appears under [options] packages."""
    if not (ROOT / "setup.cfg").exists():
        pytest.skip("not a source checkout")
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "isonet_pl").rglob("__init__.py")}
    assert found <= listed, f"missing from setup.cfg: {sorted(found - listed)}"
    assert {"isonet_pl.cli", "isonet_pl.conf"} <= listed
