"""The GUI's server and API: token, forms from the CLI's definitions, tables, jobs, viewer."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from isonet_pl.config import IsoNetConfig, RefineConfig
from isonet_pl.fields import format_value
from isonet_pl.gui import forms
from isonet_pl.gui.jobs import error_line, last_line, progress_of

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def wait_for(client, job_id: str, timeout: float = 120) -> dict:
    """Poll a job until it has finished; return its last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.json(f"/api/jobs/{job_id}")
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_requests_without_the_token_are_refused(client):
    """No token, or a wrong one: 403 for the page and the API; the right one opens both."""
    assert client.request("/", token=False)[0] == 403
    assert client.request("/api/info", token=False)[0] == 403
    assert client.request("/api/info", {"token": "wrong"}, token=False)[0] == 403
    code, ctype, page = client.request("/")
    assert code == 200 and ctype.startswith("text/html") and b"isonet-pl" in page


def test_first_valid_request_sets_a_strict_httponly_cookie(server, client):
    """The cookie set by a tokened request admits later requests without the token."""
    import urllib.request

    with urllib.request.urlopen(f"{client.base}/?token={server.token}") as res:
        cookie = res.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and server.token in cookie
    req = urllib.request.Request(f"{client.base}/api/info", headers={"Cookie": cookie.split(";")[0]})
    with urllib.request.urlopen(req) as res:
        assert json.loads(res.read())["project"] == str(server.project)


def test_server_binds_to_localhost_by_default(server):
    """The default interface is 127.0.0.1, and the printed URL carries the token."""
    assert server.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/?token={server.token}"


def test_schema_has_the_cli_defaults_of_every_setting(client):
    """Every field of every command's section appears in its form with the pydantic default."""
    schema = client.json("/api/schema")
    assert set(schema) == set(forms.COMMANDS)
    for command, form in schema.items():
        section = IsoNetConfig.model_fields[forms._SECTION_OF.get(command, command)].annotation
        options = {o["name"]: o for o in form["options"]}
        for name, info in section.model_fields.items():
            default = info.get_default(call_default_factory=True)
            expected = None if default is None else format_value(default)
            if isinstance(default, bool):
                expected = expected.lower()
            assert options[name]["default"] == expected, (command, name)
            assert options[name]["description"] == info.description
    refine = {o["name"]: o for o in schema["refine"]["options"]}
    assert refine["noise_mode"]["choices"] == ["noFilter", "ramp", "hamming"]
    assert refine["batch_normalization"]["kind"] == "bool"
    assert refine["noise_level"]["default"] == format_value(RefineConfig().noise_level)
    assert [a["name"] for a in schema["predict"]["arguments"]] == ["star_file", "model"]
    assert "tomo_idx" in {o["name"] for o in schema["deconv"]["options"]}


@pytest.mark.parametrize(("options", "message"), [
    ({"pixel_size": "-1"}, "Error: --pixel_size -1.0: Input should be greater than 0; see --help"),
    ({"pixel_size": "abc"}, "Error: Invalid value for '--pixel_size' / '--pixel-size': 'abc' is not a valid float."),
    ({"tilt_min": "30", "tilt_max": "20"}, "must be below tilt_max"),
    ({"no_such": "1"}, "Error: No such option: --no_such"),
])
def test_bad_form_values_get_the_cli_message(client, run_cli, project, options, message):
    """A bad value is refused before any job starts, with the CLI's own message."""
    answer = client.json("/api/jobs", body={"command": "prepare_star", "arguments": {"folder_name": "sim/tomos"},
                                            "options": options}, status=400)
    assert message in answer["error"]
    assert client.json("/api/jobs") == []
    if "no_such" not in options:  # the same words as the CLI prints
        args = [a for k, v in options.items() for a in (f"--{k}", v)]
        _, _, err = run_cli(["prepare_star", "sim/tomos", *args], cwd=project)
        assert answer["error"] == err.strip().splitlines()[-1]


def test_command_line_leaves_out_defaults_and_empty_fields():
    """Only changed values become options; booleans compare without regard to case."""
    from isonet_pl.cli.main import cli

    argv = forms.command_line(cli, "refine", {"subtomo_star": "subtomo.star"},
                              {"batch_normalization": "True", "epochs": "10", "iterations": "2", "gpuID": ""})
    assert argv == ["refine", "subtomo.star", "--iterations=2"]


def test_missing_argument_is_refused(client):
    """A form without its STAR file names the missing argument."""
    answer = client.json("/api/jobs", body={"command": "deconv", "arguments": {}, "options": {}}, status=400)
    assert answer["error"] == "Error: Missing argument 'STAR_FILE'."


