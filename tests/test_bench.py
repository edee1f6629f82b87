"""The benchmark's harness is right: it renders, trains, measures, stops its servers and reports errors.

No speed is asserted: speed is what `bench/run.py` and `bench/training.py` print. These runs use the Python client, so
they need no wrk; the wrk driver is checked too where wrk is installed.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import TEMPLATE_DIR

sys.path.insert(0, str(TEMPLATE_DIR / "bench"))

import anchors
import harness
import load
import run
import training

PAYLOADS = {"csv-1", "json-1", "csv-100", "json-100"}


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[int, dict, str]:
    output = tmp_path_factory.mktemp("bench") / "figures.json"
    argv = ["--frameworks", "sklearn", "--client", "python", "--seconds", "0.3", "--rounds", "2"]
    argv += ["--cold-starts", "0", "--train-runs", "1", "--ceiling-seconds", "0.1", "--connections", "2"]
    argv += ["--stacks", "ours", "reference"]  # the anchors install their own environments: too slow here
    argv += ["--training-rows", "200", "--batch-records", "3000"]
    code = run.main([*argv, "--output", str(output)])
    return code, json.loads(output.read_text(encoding="utf-8")), str(output)


def test_a_short_run_reports_training_throughput_beside_serving(short_run):
    _, figures, _ = short_run
    (case,) = figures["training"]["cases"]
    assert (case["framework"], case["rows"]) == ("sklearn", 200)
    assert "error" not in case, case
    assert "sklearn" in training.table(figures["training"])


def test_a_short_run_reports_batch_transform_throughput(short_run):
    _, figures, _ = short_run
    batch = figures["frameworks"]["sklearn"]["batch_transform"]
    assert batch["records"] == 3000
    for content_type in ("text/csv", "application/jsonlines"):
        assert batch[content_type]["records_per_s"] > 0
        assert len(batch[content_type]["runs_records_per_s"]) == 2
        assert batch[content_type]["max_concurrent_transforms"] == figures["settings"]["workers"]
    assert "batch transform (ours)" in run.table(figures)


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


def test_a_server_that_never_answers_rightly_is_reported(failing_server):
    payload = harness.Payload("csv-1", "text/csv", b"5.1,3.5,1.4,0.2\n")
    with pytest.raises(RuntimeError, match="gave no right answer"):
        failing_server.wait_answered(payload, ["0"], timeout=1)


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


@pytest.fixture(scope="module")
def training_run(tmp_path_factory) -> tuple[int, str, dict]:
    """bench/training.py from its command line at a tiny size: scikit-learn (one pass) and PyTorch (batches)."""
    output = tmp_path_factory.mktemp("training") / "figures.json"
    command = [sys.executable, str(TEMPLATE_DIR / "bench" / "training.py"), "--frameworks", "sklearn", "pytorch"]
    command += ["--rows", "300", "--epochs", "1", "--json", str(output)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    figures = json.loads(output.read_text(encoding="utf-8")) if output.exists() else {}
    return finished.returncode, finished.stdout + finished.stderr, figures


def table_rows(printed: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in printed.splitlines() if line.startswith(("| sklearn", "| pytorch"))]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows}


def test_the_training_bench_prints_one_row_per_framework_with_positive_figures(training_run):
    code, printed, _ = training_run
    assert code == 0, printed
    header = next(line for line in printed.splitlines() if line.startswith("| framework"))
    assert len(header.strip("|").split("|")) == 12
    rows = table_rows(printed)
    assert set(rows) == {"sklearn", "pytorch"}, printed
    assert rows["pytorch"][:3] == ["300", "32", "1"]  # rows, batch size (the default below 30,000 rows), epochs
    assert rows["sklearn"][:3] == ["300", "-", "-"]  # an estimator has neither
    for cells in rows.values():
        rates, memory = cells[3:8], cells[8:10]  # rows/s ours and bare, ratio, read s, job s; peak MiB
        assert all(float(value.replace(",", "")) > 0 for value in rates + memory), cells
    assert "cores" in printed and "load average" in printed


def test_the_training_bench_times_every_phase_of_both_sides(training_run):
    code, printed, figures = training_run
    assert code == 0, printed
    assert figures["machine"]["cores"] >= 1 and len(figures["load_average_at_start"]) == 3
    assert [case["framework"] for case in figures["cases"]] == ["sklearn", "pytorch"]
    for case in figures["cases"]:
        ours, bare = case["ours"], case["bare"]
        assert set(ours["phases"]) == {"read_s", "fit_s", "evaluate_s"}
        assert all(seconds > 0 for seconds in ours["phases"].values())
        assert ours["process_wall_s"] > ours["fit_s"] + ours["phases"]["read_s"]
        assert bare["fit_s"] > 0 and bare["peak_mib"] > 0 and ours["peak_mib"] > 0
        assert case["ours_rows_per_s"] == pytest.approx(300 / ours["fit_s"])
        assert case["ratio"] == pytest.approx(ours["fit_s"] / bare["fit_s"])
        assert len(case["load_average_before"]) == len(case["load_average_after"]) == 3
        # Both sides learnt the synthetic rule from the same rows (a tree nearly all of it).
        assert 0 < ours["metrics"]["train:accuracy"] <= 1 and 0 < bare["metrics"]["train:accuracy"] <= 1
    assert figures["cases"][0]["ours"]["metrics"]["train:accuracy"] > 0.8


def test_a_failing_training_child_is_reported_with_its_output(tmp_path):
    spec = {"kind": "bare", "framework": "pytorch", "package": "no_such_package", "case": str(tmp_path)}
    with pytest.raises(RuntimeError, match=r"bare exited with 1[\s\S]*No module named 'no_such_package'"):
        training.run_child(spec, tmp_path, training.child_environment(tmp_path, threads=1))


def test_only_our_runs_see_the_streaming_setting_and_threads_are_set_for_both(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAM_DATA_ABOVE_MB", "0")  # the caller's own setting reaches neither side
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plain = training.child_environment(tmp_path, threads=1)
    assert "STREAM_DATA_ABOVE_MB" not in plain
    assert plain["OMP_NUM_THREADS"] == plain["TF_NUM_INTRAOP_THREADS"] == "1"
    assert plain["PYTHONPATH"] == str(tmp_path / "src")
    assert training.child_environment(tmp_path, threads=1, STREAM_DATA_ABOVE_MB="0")["STREAM_DATA_ABOVE_MB"] == "0"
    assert "OMP_NUM_THREADS" not in training.child_environment(tmp_path, threads=0)


def test_synthetic_training_data_follows_the_schema_and_is_repeatable():
    features, labels = training.synthetic({"width": "float", "count": "int"}, 3, "classification", 2000, seed=5)
    again, same = training.synthetic({"width": "float", "count": "int"}, 3, "classification", 2000, seed=5)
    assert np.array_equal(features, again) and np.array_equal(labels, same)
    assert features.shape == (2000, 2) and np.array_equal(features[:, 1], np.round(features[:, 1]))
    assert np.array_equal(features[:, 0], np.round(features[:, 0], 4))
    assert set(np.unique(labels)) == {0, 1, 2}
    assert [training.default_batch_size(rows) for rows in (10_000, 100_000, 1_000_000)] == [32, 128, 512]


def test_each_framework_gets_the_anchors_that_can_serve_it():
    assert anchors.applicable("sklearn") == ["ours", "reference", "mms"]
    assert anchors.applicable("pytorch") == ["ours", "mms", "torchserve"]
    assert anchors.applicable("tensorflow") == ["ours", "mms"]
    assert all(anchors.low_port() < 32768 for _ in range(5))  # MMS refuses higher ports


def stack_figures(rps: float, p99_ms: float, runs: list[float]) -> dict:
    return {"rps": rps, "p50_ms": p99_ms / 2, "p99_ms": p99_ms, "errors": 0, "requests": 1, "runs_rps": runs}


def framework_figures(framework: str, stacks: dict[str, tuple[float, float]]) -> dict:
    """A framework's figures as bench_serving makes them: our req/s 1,000 on 2 workers, a single-thread rate 600."""
    entries = {
        payload: run.payload_entry({name: stack_figures(*row, [row[0]]) for name, row in stacks.items()}, 600.0, 2)
        for payload in ("csv-1", "csv-100")
    }
    entries["csv-1"]["ours"]["runs_rps"] = [1000.0, 700.0]  # one round below 80% of the median
    return {
        "framework": framework,
        "payloads": entries,
        "cold_start_s": dict.fromkeys(stacks, 1.0),
        "cold_start_cpu_s": dict.fromkeys(stacks, 0.5),
        "ready_answer_s": {name: 1.0 if name == "ours" else 4.0 for name in stacks},
        "peak_rss_mib": dict.fromkeys(stacks, 100.0),
        "exit_codes": {name: [0] for name in stacks},
        "train": {f"{kind}_{unit}": 1.0 for kind in ("entrypoint", "direct", "overhead") for unit in ("s", "cpu_s")},
    }


