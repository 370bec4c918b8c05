"""The GUI's job runner: ``python -m isonet_pl.cli.runner EXIT_FILE ARGV...`` runs ``isonet-pl ARGV`` and
writes its exit code to EXIT_FILE, so a GUI started later can tell how a job it adopted ended (beside the CLI:
the GUI starts it by name and imports nothing of the CLI)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def run_job(exit_file: str, argv: list[str]) -> int:
    """Run the CLI with ``argv`` and write its exit code to ``exit_file`` (atomically); return it."""
    from isonet_pl.cli.main import main

    code = 1
    try:
        code = main(argv)
    finally:
        tmp = Path(f"{exit_file}.tmp")
        tmp.write_text(str(code))
        os.replace(tmp, exit_file)
    return code


if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1], sys.argv[2:]))
