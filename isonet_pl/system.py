"""What ``isonet-pl check`` reports: versions of the stack, CPU threads and features, CUDA devices."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo, else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    """Where isonet-pl keeps what it measured about this machine: ``$ISONET_PL_CACHE``, else
    ``$XDG_CACHE_HOME/isonet-pl``, else ``~/.cache/isonet-pl`` (not created here)."""
    if os.environ.get("ISONET_PL_CACHE"):
        return Path(os.environ["ISONET_PL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "isonet-pl"


def huge_pages() -> str:
    """Whether torch's large CPU tensors get transparent huge pages (``isonet_pl.heap.use_huge_pages``)."""
    mode_file = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode_file.exists():
        return "not available on this system"
    text = mode_file.read_text()
    mode = text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()
    asked = os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"
    used = mode == "always" or (mode == "madvise" and asked)
    return (f"{'on' if used else 'off'} (kernel mode {mode}, THP_MEM_ALLOC_ENABLE "
            f"{os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')})")


def system_report() -> dict:
    """Python, OS, CPU threads (usable by this process) and features, torch threads and CUDA devices."""
    import torch

    from isonet_pl.predict.predictor import native_bf16

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
        "cpu_bf16": {True: "yes", False: "no", None: "unknown"}[native_bf16()],
        "huge_pages": huge_pages(),
        "machine_cache": str(cache_dir()),
        "torch_cuda_build": torch.version.cuda or "none (CPU build)",
        "cuda_devices": cuda,
        "packages": package_versions(),
    }
