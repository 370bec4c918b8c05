"""The GUI against other local pages and bad requests: same origin, CSRF, confined paths, limits."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from isonet_pl.errors import IsoNetError


def raw(server, method: str, route: str, headers: dict, body: bytes = b"", token: bool = True):
    """(status, body) of a request sent exactly as given (http.client adds only Host unless given)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    sep = "&" if "?" in route else "?"
    url = f"{route}{sep}token={server.token}" if token else route
    conn.putrequest(method, url, skip_host="Host" in headers, skip_accept_encoding=True)
    for key, value in headers.items():
        conn.putheader(key, value)
    conn.endheaders()
    if body:
        conn.send(body)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, data


def page_headers(server, **extra) -> dict:
    own = f"127.0.0.1:{server.port}"
    return {"Host": own, "Content-Type": "application/json", "X-IsoNet-CSRF": server.csrf,
            "Origin": f"http://{own}", **extra}


def post(server, route: str, payload: dict, **headers):
    body = json.dumps(payload).encode()
    return raw(server, "POST", route, {**page_headers(server, **headers), "Content-Length": str(len(body))}, body)


def test_the_page_itself_may_post(server, project):
    """The same request with the page's origin, content type and CSRF token goes through."""
    status, _ = post(server, "/api/star", {"path": "new.star", "columns": ["rlnMicrographName"],
                                           "rows": [{"rlnMicrographName": "sim/tomos/sim_00.mrc"}]})
    assert status == 200 and (project / "new.star").exists()


@pytest.mark.parametrize("change,status", [
    ({"Origin": "http://127.0.0.1:9999"}, 403),                      # another page on another local port
    ({"Origin": "null"}, 403),                                        # a sandboxed frame or a file:// page
    ({"Origin": None, "Referer": "http://localhost:8888/tree"}, 403),  # no Origin, a foreign Referer
    ({"Content-Type": "text/plain"}, 415),                            # a CORS-simple request (no preflight)
    ({"X-IsoNet-CSRF": None}, 403),                                   # no CSRF token
    ({"X-IsoNet-CSRF": "guess"}, 403),
    ({"Host": "evil.example:{port}"}, 403),                           # DNS rebinding
    ({"Host": "127.0.0.1:1"}, 403),
])
def test_cross_origin_and_forged_posts_change_nothing(server, project, change, status):
    """A page on another port of 127.0.0.1 (cookies do not separate ports) can neither write a table nor
    start a job: each missing or foreign piece is refused, and nothing is written or queued."""
    headers = page_headers(server)
    for key, value in change.items():
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value.format(port=server.port)
    for route, payload in (("/api/star", {"path": "evil.star", "columns": ["rlnMicrographName"], "rows": []}),
                           ("/api/jobs", {"command": "simulate", "arguments": {"out_dir": "evil"}})):
        body = json.dumps(payload).encode()
        code, _ = raw(server, "POST", route, {**headers, "Content-Length": str(len(body))}, body)
        assert code == status
    assert not (project / "evil.star").exists() and not (project / "evil").exists()
    assert server.jobs.jobs() == []


def test_foreign_referer_on_a_get_is_refused(server):
    """An image or script of another page reading the API (its Referer names it) gets 403."""
    own = f"127.0.0.1:{server.port}"
    assert raw(server, "GET", "/api/info", {"Host": own, "Referer": "http://127.0.0.1:9999/x"})[0] == 403
    assert raw(server, "GET", "/api/info", {"Host": own, "Referer": f"http://{own}/?token=x"})[0] == 200
    assert raw(server, "GET", "/api/info", {"Host": f"localhost:{server.port}"})[0] == 200


@pytest.mark.parametrize("path", ["../outside.star", "/tmp/isonet_gui_outside.star", "~/.bashrc",
                                  "sim/../../outside.star", "notes.txt", "sim/tomos/sim_00.mrc"])
def test_star_writes_are_confined_to_star_files_in_the_project(server, project, path):
    """POST /api/star writes only .star files inside the project (no ~, no .., no absolute path outside)."""
    status, body = post(server, "/api/star", {"path": path, "columns": ["rlnMicrographName"], "rows": []})
    assert status == 403, body
    assert not (project.parent / "outside.star").exists() and not (project / "notes.txt").exists()


