"""Exceptions that the command line turns into one clear line and a non-zero exit code."""

from __future__ import annotations

from pathlib import Path


class IsoNetError(Exception):
    """Base class of the errors isonet-pl reports to users without a traceback."""


class InputError(IsoNetError):
    """Bad input: a file, a STAR row or a setting that cannot be used.

    Parameters
    ----------
    problem : str
        What is wrong, e.g. ``"not an MRC file"``.
    path : str or Path, optional
        The offending file; named first in the message.
    fix : str, optional
        What the user should do about it.
    """

    def __init__(self, problem: str, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        msg = problem if self.path is None else f"{self.path}: {problem}"
        if fix:
            msg = f"{msg}; {fix}"
        super().__init__(msg)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or the GUI's cancel) during a run, with what to do next (e.g. the command that resumes it).

    Parameters
    ----------
    message : str
        The line shown to the user.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
