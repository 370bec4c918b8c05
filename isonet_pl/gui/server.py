"""The GUI's web server: the page, its static files and a JSON API, on the standard library.

Every request needs the session's token, given as ``?token=...`` (the URL printed at
start-up, as Jupyter does) or as the cookie the first valid request sets (HttpOnly,
SameSite=Strict); anything else gets 403. The server binds to 127.0.0.1 unless told
otherwise, so other users of a shared machine can neither reach nor drive it.

API (paths in queries and bodies are relative to the project folder):

=======  ==========================  ====================================================
GET      /api/info                   project folder, version, whether ``3dmod`` is installed
GET      /api/schema                 the forms of the commands (:mod:`.forms`)
GET      /api/files?kind=            STAR files, checkpoints, MRC files or folders
GET/POST /api/star?path=             the tomogram table (:mod:`.tables`)
GET/POST /api/jobs                   the job list; submit ``{command, arguments, options}``
GET      /api/jobs/ID?offset=        a job and its log from byte ``offset``
POST     /api/jobs/ID/cancel         cancel or stop a job
GET      /api/losses?result_dir=     loss points of a refine run
GET      /api/volumes?star=          the volumes of each row of a STAR file
GET      /api/volume?path=&star=     shape and voxel size of a volume
GET      /api/slice?path=&star=&axis=&index=&overlay=   a slice as PNG
POST     /api/3dmod                  open ``{paths}`` in IMOD's 3dmod
=======  ==========================  ====================================================
"""

from __future__ import annotations

import http.cookies
import json
import logging
import mimetypes
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from isonet_pl import __version__
from isonet_pl.errors import IsoNetError
from isonet_pl.gui import forms, tables, viewer
from isonet_pl.gui.jobs import JobQueue, last_line, progress_of
from isonet_pl.io.star import relative_to

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
#: Folders the file lists skip: caches and hidden folders.
SKIP_DIRS = {"zarr", "__pycache__", "node_modules"}
FILE_KINDS = {"star": (".star",), "ckpt": (".ckpt",), "mrc": (".mrc", ".rec"), "mod": (".mod", ".txt")}
MAX_FILES, MAX_DEPTH = 500, 5


