"""The GUI rows of issue 46's fault table: stale saves, malformed requests, links out, jobs writing outside."""

from __future__ import annotations

import json

import pytest
import starfile
from test_security import post, raw

STAR = "sim/tomograms.star"


def _job_records(project, deconv="deconv/sim_00.mrc"):
    """What a deconv job records in the table while the page has it loaded."""
    from isonet_pl.io.formats import read_tomogram_star

    table = read_tomogram_star(project / STAR)
    table.ensure_column("rlnDeconvTomoName", "None")
    table.set_value(0, "rlnDeconvTomoName", deconv)
    table.write()


def test_save_keeps_the_results_a_job_recorded_since_the_page_loaded(client, project):
    """The GUI's Save dropped results a job recorded after the page loaded the table."""
    table = client.json("/api/star", {"path": STAR})
    base = [dict(r) for r in table["rows"]]
    rows = [dict(r, __base=i, rlnPixelSize="7.5") for i, r in enumerate(table["rows"])]
    _job_records(project)
    answer = client.json("/api/star", body={"path": STAR, "columns": table["columns"], "rows": rows,
                                            "version": table["version"], "base": base})
    assert answer["merged"] == ["row 1 _rlnDeconvTomoName = deconv/sim_00.mrc"]
    df = starfile.read(project / STAR)
    assert df["rlnPixelSize"].iloc[0] == 7.5 and df["rlnDeconvTomoName"].iloc[0] == "deconv/sim_00.mrc"


def test_save_that_clashes_with_a_change_since_loading_is_refused(client, project):
    table = client.json("/api/star", {"path": STAR})
    base = [dict(r) for r in table["rows"]]
    _job_records(project, "deconv/a.mrc")
    before = (project / STAR).read_bytes()
    rows = [dict(r, __base=i, rlnDeconvTomoName="mine.mrc") for i, r in enumerate(table["rows"])]
    error = client.json("/api/star", body={"path": STAR, "columns": table["columns"], "rows": rows,
                                           "version": table["version"], "base": base}, status=400)["error"]
    assert "changed since the page loaded it" in error and "yours mine.mrc, the file's now deconv/a.mrc" in error
    error = client.json("/api/star", body={"path": STAR, "columns": table["columns"], "rows": table["rows"],
                                           "version": table["version"]}, status=400)["error"]
    assert "Load the table again" in error
    assert (project / STAR).read_bytes() == before


@pytest.mark.parametrize("body", [{"path": STAR, "columns": 5, "rows": []},
                                  {"path": STAR, "columns": ["rlnMicrographName"], "rows": ["a"]},
                                  {"path": ["x"], "columns": [], "rows": []},
                                  {"path": STAR, "columns": [], "rows": [], "base": "x", "version": "y"}])
def test_malformed_table_requests_get_400_not_500(server, project, body):
    status, answer = post(server, "/api/star", body)
    assert status == 400 and b"must be" in answer


@pytest.mark.parametrize("body", [{"command": "deconv", "arguments": "abc"},
                                  {"command": "deconv", "arguments": {"star_file": STAR}, "options": [1]},
                                  {"command": ["deconv"]},
                                  {"paths": "sim", "star": STAR}])
def test_malformed_job_requests_get_400_not_500(server, body):
    route = "/api/3dmod" if "paths" in body else "/api/jobs"
    status, answer = post(server, route, body)
    assert status == 400 and b"must be" in answer


@pytest.mark.parametrize("cookie", ['a="b', "isonet_gui_1=\x7f;;;=", "é=é"])
def test_a_bad_cookie_header_is_refused_without_a_traceback(server, capsys, cookie):
    own = {"Host": f"127.0.0.1:{server.port}", "Cookie": cookie}
    assert raw(server, "GET", "/api/info", own, token=False)[0] == 403
    assert raw(server, "GET", "/api/info", own)[0] == 200  # the token in the URL still works
    assert "Traceback" not in capsys.readouterr().err


def test_reads_do_not_follow_links_out_of_the_project(server, project, tmp_path):
    """A link inside the project to a file outside was readable; it is now, like the file itself, readable
    only when a STAR table names it."""
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "notes.star").write_text("data_\nloop_\n_rlnMicrographName\nx.mrc\n")
    (project / "out").symlink_to(outside)
    own = {"Host": f"127.0.0.1:{server.port}"}
    assert raw(server, "GET", "/api/star?path=out/notes.star", own)[0] == 403
    assert raw(server, "GET", "/api/losses?result_dir=out", own)[0] == 403
    status, _ = raw(server, "GET", f"/api/volume?path=sim/tomos/sim_00.mrc&star={STAR}", own)
    assert status == 200


@pytest.mark.parametrize("command, arguments, options", [
    ("deconv", {"star_file": "../elsewhere/tomograms.star"}, {}),
    ("deconv", {"star_file": "out/tomograms.star"}, {}),  # through a link leading out
    ("prepare_star", {"folder_name": "sim/tomos"}, {"output_star": "/tmp/isonet_gui_outside.star"}),
    ("extract", {"star_file": STAR}, {"subtomo_star": "../s.star"}),
    ("predict", {"star_file": STAR, "model": "m.ckpt"}, {"output_dir": "out"}),
])
def test_jobs_from_the_page_write_only_inside_the_project(client, project, tmp_path, command, arguments, options):
    """Jobs started from the page could rewrite STAR files outside the project."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "tomograms.star").write_bytes((project / STAR).read_bytes())
    (project / "out").symlink_to(outside)
    (project / "m.ckpt").write_bytes(b"")
    error = client.json("/api/jobs", body={"command": command, "arguments": arguments, "options": options},
                        status=400)["error"]
    assert "is outside the project folder" in error


def test_the_gui_starts_after_an_adopted_job_ended_with_no_gui_running(project):
    """'cannot notify on un-acquired lock': the queue finished the orphan's record without holding its lock."""
    from isonet_pl.gui.jobs import JobQueue

    folder = project / ".isonet_gui" / "jobs"
    folder.mkdir(parents=True)
    (folder / "0001.json").write_text(json.dumps({"id": "0001", "argv": ["deconv", STAR], "state": "running",
                                                  "created": 1.0, "pid": 2 ** 22 + 17}))
    (folder / "0001.exit").write_text("0")
    queue = JobQueue(project)
    try:
        assert queue.get("0001").state == "done"
    finally:
        queue.shutdown()



# ------------------------------------------------------------ issue 43: the Prediction form, cancel, resume
def _models(project):
    """Two models: the one named last alphabetically is the older."""
    import os

    old, new = project / "results_b" / "model_iter09.ckpt", project / "results_a" / "model_iter02.ckpt"
    for i, path in enumerate((old, new)):
        path.parent.mkdir()
        path.write_bytes(b"x")
        os.utime(path, (1_700_000_000 + i * 1000,) * 2)
    return old, new


def test_models_are_listed_newest_first(client, project):
    """The Prediction form kept an older run's model after a new refine finished; it takes the first of these."""
    _models(project)
    (project / "results_a" / "other.ckpt").write_bytes(b"x")
    assert [m["path"] for m in client.json("/api/models")] == ["results_a/model_iter02.ckpt",
                                                               "results_b/model_iter09.ckpt"]


def test_a_stopped_refine_says_how_to_resume():
    from isonet_pl.gui.jobs import resume_command

    assert resume_command(["refine", "sub.star", "--result_dir=r2", "--iterations=5"]) == \
        "isonet-pl refine sub.star --continue_from r2"
    assert resume_command(["refine", "sub.star"]) == "isonet-pl refine sub.star --continue_from results"
    assert resume_command(["deconv", "t.star"]) is None
