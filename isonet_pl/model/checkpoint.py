"""Reading checkpoints safely: weights and plain values only, never code.

A ``.ckpt`` file is a Python pickle; loaded with ``weights_only=False`` it can run any code its
author put in it (a "pretrained model" from a colleague or a download would be a program). Every
checkpoint isonet-pl reads (``predict``'s model, ``refine --pretrained_model`` and
``--continue_from``, the epoch checkpoints a killed run left) goes through :func:`read_checkpoint`
or :func:`load_module`, which load with ``weights_only=True``: tensors, numbers, strings, lists and
dicts only. Our checkpoints hold nothing else (their ``meta`` is converted to plain types when
saved); anything that would build another object is refused before it is built.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from isonet_pl.errors import InputError

__all__ = ["read_checkpoint", "load_module", "WEIGHTS_ONLY"]

#: How every checkpoint is loaded (also passed to Lightning when a run resumes from one).
WEIGHTS_ONLY = True
_REFUSED = ("it holds Python objects besides weights and plain values (a checkpoint of another program, or a file "
            "crafted to run code); it was not loaded and nothing in it was run")


def _refusal(exc: Exception, path: Path, fix: str) -> InputError:
    if isinstance(exc, pickle.UnpicklingError) and "global" in str(exc).lower():  # an object to build: refused
        return InputError(_REFUSED, path, fix)
    return InputError(f"not an isonet-pl checkpoint ({exc.__class__.__name__})", path, fix)


def read_checkpoint(path: str | Path, fix: str = "give a model_iterNN.ckpt written by isonet-pl refine") -> dict:
    """The content of a checkpoint file as a dict, loaded with ``weights_only=True`` onto the CPU.

    Raises
    ------
    InputError
        When the file cannot be read as a checkpoint, or holds anything but tensors and plain values.
    """
    path = Path(path)
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=WEIGHTS_ONLY)
    except Exception as exc:
        raise _refusal(exc, path, fix) from None
    if not isinstance(payload, dict):
        raise InputError(f"not an isonet-pl checkpoint (it holds a {type(payload).__name__}, not a dict)", path, fix)
    return payload


def load_module(path: str | Path, fix: str = "give a model_iterNN.ckpt written by isonet-pl refine"):
    """An :class:`~isonet_pl.model.module.IsoNetModule` rebuilt from one of our checkpoints (on the CPU).

    Raises
    ------
    InputError
        As :func:`read_checkpoint`, and when the file is not one of our models.
    """
    from isonet_pl.model.module import IsoNetModule

    path = Path(path)
    try:
        return IsoNetModule.load_from_checkpoint(path, map_location="cpu", weights_only=WEIGHTS_ONLY)
    except Exception as exc:
        raise _refusal(exc, path, fix) from None
