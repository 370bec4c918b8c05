"""The Python API: one function per ``isonet-pl`` command (paths and settings in, files out)."""

from isonet_pl.workflows.demo import run_demo
from isonet_pl.workflows.prepare import prepare_star, prepare_subtomo_star
from isonet_pl.workflows.simulate import simulate

__all__ = ["prepare_star", "prepare_subtomo_star", "simulate", "run_demo"]
