"""Where dask computations run: local threads (default) or a dask.distributed cluster."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask

from isonet_pl.errors import InputError

logger = logging.getLogger(__name__)


def usable_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def dask_context(ncpu: int | None = None, scheduler: str | None = None) -> Iterator[None]:
    """Run the dask computations inside on ``ncpu`` local threads, or on the cluster at ``scheduler``.

    Parameters
    ----------
    ncpu : int, optional
        Local worker threads (default: all usable cores).
    scheduler : str, optional
        Address of a ``dask.distributed`` scheduler (``tcp://host:8786``).
    """
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--dask_scheduler needs the `distributed` package",
                             fix="pip install distributed") from None
        try:
            client = Client(scheduler, timeout="10s", set_as_default=False)
        except Exception as exc:  # OSError, TimeoutError, ValueError of a bad address...
            raise InputError(f"cannot reach the dask scheduler at {scheduler} ({exc.__class__.__name__}: {exc})",
                             fix="check --dask_scheduler (e.g. tcp://host:8786) and that the scheduler runs") \
                from None
        logger.info("running on the dask cluster at %s (%d workers)", scheduler,
                    len(client.scheduler_info().get("workers", {})))
        try:
            with dask.config.set(scheduler=client):
                yield
        finally:
            client.close()
        return
    with dask.config.set(scheduler="threads", num_workers=ncpu or usable_cpus()):
        yield


@contextlib.contextmanager
def progress_bar(enabled: bool, label: str = "") -> Iterator[None]:
    """dask's progress bar around the main computation of a step (local schedulers only), with ``label``
    (e.g. the tomogram and its place in the run) and the time left; in a log file (no terminal) it is
    redrawn every 10 s instead of 5 times a second."""
    if not enabled or not isinstance(dask.config.get("scheduler", None), str):
        yield
        return
    import sys
    import threading
    from timeit import default_timer

    from dask.diagnostics import ProgressBar
    from dask.utils import format_time

    class Bar(ProgressBar):
        # dask's bar sleeps dt between redraws and joins that thread at the end: with dt 10 s every computation
        # waited up to 10 s more in a log file (a whole tile's worth of prediction); here the wait is cut short
        def _start(self, dsk):
            self._stop = threading.Event()
            super()._start(dsk)

        def _timer_func(self):
            while self._running:
                elapsed = default_timer() - self._start_time
                if elapsed > self._minimum:
                    self._update_bar(elapsed)
                self._stop.wait(self._dt)

        def _finish(self, dsk, state, errored):
            self._running = False
            self._stop.set()
            super()._finish(dsk, state, errored)

        def _draw_bar(self, frac, elapsed):
            left = f", about {format_time(elapsed * (1 - frac) / frac)} left" if 0.02 < frac < 1 else ""
            bar = "#" * int(self._width * frac)
            head = f"{label}: " if label else ""
            msg = f"\r{head}[{bar:<{self._width}}] {int(100 * frac)}% | {format_time(elapsed)}{left}"
            with contextlib.suppress(ValueError):
                if self._file is not None:
                    self._file.write(msg)
                    self._file.flush()

    with Bar(minimum=2.0, dt=0.2 if sys.stdout.isatty() else 10.0, width=30):
        yield
