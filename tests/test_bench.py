"""The benchmark's harness is right: it renders, trains, measures, stops its servers and reports errors.

No figure is asserted: speed is what `bench/run.py` prints. These runs use the Python client, so
they need no wrk; the wrk driver is checked too where wrk is installed.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path

import pytest

from .conftest import TEMPLATE_DIR

sys.path.insert(0, str(TEMPLATE_DIR / "bench"))

import harness
import load
import run

PAYLOADS = {"csv-1", "json-1", "csv-100", "json-100"}


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[int, dict, str]:
    output = tmp_path_factory.mktemp("bench") / "figures.json"
    argv = ["--frameworks", "sklearn", "--client", "python", "--seconds", "0.3", "--rounds", "2"]
    argv += ["--cold-starts", "0", "--train-runs", "1", "--ceiling-seconds", "0.1", "--connections", "2"]
    code = run.main([*argv, "--output", str(output)])
    return code, json.loads(output.read_text(encoding="utf-8")), str(output)


def test_frameworks_are_read_from_the_template():
    found = harness.frameworks()
    assert "sklearn" in found
    assert set(found) <= {path.name for path in (harness.PROJECT_TEMPLATE / "_frameworks").iterdir()}


def test_a_short_run_measures_both_stacks_without_errors(short_run):
    code, figures, _ = short_run
    assert code == 0, figures["failures"]
    sklearn = figures["frameworks"]["sklearn"]
    assert set(sklearn["payloads"]) == PAYLOADS
    for entry in sklearn["payloads"].values():
        for stack in ("ours", "reference"):
            assert entry[stack]["requests"] > 0
            assert entry[stack]["errors"] == 0
            assert len(entry[stack]["runs_rps"]) == 2
        assert entry["ceiling_calls_per_s"] > 0
        assert entry["rps_ratio"] > 0
    assert all(mib > 0 for mib in sklearn["peak_rss_mib"].values())
    assert sklearn["train"]["entrypoint_s"] > 0 and sklearn["train"]["direct_s"] > 0


def test_every_server_it_started_exited_0_after_sigterm(short_run):
    _, figures, _ = short_run
    assert figures["frameworks"]["sklearn"]["exit_codes"] == {"ours": [0], "reference": [0]}


def test_the_report_names_every_target(short_run):
    _, figures, _ = short_run
    names = [target["target"] for target in figures["targets"]]
    assert any("csv-1: req/s vs reference" in name for name in names)
    assert any("train entrypoint overhead" in name for name in names)
    assert any("fraction of in-process ceiling" in name for name in names)


@pytest.fixture
def failing_server(tmp_path):
    """The reference stack with no model: /ping and /invocations answer 500."""
    project = harness.Project(root=tmp_path, base_dir=tmp_path)
    server = harness.reference_server(project, workers=1, log_dir=tmp_path)
    yield server
    server.stop()


def test_a_server_that_never_gets_healthy_is_reported(failing_server):
    with pytest.raises(RuntimeError, match="did not answer /ping"):
        failing_server.wait_healthy(timeout=1)
    assert failing_server.cpu_seconds() > 0  # it was running, just never healthy


def test_a_server_that_exits_is_reported(tmp_path):
    command = [sys.executable, "-c", "print('no model here'); raise SystemExit(3)"]
    server = harness.ServerProcess("broken", command, {}, harness.free_port(), tmp_path / "broken.log")
    with pytest.raises(RuntimeError, match=r"exited with 3[\s\S]*no model here"):
        server.wait_healthy(timeout=30)


def wait_listening(server, timeout: float = 60) -> None:
    """Until the server answers /ping at all (it never answers 200)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            connection.request("GET", "/ping")
            assert connection.getresponse().status == 500
            return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    raise AssertionError(f"the server did not listen within {timeout} s:\n{server.log_tail()}")


def test_errors_under_load_are_counted_by_the_python_client(failing_server):
    wait_listening(failing_server)
    url = f"http://127.0.0.1:{failing_server.port}/invocations"
    result = load.run_python(url, b"5.1,3.5,1.4,0.2", "text/csv", 0.3, 2)
    assert result.requests > 0
    assert result.errors == result.requests


@pytest.mark.skipif(not load.wrk_available(), reason="wrk is not installed (apt-get install -y wrk)")
def test_errors_under_load_are_counted_by_wrk(failing_server):
    wait_listening(failing_server)
    url = f"http://127.0.0.1:{failing_server.port}/invocations"
    result = load.run_wrk(url, b"5.1,3.5,1.4,0.2", "text/csv", 1, 2)
    assert result.requests > 0
    assert result.errors == result.requests


def test_without_wrk_the_command_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(load.shutil, "which", lambda name: None)
    assert run.main(["--client", "wrk"]) == 2
    assert "apt-get install -y wrk" in capsys.readouterr().err


def test_results_are_written_where_asked(short_run):
    _, figures, output = short_run
    assert Path(output).exists()
    assert figures["machine"]["cpus"] >= 1


def test_project_tests_times_the_everyday_tier_apart_from_the_slow_one(tmp_path):
    import project_tests

    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = slow: the slow tier\n")
    (tmp_path / "test_tiers.py").write_text(
        "import pytest\n\n\ndef test_everyday():\n    pass\n\n\n@pytest.mark.slow\ndef test_slow():\n    pass\n"
    )
    tiers = project_tests.measure(tmp_path, rounds=1)
    assert tiers["make test"]["summary"].startswith("1 passed, 1 deselected")
    assert tiers["make test-all"]["summary"].startswith("2 passed")
    assert not any(figures["failed"] for figures in tiers.values())
    assert all(figures["median_seconds"] > 0 for figures in tiers.values())