def test_star_write_through_a_link_out_of_the_project_is_refused(server, project, tmp_path):
    """A .star link inside the project that points outside is not written through."""
    target = tmp_path / "victim.star"
    target.write_text("data_\n")
    (project / "link.star").symlink_to(target)
    assert post(server, "/api/star", {"path": "link.star", "columns": ["rlnMicrographName"], "rows": []})[0] == 403
    assert target.read_text() == "data_\n"


def test_reads_are_confined_to_the_project_and_its_tables(server, project, tmp_path):
    """Files outside the project cannot be read, unless a STAR table of the project names them; viewing
    writes nothing (no Zarr copy is made by a GET)."""
    import shutil

    own = {"Host": f"127.0.0.1:{server.port}"}
    assert raw(server, "GET", "/api/star?path=/etc/passwd", own)[0] == 403
    assert raw(server, "GET", "/api/star?path=../x.star", own)[0] == 403
    assert raw(server, "GET", "/api/losses?result_dir=/tmp", own)[0] == 403
    outside = tmp_path / "outside.mrc"
    shutil.copy(project / "extra" / "other.mrc", outside)
    star = "sim/tomograms.star"
    assert raw(server, "GET", f"/api/volume?path={outside}&star={star}", own)[0] == 403
    assert raw(server, "GET", f"/api/slice?path={outside}&star={star}&axis=z&index=1", own)[0] == 403
    (project / "ext.star").write_text(f"data_\nloop_\n_rlnIndex\n_rlnMicrographName\n1 {outside}\n")
    status, png = raw(server, "GET", f"/api/slice?path={outside}&star=ext.star&axis=z&index=1", own)
    assert status == 200 and png.startswith(b"\x89PNG")
    status, _ = raw(server, "GET", f"/api/slice?path=sim/tomos/sim_00.mrc&star={star}&axis=y&index=3", own)
    assert status == 200
    assert not (project / "zarr").exists() and not (project / "sim" / "zarr").exists()
    assert not (tmp_path / "zarr").exists()


def test_a_value_cannot_become_an_option(client, project):
    """A form value that looks like an option is passed as the option's value (and refused by its type),
    never as an option of its own (--mask_folder=/elsewhere reached the command line)."""
    bad = client.json("/api/jobs", body={"command": "make_mask", "arguments": {"star_file": "sim/tomograms.star"},
                                         "options": {"use_deconv_tomo": "--mask_folder=/elsewhere"}}, status=400)
    assert "use_deconv_tomo" in bad["error"]
    bad = client.json("/api/jobs", body={"command": "make_mask", "arguments": {"star_file": "--help"}}, status=400)
    assert "starts with '-'" in bad["error"]
    bad = client.json("/api/jobs", body={"command": "deconv", "arguments": {"star_file": "sim/tomograms.star"},
                                         "options": {"cs": "inf"}}, status=400)
    assert "finite" in bad["error"]
    bad = client.json("/api/jobs", body={"command": "deconv", "arguments": {"star_file": "sim/tomograms.star"},
                                         "options": {"tomo_idx": "1-x"}}, status=400)
    assert "tomo_idx" in bad["error"]
    assert client.json("/api/jobs") == []


def test_bodies_are_limited_and_read_only_after_the_token(server):
    """A huge Content-Length without the token is refused before its body is read; with the token it is
    413; a malformed one is 400 (no traceback); the server keeps serving."""
    from isonet_pl.gui.server import MAX_BODY

    own = page_headers(server)
    huge = {**own, "Content-Length": str(300 << 20)}
    assert raw(server, "POST", "/api/star", huge, token=False)[0] == 403  # nothing sent: it must not wait
    assert raw(server, "POST", "/api/star", huge)[0] == 413
    assert raw(server, "POST", "/api/star", {**own, "Content-Length": str(MAX_BODY + 1)})[0] == 413
    for length in ("abc", "-5", "1e9"):
        status, body = raw(server, "POST", "/api/star", {**own, "Content-Length": length})
        assert status == 400 and b"Content-Length" in body and b"Traceback" not in body
    assert raw(server, "GET", "/api/info", {"Host": f"127.0.0.1:{server.port}"})[0] == 200