class GuiServer(ThreadingHTTPServer):
    """The HTTP server of one GUI session: its project folder, token and job queue.

    Parameters
    ----------
    project : Path
        The folder the GUI works in (commands run there; form paths are relative to it).
    host : str
        Interface to bind (127.0.0.1: this machine only).
    port : int
        Port; 0 picks a free one.
    """

    daemon_threads = True

    def __init__(self, project: Path, host: str = "127.0.0.1", port: int = 0):
        self.project = Path(project).resolve()
        if not self.project.is_dir():
            raise IsoNetError(f"{self.project}: project folder does not exist; create it or choose another")
        self.token = secrets.token_urlsafe(16)
        self.jobs = JobQueue(self.project)
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            self.jobs.shutdown()
            raise IsoNetError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.server_address[1]

    @property
    def url(self) -> str:
        """The address to open, with the token."""
        host = self.server_address[0]
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"http://{host}:{self.port}/?token={self.token}"

    @property
    def cookie_name(self) -> str:
        """The session cookie (one per port: cookies are shared by all ports of a host)."""
        return f"isonet_gui_{self.port}"

    def path(self, text: str | None, what: str = "path") -> Path:
        """A path from the page: relative to the project folder unless absolute."""
        if text is None or not str(text).strip():
            raise IsoNetError(f"Error: no {what} given")
        path = Path(str(text).strip()).expanduser()
        return path if path.is_absolute() else self.project / path

    def server_close(self) -> None:
        """Stop the jobs, then close the socket."""
        self.jobs.shutdown()
        super().server_close()


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the page, static files and the JSON API."""

    server: GuiServer
    protocol_version = "HTTP/1.1"

    # ------------------------------------------------------------------ plumbing
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        """Requests go to the debug log, not to stderr."""
        logger.debug("%s %s", self.address_string(), format % args)

    def _authorised(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(token valid, token came in the query)."""
        token = self.server.token
        given = query.get("token", [""])[0]
        if given and secrets.compare_digest(given, token):
            return True, True
        cookie = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        morsel = cookie.get(self.server.cookie_name)
        return bool(morsel and secrets.compare_digest(morsel.value, token)), False

    def _send(self, status: int, body: bytes, content_type: str, set_cookie: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if set_cookie:
            self.send_header("Set-Cookie", f"{self.server.cookie_name}={self.server.token}; Path=/; HttpOnly; "
                                           "SameSite=Strict")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any, status: int = HTTPStatus.OK, set_cookie: bool = False) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", set_cookie)

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _body(self) -> dict[str, Any]:
        if not self._raw:
            return {}
        try:
            data = json.loads(self._raw)
        except ValueError:
            raise IsoNetError("Error: the request is not valid JSON") from None
        if not isinstance(data, dict):
            raise IsoNetError("Error: expected a JSON object")
        return data

    def do_GET(self) -> None:  # noqa: N802 (the base class's name)
        """Serve a GET (or HEAD) request."""
        self._dispatch("GET")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        """Serve a POST request."""
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length else b""  # read even when refused: keep-alive
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        ok, in_query = self._authorised(query)
        if not ok:
            self._send(HTTPStatus.FORBIDDEN, b"403: open the URL with its token, as printed by isonet-pl gui\n",
                       "text/plain; charset=utf-8")
            return
        try:
            if url.path in ("/", "/index.html") and method == "GET":
                self._static("index.html", set_cookie=in_query)
            elif url.path.startswith("/static/") and method == "GET":
                self._static(url.path.removeprefix("/static/"))
            elif url.path.startswith("/api/"):
                self._api(method, url.path.removeprefix("/api/"), {k: v[-1] for k, v in query.items()},
                          set_cookie=in_query)
            else:
                self._error(HTTPStatus.NOT_FOUND, f"Error: no page {url.path}")
        except forms.FormError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except IsoNetError as exc:
            message = str(exc)
            self._error(HTTPStatus.BAD_REQUEST, message if message.startswith("Error:") else f"Error: {message}")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:
            logger.exception("request %s %s failed", method, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"Error: {exc.__class__.__name__}: {exc}")

    def _static(self, name: str, set_cookie: bool = False) -> None:
        if not re.fullmatch(r"[\w.-]+", name) or not (STATIC / name).is_file():
            self._error(HTTPStatus.NOT_FOUND, f"Error: no file {name}")
            return
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), ctype, set_cookie)

    # ------------------------------------------------------------------ API
    def _api(self, method: str, route: str, q: dict[str, str], set_cookie: bool) -> None:
        srv = self.server
        body = self._body() if method == "POST" else {}
        job_match = re.fullmatch(r"jobs/(\d+)(/cancel)?", route)
        if route == "info":
            self._json({"project": str(srv.project), "version": __version__,
                        "has_3dmod": shutil.which("3dmod") is not None}, set_cookie=set_cookie)
        elif route == "schema":
            self._json(forms.schema())
        elif route == "files":
            self._json(list_files(srv.project, q.get("kind", "star")))
        elif route == "star" and method == "GET":
            table = tables.load_table(srv.path(q.get("path"), "STAR file"))
            self._json({**table, "path": relative_to(table["path"], srv.project)})
        elif route == "star" and method == "POST":
            path = srv.path(body.get("path"), "STAR file")
            tables.save_table(path, list(body.get("columns") or []), list(body.get("rows") or []),
                              srv.project / ".isonet_gui")
            self._json({"saved": str(path)})
        elif route == "jobs" and method == "GET":
            self._json([job_json(srv.jobs, j) for j in srv.jobs.jobs()])
        elif route == "jobs" and method == "POST":
            argv = forms.command_line(str(body.get("command")), dict(body.get("arguments") or {}),
                                      dict(body.get("options") or {}))
            self._json(job_json(srv.jobs, srv.jobs.submit(argv)))
        elif job_match:
            self._job(job_match.group(1), bool(job_match.group(2)) and method == "POST", q)
        elif route == "losses":
            self._json(viewer.loss_points(srv.path(q.get("result_dir") or "results", "result folder")))
        elif route == "volumes":
            self._json(viewer.list_volumes(srv.path(q.get("star"), "STAR file"), srv.project))
        elif route == "volume":
            self._json(viewer.volume_info(srv.path(q.get("path"), "volume"), srv.path(q.get("star"), "STAR file")))
        elif route == "slice":
            overlay = srv.path(q["overlay"], "mask") if q.get("overlay") else None
            png = viewer.slice_png(srv.path(q.get("path"), "volume"), srv.path(q.get("star"), "STAR file"),
                                   q.get("axis", "z"), int(q.get("index") or 0), overlay)
            self._send(HTTPStatus.OK, png, "image/png")
        elif route == "3dmod" and method == "POST":
            self._json({"started": open_3dmod(srv.project, [srv.path(p) for p in body.get("paths") or []])})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"Error: no API {method} /api/{route}")

    def _job(self, job_id: str, cancel: bool, q: dict[str, str]) -> None:
        jobs = self.server.jobs
        job = jobs.cancel(job_id) if cancel else jobs.get(job_id)
        if job is None:
            self._error(HTTPStatus.NOT_FOUND, f"Error: no job {job_id}")
            return
        text, offset = jobs.read_log(job_id, int(q.get("offset") or 0))
        self._json({**job_json(jobs, job), "log": text, "offset": offset})