def test_star_round_trip_renumbers_and_checks(client, project):
    """Load, edit, add a row and save: the file holds the edits, rows numbered 1..n; bad cells are refused."""
    table = client.json("/api/star", {"path": "sim/tomograms.star"})
    assert table["exists"] and len(table["rows"]) == 1
    row = dict(table["rows"][0], rlnPixelSize="7.5", rlnTiltMin="-50")
    extra = dict(row, rlnMicrographName="../extra/other.mrc", rlnIndex=9)
    client.json("/api/star", body={"path": "sim/tomograms.star", "columns": table["columns"], "rows": [row, extra]})
    again = client.json("/api/star", {"path": "sim/tomograms.star"})
    assert [r["rlnIndex"] for r in again["rows"]] == [1, 2]
    assert again["rows"][0]["rlnPixelSize"] == 7.5 and again["rows"][0]["rlnTiltMin"] == -50
    assert again["rows"][1]["rlnMicrographName"] == "../extra/other.mrc"
    before = (project / "sim" / "tomograms.star").read_text()
    bad = client.json("/api/star", body={"path": "sim/tomograms.star", "columns": table["columns"],
                                         "rows": [dict(row, rlnDefocus="abc")]}, status=400)
    assert "row 1: _rlnDefocus 'abc' is not a number" in bad["error"]
    bad = client.json("/api/star", body={"path": "sim/tomograms.star", "columns": table["columns"],
                                         "rows": [dict(row, rlnTiltMin="70", rlnTiltMax="60")]}, status=400)
    assert "invalid tilt range" in bad["error"] and "sim/tomograms.star" in bad["error"]
    assert (project / "sim" / "tomograms.star").read_text() == before


def test_missing_star_is_an_empty_table(client):
    """A STAR file that does not exist yet loads as an empty table with IsoNet's columns."""
    table = client.json("/api/star", {"path": "new.star"})
    assert not table["exists"] and table["rows"] == [] and "rlnMicrographName" in table["columns"]


def test_star_the_commands_refuse_still_loads_to_be_fixed(client, project):
    """A table with a bad value loads as it is (to be fixed in the page); a file that is no table is an error."""
    star = project / "sim" / "tomograms.star"
    star.write_text(star.read_text().replace("20000.000000", "lots"))
    table = client.json("/api/star", {"path": "sim/tomograms.star"})
    assert table["rows"][0]["rlnDefocus"] == "lots"
    (project / "bad.star").write_text("data_\nloop_\n_rlnSomething #1\n1\n")
    error = client.json("/api/star", {"path": "bad.star"}, status=400)["error"]
    assert "missing required column(s) _rlnMicrographName" in error


def test_job_runs_the_cli_and_finishes(client, project):
    """simulate through the API: queued, run as a subprocess in the project, done, log kept."""
    job = client.json("/api/jobs", body={"command": "simulate", "arguments": {"out_dir": "sim2"},
                                         "options": {"shape": "16,32,32", "seed": "0", "snr": "0.3"}})
    assert job["argv"] == ["simulate", "sim2", "--shape=16,32,32"]  # defaults are left out
    job = wait_for(client, job["id"])
    assert job["state"] == "done" and job["returncode"] == 0, job
    assert (project / "sim2" / "tomos" / "sim_00.mrc").exists()
    assert "wrote sim2/tomograms.star" in job["log"]
    assert (project / ".isonet_gui" / "jobs" / f"{job['id']}.log").exists()
    assert client.json("/api/jobs")[0]["id"] == job["id"]
    assert "sim2/tomograms.star" in client.json("/api/files", {"kind": "star"})


def test_failed_job_shows_the_cli_error(client, project):
    """A command that fails (a STAR row naming a missing tomogram) ends 'failed' with the CLI's error line."""
    (project / "bad.star").write_text("data_\nloop_\n_rlnIndex\n_rlnMicrographName\n1 gone.mrc\n")
    job = client.json("/api/jobs", body={"command": "deconv", "arguments": {"star_file": "bad.star"}})
    job = wait_for(client, job["id"])
    assert job["state"] == "failed" and job["returncode"] == 1
    assert job["error"].startswith("Error: bad.star: row 1 points to a missing file")


def test_cancel_a_queued_job(server):
    """A queued job can be cancelled before it starts; it never runs."""
    queue = server.jobs
    with queue._wake:  # hold the worker so the job stays queued
        job = queue.submit(["simulate", "never"])
        queue.cancel(job.id)
    assert queue.wait(job.id, 10).state == "cancelled"
    assert not (server.project / "never").exists()


