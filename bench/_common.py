"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (VmHWM: unlike ru_maxrss, it excludes the parent before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
