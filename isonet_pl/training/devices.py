"""Devices of refine: Lightning accelerator/devices/strategy from the settings, and the DDP rank."""

from __future__ import annotations

import logging
import os

import torch

from isonet_pl.config import RefineConfig
from isonet_pl.errors import InputError

logger = logging.getLogger(__name__)


def resolve_devices(cfg: RefineConfig) -> dict:
    """Lightning's accelerator, devices and strategy from gpuID / accelerator / devices."""
    has_gpu = torch.cuda.is_available()
    if cfg.gpuID:
        ids = sorted({int(g) for g in str(cfg.gpuID).replace(" ", "").split(",") if g != ""})
        if not has_gpu:
            logger.warning("--gpuID %s given but no CUDA device is visible: training on the CPU", cfg.gpuID)
            accelerator, devices = "cpu", 1
        else:
            if max(ids) >= torch.cuda.device_count():
                raise InputError(f"--gpuID {cfg.gpuID}: only {torch.cuda.device_count()} GPU(s) visible",
                                 fix="choose existing GPU ids (see isonet-pl check)")
            accelerator, devices = "gpu", ids
    else:
        accelerator = cfg.accelerator
        if accelerator == "auto":
            accelerator = "gpu" if has_gpu else "cpu"
        if accelerator == "gpu" and not has_gpu:
            raise InputError("--accelerator gpu but no CUDA device is visible", fix="use --accelerator cpu")
        if accelerator == "cpu" and cfg.devices is None:
            logger.warning("no GPU: training on the CPU (slow for the default network; see README)")
        devices = cfg.devices or (torch.cuda.device_count() if accelerator == "gpu" else 1)
    count = len(devices) if isinstance(devices, list) else int(devices)
    strategy = "ddp" if count * cfg.num_nodes > 1 else "auto"
    return {"accelerator": accelerator, "devices": devices, "strategy": strategy, "count": count * cfg.num_nodes}


def dist_info():
    """(rank, world size) of the running torch.distributed group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def launch_rank() -> int:
    """This process's global rank as set by its launcher (Lightning's DDP, torchrun, SLURM); 0 if none."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        if os.environ.get(name, "0") not in ("", "0"):
            return int(os.environ[name])
    return 0
