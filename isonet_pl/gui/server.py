"""The GUI's web server: the page, its static files and a JSON API, on the standard library.

Every request needs the session's token, given as ``?token=...`` (the URL printed at
start-up, as Jupyter does) or as the cookie the first valid request sets (HttpOnly,
SameSite=Strict, named after the port); anything else gets 403. The server binds to
127.0.0.1 unless told otherwise, so other users of a shared machine can neither reach nor
drive it. As cookies do not separate the ports of a host, other local pages are kept out
as Jupyter does:

- a ``Host`` header that is not this server's address (an IP literal, ``localhost`` or
  this machine's name, with this port) is refused (403): no DNS rebinding;
- a request whose ``Origin`` (or, without one, ``Referer``) is another origin is refused
  (403);
- a POST needs ``Content-Type: application/json`` (415 otherwise: no CORS-simple
  request gets through) and the session's CSRF token in the ``X-IsoNet-CSRF`` header,
  which only the page itself holds (403 otherwise);
- bodies are read only after the token was checked, at most :data:`MAX_BODY` bytes
  (413); a malformed ``Content-Length`` gets 400.

Paths are confined: the page writes only ``.star`` tables inside the project folder, and
reads only files inside it or volumes that its STAR tables reference (403 otherwise).
GET requests never write.

API (paths in queries and bodies are relative to the project folder):

=======  ==========================  ====================================================
GET      /api/info                   project folder, version, whether ``3dmod`` is installed
GET      /api/schema                 the forms of the commands (:mod:`.forms`)
GET      /api/files?kind=            STAR files, checkpoints, MRC files or folders
GET      /api/models                 refine's models, newest first
GET/POST /api/star?path=             the tomogram table (:mod:`.tables`)
GET/POST /api/jobs                   the job list; submit ``{command, arguments, options}``
GET      /api/jobs/ID?offset=        a job and its log from byte ``offset``
POST     /api/jobs/ID/cancel         cancel or stop a job
GET      /api/losses?result_dir=     loss points of a refine run
GET      /api/volumes?star=          the volumes of each row of a STAR file
GET      /api/volume?path=&star=     shape and voxel size of a volume
GET      /api/slice?path=&star=&axis=&index=&overlay=&low=&high=&slab=   a slice as PNG
POST     /api/3dmod                  open ``{paths}`` in IMOD's 3dmod
=======  ==========================  ====================================================
"""

from __future__ import annotations

import http.cookies
import ipaddress
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import shutil
import signal
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
#: Largest request body accepted (bytes): a big tomogram table is a few hundred kB.
MAX_BODY = 8 << 20
CSRF_HEADER = "X-IsoNet-CSRF"
_CSRF_PLACEHOLDER = b"{{CSRF_TOKEN}}"


