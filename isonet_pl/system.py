"""What ``isonet-pl check`` reports: versions of the stack, CPU threads and CUDA devices."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

STACK = ("isonet-pl", "torch", "pytorch-lightning", "numpy", "scipy", "dask", "zarr", "mrcfile", "starfile",
         "click", "pydantic", "pandas")


def package_versions() -> dict[str, str]:
    """Installed version of each package of the stack ("missing" if absent)."""
    out = {}
    for name in STACK:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def system_report() -> dict:
    """Python, OS, CPU threads (usable by this process), torch threads and CUDA devices."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    cuda = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            cuda.append(f"{i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_cuda_build": torch.version.cuda or "none (CPU build)",
        "cuda_devices": cuda,
        "packages": package_versions(),
    }