def test_page_carries_its_csrf_token_and_refuses_framing(server):
    """The page holds the CSRF token (other origins cannot read it) and may not be framed."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/?token={server.token}")
    res = conn.getresponse()
    page = res.read()
    assert server.csrf.encode() in page and b"{{CSRF_TOKEN}}" not in page
    assert res.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in res.headers[
        "Content-Security-Policy"]
    assert res.headers["Set-Cookie"].startswith(f"isonet_gui_{server.port}=")


def test_one_gui_per_project(server, project):
    """A second GUI on the same project is refused (job ids and runs cannot collide); after the first
    stops, a new one starts."""
    from isonet_pl.cli.main import cli

    from isonet_pl.gui import GuiServer

    with pytest.raises(IsoNetError, match="another isonet-pl GUI serves this project"):
        GuiServer(project, "127.0.0.1", 0, commands=cli)


def test_allowed_hosts(server):
    """IP literals, localhost and this machine's name, with the server's port; nothing else."""
    port = server.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"{socket.gethostname()}:{port}"):
        assert server.allowed_host(host), host
    for host in ("127.0.0.1", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1:x", ""):
        assert not server.allowed_host(host), host


def _gui_process(project):
    """(process, url) of `isonet-pl gui PROJECT --no-browser` started as a user would."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("isonet-pl")
    proc = subprocess.Popen([str(exe), "gui", str(project), "--no-browser"], stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        line = proc.stderr.readline()
        if "token=" in line:
            return proc, line.strip()
    proc.kill()
    raise AssertionError("the GUI printed no URL")


def _submit_long_job(url: str) -> dict:
    import time
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    base, token = f"{parts.scheme}://{parts.netloc}", urllib.parse.parse_qs(parts.query)["token"][0]
    with urllib.request.urlopen(f"{base}/?token={token}") as res:
        page = res.read().decode()
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    body = json.dumps({"command": "simulate", "arguments": {"out_dir": "big"},
                       "options": {"shape": "64,256,256", "n_tomograms": 50}}).encode()
    req = urllib.request.Request(f"{base}/api/jobs?token={token}", data=body, headers={
        "Content-Type": "application/json", "X-IsoNet-CSRF": csrf})
    with urllib.request.urlopen(req) as res:
        job = json.loads(res.read())
    for _ in range(300):
        with urllib.request.urlopen(f"{base}/api/jobs/{job['id']}?token={token}") as res:
            job = json.loads(res.read())
        if job["state"] == "running" and job["pid"]:
            return job
        time.sleep(0.1)
    raise AssertionError(f"the job did not start: {job}")


def _gone(pid: int) -> bool:
    import os

    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_gui_stopped_by_a_signal_stops_its_job(project, signame):
    """SIGTERM or SIGHUP (a batch system, a closed terminal) stops the GUI as Ctrl-C does: its running job is
    stopped and recorded as cancelled (it ran on beside the next GUI's jobs)."""
    import os
    import signal
    import time

    proc, url = _gui_process(project)
    try:
        job = _submit_long_job(url)
        proc.send_signal(getattr(signal, signame))
        assert proc.wait(timeout=60) == 0
        for _ in range(100):
            if _gone(job["pid"]):
                break
            time.sleep(0.1)
        assert _gone(job["pid"])
        record = json.loads((project / ".isonet_gui" / "jobs" / f"{job['id']}.json").read_text())
        assert record["state"] == "cancelled"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_job_left_by_a_killed_gui_is_adopted(project):
    """A GUI killed with SIGKILL leaves its job running; the next GUI shows it running, starts nothing beside
    it, and records how it ended."""
    import os
    import signal
    import time

    from isonet_pl.gui.jobs import JobQueue

    proc, url = _gui_process(project)
    try:
        job = _submit_long_job(url)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert not _gone(job["pid"])
        queue = JobQueue(project)  # the next GUI (the killed one's lock died with it)
        try:
            assert queue.get(job["id"]).state == "running"
            second = queue.submit(["simulate", "small", "--shape", "16,32,32"])
            time.sleep(1.5)
            assert queue.get(second.id).state == "queued"  # waits for the adopted job
            assert second.id != job["id"]
            queue.cancel(job["id"])  # stoppable from the new GUI
            assert queue.wait(job["id"], 60).state == "cancelled"
            assert queue.wait(second.id, 120).state == "done"
        finally:
            queue.shutdown()
    finally:
        if not _gone(job["pid"]):
            os.killpg(job["pid"], signal.SIGKILL)
