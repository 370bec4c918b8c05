"""The Python API: one function per ``isonet-pl`` command (paths and settings in, files out).

Imported lazily, so that ``import isonet_pl.workflows`` (and the command line) does not
load torch or dask until a command needs them.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "prepare_star": "prepare",
    "prepare_subtomo_star": "prepare",
    "simulate": "simulate",
    "convert": "convert",
    "deconv": "deconv",
    "make_mask": "mask",
    "extract": "extract",
    "refine": "refine",
    "predict": "predict",
    "run_demo": "demo",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"isonet_pl.workflows.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'isonet_pl.workflows' has no attribute {name!r}")