def test_cancel_a_running_job(server):
    """A running job is stopped (its process group interrupted) and marked cancelled."""
    queue = server.jobs
    job = queue.submit(["simulate", "big", "--shape", "64,256,256", "--n_tomograms", "50"])
    for _ in range(200):
        if queue.get(job.id).state == "running":
            break
        time.sleep(0.05)
    queue.cancel(job.id)
    assert queue.wait(job.id, 30).state == "cancelled"


def test_volumes_slices_and_mask_overlay(client, project, run_cli):
    """The viewer lists a row's volumes and returns XY/XZ/YZ slices as PNG, with a coloured mask overlay."""
    assert run_cli(["make_mask", "sim/tomograms.star", "--use_deconv_tomo", "false"], cwd=project)[0] == 0
    rows = client.json("/api/volumes", {"star": "sim/tomograms.star"})
    assert rows[0]["name"] == "sim_00.mrc" and set(rows[0]["volumes"]) == {"tomogram", "mask"}
    tomo, mask = rows[0]["volumes"]["tomogram"], rows[0]["volumes"]["mask"]
    info = client.json("/api/volume", {"path": tomo, "star": "sim/tomograms.star"})
    assert info["shape"] == [24, 48, 48]
    shapes = {}
    for axis in "zyx":
        code, ctype, png = client.request("/api/slice", {"path": tomo, "star": "sim/tomograms.star", "axis": axis,
                                                         "index": 10})
        assert code == 200 and ctype == "image/png" and png.startswith(PNG_MAGIC)
        shapes[axis] = _png_size(png)
    assert shapes == {"z": (48, 48), "y": (48, 24), "x": (48, 24)}
    code, _, png = client.request("/api/slice", {"path": tomo, "star": "sim/tomograms.star", "axis": "z",
                                                 "index": 12, "overlay": mask})
    assert code == 200 and png[25] == 2  # colour type 2: RGB, the overlay is drawn
    bad = client.json("/api/slice", {"path": "nope.mrc", "star": "sim/tomograms.star"}, status=400)
    assert "nope.mrc: volume does not exist" in bad["error"]


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_losses_of_a_refine_run(client, project):
    """Loss points come from Lightning's CSV logs: per step, per epoch, validation, finished iterations."""
    logs = project / "results" / "logs" / "iter01"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text("epoch,step,train/loss_step,train/loss_epoch,val/loss\n"
                                      "0,0,0.9,,\n0,1,0.8,,\n0,1,,,0.7\n0,1,,0.85,\n1,3,0.6,,\n")
    (project / "results" / "refine_iter01.json").write_text(json.dumps({"iteration": 1}))
    data = client.json("/api/losses", {"result_dir": "results"})
    assert data["train_step"] == [[0, 0.9], [1, 0.8], [3, 0.6]]
    assert data["train"] == [[1, 0.85]] and data["val"] == [[1, 0.7]] and data["iterations"] == [1]
    for it, noise in ((1, 0.0), (2, 0.1)):  # the plot's iteration and noise-stage markers
        (project / "results" / f"refine_iter{it:02d}.json").write_text(json.dumps(
            {"iteration": it, "noise_level": noise, "settings": {"epochs": 2}}))
    data = client.json("/api/losses", {"result_dir": "results"})
    assert data["noise"] == [[1, 0.0], [2, 0.1]] and data["epochs_per_iteration"] == 2


def test_log_parsing_helpers():
    """Progress bars: the last line after carriage returns, its percentage, and the CLI's error line."""
    text = "start\nEpoch 0:  10%|#  | 1/10\rEpoch 0:  45%|####  | 4/10\r\x1b[A"
    assert last_line(text) == "Epoch 0:  45%|####  | 4/10"
    assert progress_of(last_line(text)) == pytest.approx(0.45)
    assert progress_of("[####      ] | 40% Completed | 0.1s") == pytest.approx(0.4)
    assert error_line("a\nError: x.star: missing; fix it\n") == "Error: x.star: missing; fix it"


def test_file_lists_skip_caches(client, project):
    """MRC and folder lists come relative to the project, without Zarr stores or hidden folders."""
    mrcs = client.json("/api/files", {"kind": "mrc"})
    assert "sim/tomos/sim_00.mrc" in mrcs and "extra/other.mrc" in mrcs
    folders = client.json("/api/files", {"kind": "folder"})
    assert "sim/tomos" in folders and not any("zarr" in f or f.startswith(".") for f in folders)


