"""The Python API: one function per ``isonet-pl`` command (paths and settings in, files out).

Imported lazily, so that ``import isonet_pl.workflows`` (and the command line) does not
load torch or dask until a command needs them.
"""

from __future__ import annotations

import importlib
import sys
import types

_WHERE = {
    "prepare_star": "isonet_pl.workflows.prepare",
    "prepare_subtomo_star": "isonet_pl.workflows.prepare",
    "simulate": "isonet_pl.workflows.simulate",
    "convert": "isonet_pl.workflows.convert",
    "deconv": "isonet_pl.workflows.deconv",
    "make_mask": "isonet_pl.workflows.mask",
    "extract": "isonet_pl.workflows.extract",
    "refine": "isonet_pl.workflows.refine",
    "predict": "isonet_pl.workflows.predict",
    "run_demo": "isonet_pl.demo",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'isonet_pl.workflows' has no attribute {name!r}")


class _API(types.ModuleType):
    """This package, whose command names stay the functions: importing the submodule ``deconv`` (named like
    its function) would otherwise bind the module over the name, and ``from isonet_pl.workflows import deconv``
    would give a module once anything had imported it. The modules themselves: ``from
    isonet_pl.workflows.deconv import ...`` or ``importlib.import_module("isonet_pl.workflows.deconv")``."""

    def __setattr__(self, name: str, value) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _API
