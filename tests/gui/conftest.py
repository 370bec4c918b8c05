"""Fixtures of the GUI tests: a project folder with a tiny simulated tomogram, a running server."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from isonet_pl.config import SimulateConfig

#: Tiny sizes, so every command of the GUI tests runs in a second or two.
SHAPE = (24, 48, 48)
DEFOCUS = 20000.0


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder: ``sim/tomos/sim_00.mrc`` (with ``sim/tomograms.star``) and ``extra/other.mrc``."""
    from isonet_pl.io.mrc import read_mrc, write_mrc
    from isonet_pl.workflows.simulate import simulate

    root = tmp_path / "project"
    root.mkdir()
    simulate(root / "sim", SimulateConfig(shape=SHAPE, defocus=DEFOCUS, seed=1))
    data, info = read_mrc(root / "sim" / "tomos" / "sim_00.mrc")
    (root / "extra").mkdir()
    write_mrc(root / "extra" / "other.mrc", data[:, ::-1].copy(), voxel_size=info.voxel_size)
    return root


@pytest.fixture
def server(project):
    """A GUI server for ``project`` on a free port, serving in a thread; stopped afterwards."""
    from isonet_pl.cli.main import cli

    from isonet_pl.gui import GuiServer

    srv = GuiServer(project, "127.0.0.1", 0, commands=cli)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


class Client:
    """Calls the server's API with urllib, token included unless told otherwise."""

    def __init__(self, srv):
        self.base = f"http://127.0.0.1:{srv.port}"
        self.token = srv.token
        self.csrf = srv.csrf

    def request(self, route: str, params: dict | None = None, body: dict | None = None, token: bool = True,
                headers: dict | None = None, data: bytes | None = None):
        """(status, content type, body bytes) of GET (no body) or POST (JSON body, or raw ``data``), with the
        page's headers (JSON content type, CSRF token) unless ``headers`` replaces them."""
        query = dict(params or {})
        if token:
            query["token"] = self.token
        url = f"{self.base}{route}?{urllib.parse.urlencode(query)}"
        data = data if data is not None else None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "X-IsoNet-CSRF": self.csrf} if headers is None else headers
        req = urllib.request.Request(url, data=data, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return res.status, res.headers.get("Content-Type"), res.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type"), exc.read()

    def json(self, route: str, params: dict | None = None, body: dict | None = None, status: int = 200):
        """The decoded JSON answer, checking its status."""
        code, _, payload = self.request(route, params, body)
        assert code == status, payload
        return json.loads(payload)


@pytest.fixture
def client(server) -> Client:
    """An API client of the running server."""
    return Client(server)