def test_gui_command_help_and_bad_port(run_cli, tmp_path):
    """`isonet-pl gui --help` lists its options; a busy port is one clear line."""
    import socket

    code, out, _ = run_cli(["gui", "--help"])
    assert code == 0 and "--no-browser" in out and "--port" in out and "--host" in out
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = run_cli(["gui", str(tmp_path), "--no-browser", "--port", str(busy.getsockname()[1])])
    assert code == 1 and "cannot listen on 127.0.0.1" in err and "Traceback" not in err


def test_slice_reads_only_one_level_plane(project):
    """A slice comes from the coarsest pyramid level still MAX_EDGE wide (lazy, bounded reads): from the Zarr
    copy when the commands made one, else from the MRC file through a memory map (viewing writes nothing)."""
    from isonet_pl.gui import viewer
    from isonet_pl.io.mrc import read_mrc
    from isonet_pl.workflows.convert import convert

    mrc, star = project / "sim" / "tomos" / "sim_00.mrc", project / "sim" / "tomograms.star"
    data = read_mrc(mrc)[0]
    volume = viewer.open_volume(mrc, star)
    assert isinstance(volume, viewer.MrcVolume) and not (project / "sim" / "zarr").exists()
    assert viewer._level(volume, "z") == 0
    np.testing.assert_array_equal(viewer._plane(volume, "y", 1000, 0), data[:, -1, :])  # clipped index
    np.testing.assert_array_equal(viewer._plane(volume, "x", 3, 1), data[::2, ::2, 3])
    convert(star)
    store = viewer.open_volume(mrc, star)
    assert not isinstance(store, viewer.MrcVolume)
    plane = viewer._plane(store, "y", 1000, 0)
    np.testing.assert_array_equal(plane, np.asarray(store.zarr_array(0)[:, -1, :]))
    np.testing.assert_array_equal(plane, data[:, -1, :])


def test_3dmod_button_runs_3dmod_when_installed(client, project, monkeypatch, tmp_path):
    """With a 3dmod on PATH, /api/info says so and /api/3dmod starts it on the files (folders expanded)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "3dmod"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {calls}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert client.json("/api/info")["has_3dmod"] is True
    assert client.json("/api/3dmod", body={"paths": ["sim/tomos", "extra/other.mrc"]}) == {"started": True}
    for _ in range(100):
        if calls.exists() and calls.read_text().strip():
            break
        time.sleep(0.05)
    started = calls.read_text().split()
    assert started == [str(project / "sim" / "tomos" / "sim_00.mrc"), str(project / "extra" / "other.mrc")]
    bad = client.json("/api/3dmod", body={"paths": ["nothing.mrc"]}, status=400)
    assert "nothing.mrc does not exist" in bad["error"]


def test_static_files_work_offline_and_are_packaged():
    """The page loads nothing from the internet, and setup.cfg ships every static file with the package."""
    import configparser
    import re
    from pathlib import Path

    from isonet_pl.gui.server import STATIC

    for path in STATIC.iterdir():
        assert not re.search(r"(src|href)=\"?https?://|url\(https?:|import .* from \"http", path.read_text()), path
    index = (STATIC / "index.html").read_text()
    for name in re.findall(r'/static/([\w.-]+)', index):
        assert (STATIC / name).is_file(), name
    setup = Path(__file__).resolve().parents[2] / "setup.cfg"
    if setup.exists():
        cfg = configparser.ConfigParser()
        cfg.read(setup)
        assert cfg["options.package_data"]["isonet_pl.gui"].strip() == "static/*"


def test_job_records_survive_a_restart(project):
    """A new queue lists earlier jobs; one left running by a closed GUI counts as cancelled."""
    from isonet_pl.gui.jobs import JobQueue

    folder = project / ".isonet_gui" / "jobs"
    folder.mkdir(parents=True)
    (folder / "0004.json").write_text(json.dumps({"id": "0004", "argv": ["refine", "subtomo.star"],
                                                  "state": "running", "created": 1.0}))
    queue = JobQueue(project)
    try:
        job = queue.get("0004")
        assert job.state == "cancelled" and "GUI closed" in job.error
        assert queue.submit(["check"]).id == "0005"
    finally:
        queue.shutdown()


def test_gui_command_prints_a_tokened_url_and_stops_on_ctrl_c(project):
    """`isonet-pl gui --no-browser` prints the URL with its token; the page answers; Ctrl-C ends it cleanly."""
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "isonet_pl.cli.main", "gui", str(project), "--no-browser"],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, DISPLAY=""))
    try:
        url = None
        for _ in range(20):
            line = proc.stderr.readline()
            found = re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+", line)
            if found:
                url = found.group(0)
                break
        assert url, "no URL printed"
        with urllib.request.urlopen(url, timeout=30) as res:
            assert res.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)


def test_relion5_star_loads_as_its_isonet_table(client, project, monkeypatch):
    """A RELION-5 tomograms.star loads as the table kept beside it, whose path the page then uses."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "relion_helpers", Path(__file__).resolve().parents[1] / "io" / "test_relion.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    monkeypatch.chdir(project)  # RELION paths are relative to the project folder (serve() makes it the cwd)
    star = helpers._relion_project(project)
    table = client.json("/api/star", {"path": star.relative_to(project).as_posix()})
    assert table["path"] == "Tomograms/job010/tomograms_isonet.star"
    assert [r["rlnTomoName"] for r in table["rows"]] == ["TS_01", "TS_02"]