class Refused(IsoNetError):
    """A request the server refuses (its status and the message shown)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
    commands : click.Group
        The CLI whose commands the forms show and the jobs run (given by the caller: the GUI sits below the CLI).
    """

    daemon_threads = True

    def __init__(self, project: Path, host: str = "127.0.0.1", port: int = 0, *, commands):
        self.project = Path(project).resolve()
        self.commands = commands
        if not self.project.is_dir():
            raise IsoNetError(f"{self.project}: project folder does not exist; create it or choose another")
        self.token = secrets.token_urlsafe(16)
        self.csrf = secrets.token_urlsafe(16)
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
        """A path from the page, relative to the project folder; it must lie inside it, also once links are
        resolved (403 otherwise).

        ``..`` and absolute paths are accepted only when they stay inside the project;
        ``~`` is not expanded.
        """
        if text is None or not str(text).strip():
            raise IsoNetError(f"Error: no {what} given")
        path = Path(os.path.normpath(self.project / str(text).strip()))
        if not path.is_relative_to(self.project):
            raise Refused(HTTPStatus.FORBIDDEN, f"Error: {text} is outside the project folder {self.project}; "
                                                "the GUI reads and writes only there")
        if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(self.project)):
            raise Refused(HTTPStatus.FORBIDDEN, f"Error: {text} is a link that leads outside the project folder; "
                                                "the GUI reads there only the volumes a STAR file names")
        return path

    def readable(self, text: str | None, star: Path | None, what: str = "volume") -> Path:
        """A volume to read: inside the project, or one that the STAR file ``star`` (itself inside) names."""
        try:
            return self.path(text, what)
        except Refused:
            if star is None:
                raise
        wanted = os.path.normpath(self.project / str(text).strip())
        for row in viewer.list_volumes(star, self.project):
            for volume in row["volumes"].values():
                if os.path.normpath(self.project / volume) == wanted:
                    return Path(wanted)
        raise Refused(HTTPStatus.FORBIDDEN, f"Error: {text} is outside the project folder and not named by "
                                            f"{star.name}")

    def writable_star(self, text: str | None) -> Path:
        """A STAR table the page may write: a ``.star`` file inside the project (links resolved)."""
        path = self.path(text, "STAR file")
        if path.suffix.lower() != ".star":
            raise Refused(HTTPStatus.FORBIDDEN, f"Error: {text}: the GUI writes only .star files")
        if not path.resolve().is_relative_to(self.project):
            raise Refused(HTTPStatus.FORBIDDEN, f"Error: {text} leads outside the project folder")
        return path

    def allowed_host(self, host: str) -> bool:
        """Whether a ``Host`` header names this server: its port, and an IP literal, ``localhost`` or
        this machine's name (a DNS name pointing here from elsewhere is refused)."""
        try:
            parsed = urlsplit(f"//{host}")
            name, port = (parsed.hostname or "").lower(), parsed.port
        except ValueError:
            return False
        if port != self.port or not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}

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
        if given and _same_secret(given, token):
            return True, True
        try:
            cookie = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        except http.cookies.CookieError:  # a malformed Cookie header: no session cookie
            return False, False
        morsel = cookie.get(self.server.cookie_name)
        return bool(morsel and _same_secret(morsel.value, token)), False

    def _send(self, status: int, body: bytes, content_type: str, set_cookie: bool = False,
              close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        if close:
            self.send_header("Connection", "close")
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
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            self._check_request(method, query)
        except Refused as exc:
            self.close_connection = True  # the body, if any, is not read
            self._send(exc.status, f"{exc}\n".encode(), "text/plain; charset=utf-8", close=True)
            return
        _, in_query = self._authorised(query)
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
        except Refused as exc:
            self._error(exc.status, str(exc))
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

    def _check_request(self, method: str, query: dict[str, list[str]]) -> None:
        """Host, token, origin, then (POST) content type, CSRF token and body; sets ``self._raw``.

        Raises
        ------
        Refused
            With the status of the first check that fails.
        """
        self._raw = b""
        if not self.server.allowed_host(self.headers.get("Host", "")):
            raise Refused(HTTPStatus.FORBIDDEN, "403: this server answers only to its own address (Host header)")
        if not self._authorised(query)[0]:
            raise Refused(HTTPStatus.FORBIDDEN, "403: open the URL with its token, as printed by isonet-pl gui")
        own = f"http://{self.headers['Host']}"
        origin = self.headers.get("Origin")
        if origin is None and self.headers.get("Referer"):
            ref = urlsplit(self.headers["Referer"])
            origin = f"{ref.scheme}://{ref.netloc}"
        if origin is not None and origin.lower() != own.lower():
            raise Refused(HTTPStatus.FORBIDDEN, f"403: requests from {origin} are not accepted")
        if self.headers.get("Transfer-Encoding"):
            raise Refused(HTTPStatus.BAD_REQUEST, "400: chunked request bodies are not accepted")
        text = self.headers.get("Content-Length") or "0"
        if not text.strip().isdigit():
            raise Refused(HTTPStatus.BAD_REQUEST, f"400: malformed Content-Length {text!r}")
        length = int(text)
        if length > MAX_BODY:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"413: request body over {MAX_BODY} bytes")
        if method == "POST":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "415: POST requests must be application/json")
            given = self.headers.get(CSRF_HEADER, "")
            if not (given and _same_secret(given, self.server.csrf)):
                raise Refused(HTTPStatus.FORBIDDEN, f"403: missing or wrong {CSRF_HEADER} header (reload the page)")
        if length:
            self._raw = self.rfile.read(length)

    def _static(self, name: str, set_cookie: bool = False) -> None:
        if not re.fullmatch(r"[\w.-]+", name) or not (STATIC / name).is_file():
            self._error(HTTPStatus.NOT_FOUND, f"Error: no file {name}")
            return
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        body = (STATIC / name).read_bytes()
        if name == "index.html":  # the page's CSRF token, which other origins cannot read
            body = body.replace(_CSRF_PLACEHOLDER, self.server.csrf.encode())
        self._send(HTTPStatus.OK, body, ctype, set_cookie)

    # ------------------------------------------------------------------ API
    def _api(self, method: str, route: str, q: dict[str, str], set_cookie: bool) -> None:
        srv = self.server
        body = self._body() if method == "POST" else {}
        job_match = re.fullmatch(r"jobs/(\d+)(/cancel)?", route)
        if route == "info":
            self._json({"project": str(srv.project), "version": __version__,
                        "has_3dmod": shutil.which("3dmod") is not None}, set_cookie=set_cookie)
        elif route == "schema":
            self._json(forms.schema(srv.commands))
        elif route == "files":
            self._json(list_files(srv.project, q.get("kind", "star")))
        elif route == "models":
            self._json(finished_models(srv.project))
        elif route == "star" and method == "GET":
            table = tables.load_table(srv.path(q.get("path"), "STAR file"))
            self._json({**table, "path": relative_to(table["path"], srv.project)})
        elif route == "columns":
            self._json({"columns": tables.star_columns(srv.path(q.get("path"), "STAR file"))})
        elif route == "star" and method == "POST":
            path = srv.writable_star(_field(body, "path", str))
            taken = tables.save_table(path, _field(body, "columns", list, str), _field(body, "rows", list, dict),
                                      srv.project / ".isonet_gui", _field(body, "version", str),
                                      _field(body, "base", list, dict))
            self._json({"saved": str(path), "merged": taken})
        elif route == "jobs" and method == "GET":
            self._json([job_json(srv.jobs, j) for j in srv.jobs.jobs()])
        elif route == "jobs" and method == "POST":
            argv = forms.command_line(srv.commands, str(_field(body, "command", str)),
                                      _field(body, "arguments", dict) or {}, _field(body, "options", dict) or {},
                                      srv.project)
            self._json(job_json(srv.jobs, srv.jobs.submit(argv)))
        elif job_match:
            self._job(job_match.group(1), bool(job_match.group(2)) and method == "POST", q)
        elif route == "losses":
            self._json(viewer.loss_points(srv.path(q.get("result_dir") or "results", "result folder")))
        elif route == "volumes":
            self._json(viewer.list_volumes(srv.path(q.get("star"), "STAR file"), srv.project))
        elif route == "volume":
            star = srv.path(q.get("star"), "STAR file")
            self._json(viewer.volume_info(srv.readable(q.get("path"), star), star))
        elif route == "slice":
            star = srv.path(q.get("star"), "STAR file")
            overlay = srv.readable(q["overlay"], star, "mask") if q.get("overlay") else None
            index, slab = q.get("index") or "0", q.get("slab") or "1"
            if not index.lstrip("-").isdigit() or not slab.isdigit():
                raise IsoNetError(f"Error: slice index {index!r} and slab {slab!r} must be whole numbers")
            window = None
            if q.get("low") or q.get("high"):
                try:
                    window = (float(q["low"]), float(q["high"]))
                except (KeyError, ValueError):
                    raise IsoNetError("Error: give both low and high as numbers") from None
                if not (math.isfinite(window[0]) and math.isfinite(window[1]) and window[0] < window[1]):
                    raise IsoNetError("Error: the window needs finite low < high")
            png = viewer.slice_png(srv.readable(q.get("path"), star), star, q.get("axis", "z"), int(index), overlay,
                                   window, int(slab))
            self._send(HTTPStatus.OK, png, "image/png")
        elif route == "3dmod" and method == "POST":
            star = srv.path(_field(body, "star", str), "STAR file") if body.get("star") else None
            paths = _field(body, "paths", list, str) or []
            self._json({"started": open_3dmod(srv.project, [srv.readable(p, star) for p in paths])})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"Error: no API {method} /api/{route}")

    def _job(self, job_id: str, cancel: bool, q: dict[str, str]) -> None:
        jobs = self.server.jobs
        job = jobs.cancel(job_id) if cancel else jobs.get(job_id)
        if job is None:
            self._error(HTTPStatus.NOT_FOUND, f"Error: no job {job_id}")
            return
        offset = q.get("offset") or "0"
        if not offset.isdigit():
            raise IsoNetError(f"Error: log offset {offset!r} is not a whole number")
        text, offset = jobs.read_log(job_id, int(offset))
        self._json({**job_json(jobs, job), "log": text, "offset": offset})