def test_the_table_and_the_targets_set_ours_against_every_anchor():
    frameworks = {
        "sklearn": framework_figures("sklearn", {"ours": (1000, 2.0), "reference": (200, 8.0), "mms": (250, 1.0)}),
        "pytorch": framework_figures("pytorch", {"ours": (1000, 2.0), "mms": (300, 9.0), "torchserve": (400, 6.0)}),
    }
    entry = frameworks["sklearn"]["payloads"]["csv-1"]
    assert entry["ceiling_rps"] == 1200 and entry["fraction_of_ceiling"] == pytest.approx(1000 / 1200)
    assert entry["vs"]["mms"] == {"rps_ratio": 4.0, "p99_ratio": 0.5} and entry["rps_ratio"] == 5.0
    found = {target["target"]: target for target in run.targets(frameworks)}
    assert found["sklearn csv-1: req/s vs mms"]["met"] and found["sklearn csv-100: req/s vs mms"]["threshold"] == 2.5
    assert not found["sklearn csv-1: mms p99 / ours (ours lower)"]["met"]  # MMS's p99 1 ms, ours 2 ms
    assert not found["sklearn csv-1: our slowest round / our median"]["met"]
    assert found["sklearn csv-100: our slowest round / our median"]["met"]
    assert found["sklearn csv-1: fraction of in-process ceiling (workers x single-thread rate)"]["met"]
    assert found["sklearn: MMS / our seconds to a first right answer"]["value"] == 4.0
    assert found["pytorch csv-1: req/s vs torchserve"]["value"] == 2.5
    assert found["pytorch csv-100: torchserve p99 / ours (ours lower)"]["met"]
    machine = {"cpus": 2, "load_average": (0.5, 0.5, 0.5)}
    settings = {"workers": 2, "client": "wrk", "connections": 8, "seconds": 5, "rounds": 3}
    results = {"settings": settings, "machine": machine, "frameworks": frameworks, "targets": list(found.values())}
    printed = run.table(results)
    rows = [line.split() for line in printed.splitlines()]
    assert ["pytorch", "csv-1", "torchserve", "400", "2.50x", "3.00", "6.00", "3.00x", "0", "-"] in rows
    assert ["sklearn", "csv-1", "ours", "1,000", "-", "1.00", "2.00", "-", "0", "83%"] in rows
    assert ["sklearn", "mms", "1.00", "0.50", "4.00", "4.00", "100", "1.00", "all", "0"] in rows
    assert "[MISSED] sklearn csv-1: mms p99 / ours (ours lower): 0.5 (target 1)" in printed
    assert run.failures(results) == []
    frameworks["sklearn"]["payloads"]["csv-1"]["mms"]["errors"] = 2  # an anchor's, shown in the table
    frameworks["sklearn"]["payloads"]["csv-100"]["ours"]["errors"] = 1
    assert run.failures(results) == ["sklearn csv-100 ours: 1 errors"]