def test_slices_share_the_volume_window_and_average_slabs(project):
    """Every slice of a volume uses the volume's own grey-level window (an omero window the commands wrote,
    or percentiles of a subsample), so slices compare; slab averaging and an explicit window work."""
    from isonet_pl.gui import viewer
    from isonet_pl.io.mrc import read_mrc
    from isonet_pl.plot import slice_preview
    from isonet_pl.workflows.convert import convert

    mrc, star = project / "sim" / "tomos" / "sim_00.mrc", project / "sim" / "tomograms.star"
    data = read_mrc(mrc)[0].astype(np.float32)
    window = viewer.volume_window(viewer.open_volume(mrc, star))
    np.testing.assert_allclose(window, np.percentile(data[::4, ::4, ::4], [1, 99]), rtol=1e-6)
    convert(star)  # the Zarr copy carries an omero window from its coarsest level
    store = viewer.open_volume(mrc, star)
    zarr_window = viewer.volume_window(store)
    assert zarr_window[0] < zarr_window[1]
    png = viewer.slice_png(mrc, star, "z", 5, window=(-1.0, 1.0), slab=3)
    expected = slice_preview(data[4:7].mean(axis=0), -1.0, 1.0)
    from isonet_pl.plot import encode_png

    assert png == encode_png(expected)
    with pytest.raises(Exception, match="slab 0"):
        viewer.slice_png(mrc, star, "z", 5, slab=0)


def test_slice_api_window_and_slab_checked(client):
    """The slice API takes low/high/slab and refuses malformed ones with one line."""
    star, path = "sim/tomograms.star", "sim/tomos/sim_00.mrc"
    info = client.json("/api/volume", {"path": path, "star": star})
    assert len(info["window"]) == 2 and info["window"][0] < info["window"][1]
    code, ctype, body = client.request("/api/slice", {"path": path, "star": star, "index": 3, "low": -1, "high": 1,
                                                      "slab": 3})
    assert code == 200 and body[:8] == PNG_MAGIC
    for bad in ({"low": "x", "high": 1}, {"low": 2, "high": 1}, {"slab": "a"}, {"low": "nan", "high": 1}):
        code, _, body = client.request("/api/slice", {"path": path, "star": star, "index": 3, **bad})
        assert code == 400 and b"Error:" in body


def test_missing_input_files_are_reported_before_a_job_starts(client):
    """A STAR file or model that does not exist is refused at once, not after the job has imported torch."""
    bad = client.json("/api/jobs", body={"command": "deconv", "arguments": {"star_file": "nope.star"}}, status=400)
    assert "STAR_FILE nope.star does not exist" in bad["error"]
    bad = client.json("/api/jobs", body={"command": "predict", "arguments": {"star_file": "sim/tomograms.star",
                                                                             "model": "results/x.ckpt"}}, status=400)
    assert "MODEL results/x.ckpt does not exist" in bad["error"]
    assert client.json("/api/jobs") == []


def test_columns_of_a_star_file(client, project):
    """/api/columns names the columns of any STAR file of the project; a missing file, a non-STAR file or one
    outside the project is an error."""
    (project / "halves.star").write_text("data_\n\nloop_\n_rlnImageName #1\n_rlnImageNameHalf1 #2\na.mrc\tb.mrc\n")
    assert client.json("/api/columns", {"path": "halves.star"})["columns"] == ["rlnImageName", "rlnImageNameHalf1"]
    for path in ("missing.star", "/etc/passwd"):
        status, _, body = client.request("/api/columns", {"path": path})
        assert status >= 400 and b"Error" in body