def _same_secret(given: str, secret: str) -> bool:
    """A constant-time comparison that takes any text (``compare_digest`` refuses non-ASCII strings)."""
    return secrets.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode())


def _field(body: dict[str, Any], name: str, kind: type, item: type | None = None) -> Any:
    """``body[name]`` checked to be a ``kind`` (of ``item`` values for a list); None when absent.

    Raises
    ------
    IsoNetError
        A clear 400 for a value of another type (a malformed request, not a server error).
    """
    value = body.get(name)
    if value is None:
        return [] if kind is list and name in ("columns", "rows") else None
    if not isinstance(value, kind) or (item is not None and not all(isinstance(v, item) for v in value)):
        what = f"a list of {'objects' if item is dict else 'strings'}" if kind is list else \
            {dict: "an object", str: "a string"}.get(kind, kind.__name__)
        raise IsoNetError(f"Error: {name} in the request must be {what}")
    return value


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


_MODEL = re.compile(r"model_iter\d+\.ckpt")


def finished_models(project: Path) -> list[dict[str, Any]]:
    """The models refine wrote below the project (``model_iterNN.ckpt``), newest first by the time they were
    written: ``{path (relative to the project), written (Unix time)}``. The Prediction form takes the first."""
    found = []
    for rel in list_files(project, "ckpt"):
        if _MODEL.fullmatch(Path(rel).name):
            try:
                found.append({"path": rel, "written": (project / rel).stat().st_mtime})
            except OSError:
                continue
    return sorted(found, key=lambda m: -m["written"])


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
          open_browser: bool = True, announce: Callable[[str], None] | None = None, *, commands) -> None:
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
    commands : click.Group
        The CLI (see :class:`GuiServer`).
    """
    server = GuiServer(Path(project_dir), host, port or 0, commands=commands)
    os.chdir(server.project)  # as the jobs do: paths relative to the project resolve alike (RELION-5's too)
    announce = announce or logger.info
    announce(f"isonet-pl GUI for {server.project} at")
    announce(f"    {server.url}")
    announce("Open that URL in a browser (it holds the access token); Ctrl-C stops the GUI.")
    if open_browser and _has_display():
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    def stop(signum, frame):  # SIGTERM / SIGHUP (a closed terminal, a batch system) end it as Ctrl-C does
        raise KeyboardInterrupt

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if sig}
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping the GUI and its running job")
    finally:
        server.server_close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
