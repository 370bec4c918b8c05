"""Background jobs: ``isonet-pl`` commands run one at a time in subprocesses.

Each job runs ``python -m isonet_pl.cli.runner EXIT_FILE COMMAND ARGS...`` (the CLI, which
then writes its exit code to ``<id>.exit``) in the project folder, in its own process
group (so cancelling stops its worker processes too), with stdout and stderr going to
``<project>/.isonet_gui/jobs/<id>.log``. Its record (command line, state, times, process
id, exit code, error line) is kept next to the log as ``<id>.json``, so the job list
survives a restart of the GUI. States: queued, running, done, failed, cancelled.

One GUI serves a project at a time: the queue holds an exclusive lock on
``.isonet_gui/lock`` for its lifetime (released by the system even if the GUI is killed),
so job ids cannot collide and two GUIs never run jobs side by side. A job still running
when its GUI was killed is adopted by the next one: it is shown as running, nothing else
starts until it ends, and its exit code is read from its ``.exit`` file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from isonet_pl.errors import IsoNetError

logger = logging.getLogger(__name__)

QUEUED, RUNNING, STOPPING, DONE, FAILED, CANCELLED = "queued", "running", "stopping", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
#: Seconds between the polite stop (SIGINT, as Ctrl-C: refine saves and prints how to resume) and SIGKILL of a
#: cancelled job; the job shows "stopping" meanwhile.
KILL_AFTER = 120.0
_PERCENT = re.compile(r"(\d{1,3})(?:\.\d+)?%")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Job:
    """One command run by the GUI.

    Attributes
    ----------
    id : str
        Zero-padded sequence number (``"0007"``), also the name of its log file.
    argv : list of str
        The ``isonet-pl`` command line (without the program name).
    state : str
        queued, running, done, failed or cancelled.
    created, started, finished : float or None
        Unix times.
    returncode : int or None
        The exit code of the finished process.
    error : str or None
        The CLI's error line of a failed job (``Error: ...``).
    """

    id: str
    argv: list[str]
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    returncode: int | None = None
    error: str | None = None
    pid: int | None = None

    @property
    def command(self) -> str:
        """The subcommand, e.g. ``deconv``."""
        return self.argv[0]


def last_line(text: str) -> str:
    """The last non-empty line of a log; carriage returns (progress bars) end lines too, ANSI codes go."""
    for line in reversed(re.split(r"[\r\n]", _ANSI.sub("", text))):
        if line.strip():
            return line.strip()
    return ""


def progress_of(line: str) -> float | None:
    """The completed fraction a progress line shows (``45%|###`` of tqdm or dask), if any."""
    found = _PERCENT.findall(line)
    return min(int(found[-1]), 100) / 100 if found else None


def error_line(text: str) -> str | None:
    """The CLI's one-line error (``Error: ...``) in a log, the last one if several."""
    lines = [line.strip() for line in re.split(r"[\r\n]", text) if line.strip().startswith("Error:")]
    return lines[-1] if lines else None


class JobQueue:
    """Runs jobs one at a time, in the order they were submitted, in a worker thread.

    Parameters
    ----------
    project : Path
        The folder the commands run in; records and logs go to ``.isonet_gui/jobs`` in it.
    on_finish : callable, optional
        Called with each job once it has finished.
    """

    def __init__(self, project: Path, on_finish=None):
        self.project = Path(project)
        self.folder = self.project / ".isonet_gui" / "jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_project(self.project / ".isonet_gui" / "lock")
        self._jobs: dict[str, Job] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelled: set[str] = set()
        self._wake = threading.Condition()
        self._stopped = False
        self._on_finish = on_finish
        with self._wake:  # finishing an adopted job that ended meanwhile notifies waiters
            self._load()
        self._worker = threading.Thread(target=self._run_forever, name="isonet-gui-jobs", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ records
    def _load(self) -> None:
        """Read the records of earlier sessions. A job still running (its GUI was killed) is adopted;
        other unfinished ones count as cancelled."""
        for path in sorted(self.folder.glob("*.json")):
            try:
                job = Job(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                logger.warning("ignoring unreadable job record %s", path)
                continue
            if job.state in (RUNNING, STOPPING) and self._alive(job):
                logger.warning("job %s (pid %d) is still running from an earlier GUI; waiting for it", job.id,
                               job.pid)
            elif job.state not in FINISHED:
                self._finish_orphan(job)
            self._jobs[job.id] = job

    def exit_path(self, job_id: str) -> Path:
        """The file a job's process writes its exit code to."""
        return self.folder / f"{job_id}.exit"

    def _alive(self, job: Job) -> bool:
        """Whether the process of a running job still runs (checked by its command line where possible)."""
        if not job.pid:
            return False
        try:
            os.kill(job.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        cmdline = Path(f"/proc/{job.pid}/cmdline")
        return not cmdline.exists() or str(self.exit_path(job.id)).encode() in cmdline.read_bytes()

    def _finish_orphan(self, job: Job) -> None:
        """Record the end of a job whose GUI ended before it: its exit code if it wrote one."""
        try:
            code = int(self.exit_path(job.id).read_text())
        except (OSError, ValueError):
            job.state, job.error, job.finished = CANCELLED, "stopped when the GUI closed", time.time()
            self._save(job)
            return
        cancelled = code == 130 or job.id in self._cancelled
        error = error_line(self.tail(job.id)) if code and not cancelled else None
        self._finish(job, DONE if code == 0 else CANCELLED if cancelled else FAILED, code, error)

    def _save(self, job: Job) -> None:
        path = self.folder / f"{job.id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, path)

    def log_path(self, job_id: str) -> Path:
        """The log file of a job."""
        return self.folder / f"{job_id}.log"

    # ------------------------------------------------------------------ public API
    def submit(self, argv: list[str]) -> Job:
        """Queue ``isonet-pl ARGV`` (already validated) and return its job."""
        with self._wake:
            number = max((int(j) for j in self._jobs), default=0) + 1
            job = Job(id=f"{number:04d}", argv=list(argv))
            self._jobs[job.id] = job
            self._save(job)
            self._wake.notify_all()
        logger.info("job %s queued: isonet-pl %s", job.id, " ".join(argv))
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """All jobs, newest first."""
        return sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)

    def read_log(self, job_id: str, offset: int = 0, limit: int = 1 << 20) -> tuple[str, int]:
        """Log text of a job from byte ``offset`` (at most ``limit`` bytes), and the offset after it."""
        path = self.log_path(job_id)
        if not path.exists():
            return "", offset
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(limit)
        return data.decode("utf-8", errors="replace"), offset + len(data)

    def tail(self, job_id: str, size: int = 4096) -> str:
        """The last ``size`` bytes of a job's log."""
        path = self.log_path(job_id)
        if not path.exists():
            return ""
        start = max(path.stat().st_size - size, 0)
        return self.read_log(job_id, start, size)[0]

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job, or stop a running one (SIGINT to its group, SIGKILL after a while)."""
        with self._wake:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED:
                return job
            self._cancelled.add(job_id)
            if job.state == QUEUED:
                self._finish(job, CANCELLED, None, None)
                return job
            proc = self._procs.get(job_id)
            job.state = STOPPING
            self._save(job)
        if proc is not None:
            threading.Thread(target=_stop, args=(proc.pid, proc.wait), daemon=True).start()
        elif job.pid and self._alive(job):  # adopted from an earlier GUI
            threading.Thread(target=_stop, args=(job.pid, None), daemon=True).start()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job has finished (or ``timeout`` seconds passed); return it."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            while self._jobs[job_id].state not in FINISHED:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._wake.wait(left)
            return self._jobs[job_id]

    def shutdown(self) -> None:
        """Cancel queued and running jobs, stop the worker and release the project."""
        for job in self.jobs():
            if job.state not in FINISHED:
                self.cancel(job.id)
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        self._worker.join(timeout=KILL_AFTER + 5)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # ------------------------------------------------------------------ worker
    def _next(self) -> Job | None:
        with self._wake:
            while not self._stopped:
                adopted = [j for j in self._jobs.values() if j.state in (RUNNING, STOPPING) and j.id not in self._procs]
                if adopted:  # a job of an earlier GUI: wait for it, polling
                    for job in adopted:
                        if not self._alive(job):
                            self._finish_orphan(job)
                    self._wake.wait(1.0)
                    continue
                queued = [j for j in self._jobs.values() if j.state == QUEUED]
                if queued:
                    return min(queued, key=lambda j: j.id)
                self._wake.wait()
            return None

    def _run_forever(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._run(job)
            except Exception as exc:  # a job that cannot even start must not stop the queue
                logger.exception("job %s could not run", job.id)
                with self._wake:
                    self._finish(job, FAILED, None, f"Error: the job could not start ({exc})")

    def _run(self, job: Job) -> None:
        cmd = [sys.executable, "-m", "isonet_pl.cli.runner", str(self.exit_path(job.id)), *job.argv]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self._wake, open(self.log_path(job.id), "ab") as log:
            if job.state != QUEUED:  # cancelled between being picked and started
                return
            log.write(f"$ isonet-pl {' '.join(job.argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, cwd=self.project, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            self._procs[job.id] = proc
            job.state, job.started, job.pid = RUNNING, time.time(), proc.pid
            self._save(job)
        code = proc.wait()
        with self._wake:
            self._procs.pop(job.id, None)
            if job.id in self._cancelled:
                self._finish(job, CANCELLED, code, self._stopped_note(job, code))
            elif code == 0:
                self._finish(job, DONE, code, None)
            else:
                error = error_line(self.tail(job.id)) or f"Error: the command ended with exit code {code}"
                self._finish(job, FAILED, code, error)

    def _stopped_note(self, job: Job, code: int | None) -> str | None:
        """What a stopped job tells the user: for refine, the command that resumes it (also written to its log
        when the job had to be killed and could not print it itself)."""
        resume = resume_command(job.argv)
        if resume is None:
            return None
        if code == -signal.SIGKILL:
            with open(self.log_path(job.id), "a") as log:
                log.write(f"\nStopped by force after {KILL_AFTER:.0f} s. Resume with: {resume}\n")
        return f"Stopped; resume with: {resume}"

    def _finish(self, job: Job, state: str, code: int | None, error: str | None) -> None:
        """Record the end of a job (call with the lock held) and wake waiters."""
        job.state, job.returncode, job.error, job.finished = state, code, error, time.time()
        self._save(job)
        self._wake.notify_all()
        logger.info("job %s %s: isonet-pl %s%s", job.id, state, " ".join(job.argv), f" ({error})" if error else "")
        if self._on_finish is not None:
            self._on_finish(job)


def resume_command(argv: list[str]) -> str | None:
    """The command that resumes a stopped refine job (its STAR file and result folder), None for other jobs."""
    if not argv or argv[0] != "refine":
        return None
    options = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    star = next((a for a in argv[1:] if not a.startswith("--")), "subtomo.star")
    folder = options.get("continue_from") or options.get("result_dir") or "results"
    return f"isonet-pl refine {star} --continue_from {folder}"


def _stop(pid: int, wait=None) -> None:
    """Stop a job's process group: SIGINT first (completed outputs are kept), SIGKILL if it lingers.

    ``wait(timeout=...)`` waits for our own child; without it (an adopted job) the group is polled.
    """
    for sig, grace in ((signal.SIGINT, KILL_AFTER), (signal.SIGKILL, None)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if grace is None:
            return
        if wait is not None:
            try:
                wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
        end = time.monotonic() + grace
        while time.monotonic() < end:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _lock_project(path: Path):
    """Hold an exclusive lock on ``path`` (one GUI per project); the open file keeps it.

    Raises
    ------
    IsoNetError
        When another GUI holds it.
    """
    import fcntl

    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        other = handle.read().strip()
        handle.close()
        raise IsoNetError(f"{path.parent.parent}: another isonet-pl GUI serves this project ({other or 'pid ?'}); "
                          "use its page, or stop it first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle
