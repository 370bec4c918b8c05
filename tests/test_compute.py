"""The dask helpers: the progress bar of long computations."""

from __future__ import annotations

import time

import dask
import dask.array as da

from isonet_pl.compute import dask_context, progress_bar


def test_progress_bar_in_a_log_file_does_not_hold_the_computation(capsys):
    """Without a terminal the bar is redrawn every 10 s; the end of a computation must not wait for the next
    redraw (it did: up to 10 s more per computation, e.g. per tomogram written). Not a speed test: the bound
    is the redraw interval, the expected time about nothing."""
    with dask_context(1):
        assert isinstance(dask.config.get("scheduler", None), str)
        t0 = time.perf_counter()
        with progress_bar(True, "test"):
            da.ones((8, 8), chunks=4).sum().compute()
        assert time.perf_counter() - t0 < 5.0
