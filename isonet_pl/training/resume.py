"""Resume state of refine: what is saved after each iteration and epoch, and where a run continues."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from isonet_pl.config import RefineConfig
from isonet_pl.errors import InputError
from isonet_pl.io.paths import atomic_path
from isonet_pl.model.checkpoint import load_module, read_checkpoint

logger = logging.getLogger(__name__)


#: settings a resumed run takes from the call (when given explicitly) instead of its saved settings
RESUME_SETTINGS = ("iterations", "gpuID", "accelerator", "devices", "num_nodes", "preprocessing_ncpus",
                   "remove_intermediate", "log_level")


STATE = "state"  # sub-folder of result_dir with the resume state

#: settings added after runs may have started, with the value such a run used: a run saved without them resumes
#: as it began
ADDED_SETTINGS = {"max_shift": 0, "input_noise": 1.0}


def _saved_settings(payload: dict) -> RefineConfig:
    """The RefineConfig of saved settings, with :data:`ADDED_SETTINGS` filled in where they are missing."""
    return RefineConfig.model_validate({**ADDED_SETTINGS, **payload})


def save_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))


def resume_point(cfg: RefineConfig) -> tuple[RefineConfig, int]:
    """Settings and last completed iteration of a run given by ``continue_from``.

    The run continues in the folder given (or the folder of the JSON file given), wherever it
    now lies: its saved ``result_dir`` is replaced by it, so a copied or renamed run folder
    resumes in place and never writes into the original.
    """
    saved, done = saved_run(cfg)
    src = Path(cfg.continue_from)
    folder = src if src.is_dir() else src.parent
    return saved.model_copy(update={"result_dir": str(folder)}), done


def saved_run(cfg: RefineConfig) -> tuple[RefineConfig, int]:
    src = Path(cfg.continue_from)
    if not src.exists():
        raise InputError("does not exist", src, "give the result_dir of a refine run (or one of its "
                         "refine_iterNN.json)")
    if src.is_dir():
        found = sorted(src.glob("refine_iter*.json"))
        src = found[-1] if found else src / "none.json"
        if not found:  # killed during the first iteration: restart it from its epoch checkpoint
            saved = Path(cfg.continue_from) / STATE / "settings.json"
            if not saved.exists():
                raise InputError("no refine_iterNN.json or saved settings in this folder", cfg.continue_from,
                                 "give the result_dir of a refine run")
            return _saved_settings(json.loads(saved.read_text())), 0
    try:
        payload = json.loads(src.read_text())
        saved = _saved_settings(payload["settings"])
        done = int(payload["iteration"])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"not a refine_iterNN.json of isonet-pl ({exc.__class__.__name__})", src,
                         "give a refine_iterNN.json or the result_dir") from None
    return saved, done


def check_fresh_result_dir(folder: Path) -> None:
    """Refuse a result folder that holds another refine run (its checkpoints, settings or state)."""
    if not folder.is_dir():
        return
    found = [p.name for p in (*folder.glob("refine_iter*.json"), *folder.glob("model_iter*.ckpt"),
                              folder / STATE / "settings.json") if p.exists()]
    if found:
        raise InputError(f"holds another refine run ({found[0]})", folder,
                         f"resume it with --continue_from {folder}, or choose another --result_dir (or delete it)")


def epoch_checkpoint(state: Path, it: int, epochs: int) -> Path | None:
    """The epoch checkpoint of iteration ``it`` left by a killed run, if any."""
    path = state / "epoch.ckpt"
    if not path.exists():
        return None
    try:
        epoch = int(read_checkpoint(path)["epoch"])
    except InputError as exc:  # a crafted or damaged file: never loaded, the iteration restarts from its start
        logger.warning("%s; iteration %d starts again from its beginning", exc, it)
        return None
    except (KeyError, TypeError, ValueError):
        return None
    if (it - 1) * epochs <= epoch < it * epochs:
        logger.info("resuming iteration %d from its epoch checkpoint (epoch %d)", it, epoch + 1)
        return path
    return None


def cleanup(state: Path, it: int, remove_intermediate: bool) -> None:
    """Drop the estimates of older iterations (all but the latest when remove_intermediate)."""
    for path in state.glob("estimates_iter*.npy"):
        n = int(path.stem.removeprefix("estimates_iter"))
        if n < it and (remove_intermediate or n < it - 1):
            path.unlink()


def starting_point(cfg: RefineConfig, subs, result_dir: Path, done: int, method: str, batch: int,
                   renormalize: bool):
    """(module, estimates, previous checkpoint) a run starts from: after ``done`` iterations, the saved model and
    its subtomogram estimates (predicted again when they were not kept: a finished run does not predict after
    its last iteration); else a new network, or the weights of ``--pretrained_model``, with the first estimates.

    Raises
    ------
    InputError
        When the checkpoint or the saved estimates cannot be read.
    """
    import numpy as np
    import torch

    from isonet_pl.training import estimates, setup

    if done:
        previous = result_dir / f"model_iter{done:02d}.ckpt"
        saved = result_dir / STATE / f"estimates_iter{done:02d}.npy"
        try:
            module = load_module(previous)
            current = np.load(saved) if saved.exists() else None
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot resume after iteration {done} ({exc.__class__.__name__}: {exc})", result_dir,
                             "the checkpoint or the saved estimates are damaged; resume from an earlier "
                             "refine_iterNN.json") from None
        if current is None:
            logger.info("predicting the subtomograms with the model of iteration %d (its estimates were not kept)",
                        done)
            current = estimates.predict_all(module, estimates.originals(subs, method), batch, torch.device("cpu"),
                                            cfg.precision, renormalize)
        return module, current, previous
    module = setup.build_module(cfg, subs)
    if cfg.pretrained_model:
        setup.load_pretrained(module, cfg.pretrained_model)
        return module, estimates.predict_all(module, estimates.originals(subs, method), batch, torch.device("cpu"),
                                             renormalize=renormalize), None
    return module, estimates.first_estimates(subs, method, renormalize), None