def job_json(jobs: JobQueue, job) -> dict[str, Any]:
    """A job as the page shows it: its record, the last log line and the progress it shows."""
    line = last_line(jobs.tail(job.id, 2048))
    return {**asdict(job), "last_line": line, "progress": progress_of(line) if job.state == "running" else None}


def list_files(project: Path, kind: str) -> list[str]:
    """Files of a kind (``star``, ``ckpt``, ``mrc``, ``mod``) or folders (``folder``) below the project.

    Hidden folders, Zarr stores and caches are skipped; at most :data:`MAX_FILES` paths,
    :data:`MAX_DEPTH` levels deep, relative to the project, sorted.
    """
    if kind != "folder" and kind not in FILE_KINDS:
        raise IsoNetError(f"Error: unknown file kind {kind!r}")
    found: list[str] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if len(found) >= MAX_FILES or entry.name.startswith("."):
                continue
            if entry.is_dir():
                if entry.name in SKIP_DIRS or entry.suffix == ".zarr":
                    continue
                if kind == "folder":
                    found.append(entry.relative_to(project).as_posix())
                if depth < MAX_DEPTH:
                    walk(entry, depth + 1)
            elif kind != "folder" and entry.suffix.lower() in FILE_KINDS[kind]:
                found.append(entry.relative_to(project).as_posix())

    walk(project, 1)
    return sorted(found)


def open_3dmod(project: Path, paths: list[Path]) -> bool:
    """Start IMOD's ``3dmod`` on ``paths`` (folders: their .mrc/.rec files) in the background.

    Returns False when 3dmod is not installed.
    """
    program = shutil.which("3dmod")
    if program is None:
        return False
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise IsoNetError(f"Error: {', '.join(missing)} does not exist")
    files = [f for p in paths for f in (sorted(p.glob("*.mrc")) + sorted(p.glob("*.rec")) if p.is_dir() else [p])]
    if not files:
        raise IsoNetError("Error: no .mrc or .rec file to open")
    subprocess.Popen([program, *map(str, files)], cwd=project, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return True


def _has_display() -> bool:
    """Whether a graphical browser can open (on Linux: X or Wayland is there).

    On a console or an SSH session, :mod:`webbrowser` would start a text browser in the terminal.
    """
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or
                                                        os.environ.get("WAYLAND_DISPLAY"))


def serve(project_dir: str | Path = ".", host: str = "127.0.0.1", port: int | None = None,
          open_browser: bool = True, announce: Callable[[str], None] | None = None) -> None:
    """Run the GUI in ``project_dir`` (made the current folder) until Ctrl-C; running jobs are then stopped.

    Parameters
    ----------
    project_dir : str or Path
        The folder the GUI works in.
    host : str
        Interface to listen on; the default, 127.0.0.1, admits this machine only.
    port : int, optional
        Port; None or 0 picks a free one.
    open_browser : bool
        Open the page in the default web browser (when there is a graphical display).
    announce : callable, optional
        Receives the lines that give the URL (default: the INFO log).
    """
    server = GuiServer(Path(project_dir), host, port or 0)
    os.chdir(server.project)  # as the jobs do: paths relative to the project resolve alike (RELION-5's too)
    announce = announce or logger.info
    announce(f"isonet-pl GUI for {server.project} at")
    announce(f"    {server.url}")
    announce("Open that URL in a browser (it holds the access token); Ctrl-C stops the GUI.")
    if open_browser and _has_display():
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping the GUI")
    finally:
        server.server_close()
