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
    for line in _cpuinfo():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


#: CPU features that decide how fast float32 and bf16 convolutions run (x86 flags; ARM's "Features" names).
SPEED_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "avx512_fp16", "asimd", "sve", "sve2",
                  "bf16", "i8mm")


def cpu_features() -> str:
    """Which of :data:`SPEED_FEATURES` this CPU has (as Linux lists them), and oneDNN's ISA cap if set
    (``ONEDNN_MAX_CPU_ISA``): what, beside the model name, a measured speed depends on."""
    flags: set[str] = set()
    for line in _cpuinfo():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            flags.update(line.split(":", 1)[1].split())
    have = ",".join(f for f in SPEED_FEATURES if f in flags) or "unknown"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return have + (f"; isa cap {cap}" if cap else "")


def _cpuinfo() -> list[str]:
    """The lines of the first processor's entry in /proc/cpuinfo ([] where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return text.split("\n\n", 1)[0].splitlines()


def cache_dir() -> Path | None:
    """Where isonet-pl keeps what it measured about this machine: ``$ISONET_PL_CACHE``, else
    ``$XDG_CACHE_HOME/isonet-pl``, else ``~/.cache/isonet-pl`` (not created here); None where there is no
    home folder to put it in (then nothing is kept)."""
    if os.environ.get("ISONET_PL_CACHE"):
        return Path(os.environ["ISONET_PL_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "isonet-pl"
    try:
        return Path.home() / ".cache" / "isonet-pl"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (some batch jobs and containers)
        return None


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


def native_bf16() -> bool | None:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX); None where torch cannot say."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [check for check in checks if check is not None]
    return any(check() for check in checks) if checks else None


def system_report() -> dict:
    """Python, OS, CPU threads (usable by this process) and features, torch threads and CUDA devices."""
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
        "cpu_bf16": {True: "yes", False: "no", None: "unknown"}[native_bf16()],
        "huge_pages": huge_pages(),
        "machine_cache": str(cache_dir() or "none (no home folder: nothing measured is kept)"),
        "torch_cuda_build": torch.version.cuda or "none (CPU build)",
        "cuda_devices": cuda,
        "packages": package_versions(),
    }
