"""The real server, started as the container starts it, answering real HTTP on 127.0.0.1."""

import http.client
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from {{ cookiecutter.package_name }}._runtime.inference import model_fn
from {{ cookiecutter.package_name }}._runtime.server import THREAD_VARIABLES, ServedModel, negotiate, share_cores

from .support import FEATURES, PACKAGE, SCHEMA, child_environment, csv_body, sample_rows

ROWS = sample_rows(2)
ONE_ROW = csv_body(ROWS[:1]).strip()
TWO_ROWS = csv_body(ROWS)
WIDTH = len(FEATURES)
FLOATS = np.array([kind == "float" for _, kind in SCHEMA.features])
PAYLOAD_LIMIT = 1024 * 1024  # bytes: the module server runs with SAGEMAKER_MAX_PAYLOAD_IN_MB=1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, base_dir, **variables):
        self.port = free_port()
        environ = child_environment(
            base_dir, SAGEMAKER_BIND_TO_PORT=str(self.port), SAGEMAKER_MODEL_SERVER_WORKERS="2", **variables
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", PACKAGE, "serve"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type"), response.read()
        finally:
            connection.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def wait_until_listening(self, deadline_seconds=60):
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.process.stdout.read()}")
            try:
                return self.request("GET", "/ping")
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server did not answer /ping in time")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        return code, self.process.stdout.read()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def post_head(content_length: int | None = None, content_type: str = "text/csv") -> bytes:
    length = "Transfer-Encoding: chunked" if content_length is None else f"Content-Length: {content_length}"
    return f"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n{length}\r\n\r\n".encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.fixture(scope="module")
def server(trained_tree):
    running = Server(trained_tree, SAGEMAKER_MAX_PAYLOAD_IN_MB="1")
    status, _, _ = running.wait_until_listening()
    assert status == 200
    yield running
    code, log = running.stop()
    # Nothing this module sent may have killed a worker or escaped as a traceback.
    assert code == 0, log
    assert "Traceback" not in log, log
    assert log.count("Booting worker") == 2, log
    # Each of the two workers gets its share of the CPUs, where this environment does not say otherwise.
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert all(f"{name}={os.environ.get(name, share)}" in log for name in THREAD_VARIABLES), log


@pytest.fixture(scope="module")
def model(trained_tree):
    return model_fn(trained_tree / "model")


@pytest.fixture(scope="module")
def known_rows() -> np.ndarray:
    return sample_rows()


def as_csv(values) -> bytes:
    return "".join(f"{value}\n" for value in values.tolist()).encode()


@pytest.fixture(scope="module")
def expected(model) -> np.ndarray:
    """What the model answers for ROWS in process: the server must answer the same."""
    return model.model.predict(ROWS)


@pytest.fixture(scope="module")
def expected_one(model) -> np.ndarray:
    """The answer for ONE_ROW sent alone (a float32 network may round a row differently within a batch)."""
    return model.model.predict(ROWS[:1])


def invoke(server, body, content_type="text/csv", accept=None):
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    return server.request("POST", "/invocations", body, headers)


def test_workers_share_the_cpus_unless_a_variable_says_otherwise(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    environ = {"OMP_NUM_THREADS": "3"}
    share_cores(4, environ)
    assert environ == {name: "3" if name == "OMP_NUM_THREADS" else "2" for name in THREAD_VARIABLES}
    more_workers_than_cpus = {}
    share_cores(16, more_workers_than_cpus)
    assert set(more_workers_than_cpus.values()) == {"1"}


def test_ping_is_healthy(server):
    assert server.request("GET", "/ping")[0] == 200


def test_one_csv_row(server, expected_one):
    assert invoke(server, ONE_ROW) == (200, "text/csv", as_csv(expected_one))


def test_many_csv_rows_answered_as_json(server, expected):
    status, content_type, body = invoke(server, TWO_ROWS, accept="application/json")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"predictions": expected.tolist()}


def test_json_in_csv_out(server, expected):
    body = json.dumps({"instances": ROWS.tolist()})
    assert invoke(server, body, "application/json", accept="text/csv") == (200, "text/csv", as_csv(expected))


def test_json_records_by_name(server, expected):
    body = json.dumps({"instances": [dict(zip(FEATURES, row, strict=True)) for row in ROWS.tolist()]})
    status, content_type, answer = invoke(server, body, "application/json")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(answer) == {"predictions": expected.tolist()}


def test_a_record_missing_a_feature_gets_a_400_naming_it(server):
    record = dict(zip(FEATURES[1:], ROWS[0].tolist()[1:], strict=True))
    status, _, answer = invoke(server, json.dumps({"instances": [record]}), "application/json")
    assert status == 400
    assert f"record 0: missing '{FEATURES[0]}'".encode() in answer


def test_probabilities_when_accept_asks_for_them(server, model, expected):
    status, content_type, answer = invoke(server, TWO_ROWS, accept="application/json; probabilities=true")
    if model.schema.is_classification:
        assert (status, content_type) == (200, "application/json")
        document = json.loads(answer)
        assert document["predictions"] == expected.tolist()
        assert len(document["probabilities"]) == len(ROWS)
    else:
        assert status == 406
        assert b"classifiers only" in answer


def test_accept_with_preferences(server):
    status, content_type, _ = invoke(server, ONE_ROW, accept="application/xml;q=1, application/json;q=0.5")
    assert (status, content_type) == (200, "application/json")


@pytest.mark.parametrize(
    ("header", "choice"),
    [
        ("*/*", "text/csv"),
        ("application/json", "application/json"),
        ("text/csv;q=0, */*", "application/json"),
        ("application/*;q=0.9, text/csv;q=0.5", "application/json"),
        ("text/*", "text/csv"),
        ("application/xml", None),
        ("text/csv;q=zero", None),
        (";;, ,", None),
    ],
)
def test_accept_negotiation(header, choice):
    assert negotiate(header, ("text/csv", "application/json")) == choice


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "reason"),
    [
        (ONE_ROW, "text/plain", None, 415, b"use text/csv or application/json"),
        (ONE_ROW, "text/csv", "application/xml", 406, b"accept type 'application/xml' is not supported"),
        (b"oops" + ONE_ROW[ONE_ROW.index(b",") :], "text/csv", None, 400, b"malformed CSV"),
        (ONE_ROW[: ONE_ROW.rindex(b",")], "text/csv", None, 400, f"needs {WIDTH} features".encode()),
        (b"{", "application/json", None, 400, b"malformed JSON"),
        (b"[" * 5_000, "application/json", None, 400, b"malformed JSON"),
        (b"[[1e999" + b", 1" * (WIDTH - 1) + b"]]", "application/json", None, 400, b"finite"),
        (b"[[" + b"9" * 400 + b", 1" * (WIDTH - 1) + b"]]", "application/json", None, 400, b"not a number"),
        (b"1," * PAYLOAD_LIMIT, "text/csv", None, 413, b"over the limit"),
    ],
)
def test_bad_requests_get_a_clear_4xx(server, body, content_type, accept, status, reason):
    answer_status, answer_type, answer = invoke(server, body, content_type, accept)
    assert answer_status == status
    assert answer_type.startswith("text/plain")
    assert reason in answer
    assert answer.count(b"\n") == 1
    assert invoke(server, ONE_ROW)[0] == 200


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/invocations", 405), ("GET", "/predict", 404)])
def test_other_routes_are_refused(server, method, path, status):
    assert server.request(method, path)[0] == status


def test_oversized_body_is_refused_before_it_arrives(server):
    with server.connect() as sock:
        sock.sendall(post_head(content_length=100 * 1024 * 1024) + ONE_ROW)  # promises 100 MB, sends 15 bytes
        status, answer = read_response(sock)
    assert status == 413
    assert b"over the limit" in answer


def test_oversized_chunked_body_is_refused_while_still_arriving(server):
    with server.connect() as sock:
        sock.sendall(post_head() + b"".join(chunk(b"1," * 500) for _ in range(PAYLOAD_LIMIT // 1000 + 1)))
        status, answer = read_response(sock)  # the last chunk was never sent: the server did not wait for it
    assert status == 413
    assert b"over the limit" in answer


def test_chunked_body_within_the_limit(server, expected):
    with server.connect() as sock:
        sock.sendall(post_head() + chunk(TWO_ROWS[:7]) + chunk(TWO_ROWS[7:]) + b"0\r\n\r\n")
        assert read_response(sock) == (200, as_csv(expected))


class Exploit:
    """A pickle that would leave a file behind if any server ever unpickled it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "content_type", ["application/python-pickle", "application/x-npy", "application/octet-stream", "text/csv"]
)
def test_request_bodies_are_never_unpickled(server, tmp_path, content_type):
    marker = tmp_path / "unpickled"
    status, _, _ = invoke(server, pickle.dumps(Exploit(marker)), content_type)
    assert status in (400, 415)
    assert not marker.exists()


def test_a_burst_of_concurrent_requests_gets_every_answer_right(server, model, known_rows):
    """500 requests over 16 connections, each with its own rows: no answer lost or mixed up."""
    rng = np.random.default_rng(0)
    cases = []
    for index in range(500):
        picked = known_rows[rng.integers(len(known_rows), size=int(rng.integers(1, 9)))]
        rows = np.round(picked + rng.normal(0, 0.3, picked.shape) * FLOATS, 2)  # int features stay whole
        as_json = index % 2 == 1
        body = json.dumps(rows.tolist()) if as_json else "\n".join(",".join(map(str, row)) for row in rows.tolist())
        accept = "text/csv" if index % 3 == 0 else "application/json"
        cases.append((body.encode(), "application/json" if as_json else "text/csv", accept, model.model.predict(rows)))

    def send_all(mine):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # kept alive throughout
        answers = []
        for body, content_type, accept, _ in mine:
            connection.request("POST", "/invocations", body, {"Content-Type": content_type, "Accept": accept})
            response = connection.getresponse()
            answers.append((response.status, response.read()))
        connection.close()
        return answers

    connections = 16
    with ThreadPoolExecutor(connections) as pool:
        batches = list(pool.map(send_all, [cases[start::connections] for start in range(connections)]))
    for start, answers in enumerate(batches):
        for (status, answer), (_, _, accept, expected) in zip(answers, cases[start::connections], strict=True):
            assert status == 200, answer
            if accept == "text/csv":
                assert answer.decode().splitlines() == [str(value) for value in expected.tolist()]
            else:
                assert json.loads(answer) == {"predictions": expected.tolist()}


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40)
cells = st.one_of(st.floats(), st.integers(), st.just(10**400), st.text(max_size=4))
csv_bodies = st.lists(st.lists(cells, max_size=6), max_size=6).map(
    lambda rows: "\n".join(",".join(map(str, row)) for row in rows).encode()
)
json_bodies = st.recursive(
    st.none() | st.booleans() | cells,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.sampled_from(["instances", "x"]), inner),
    max_leaves=30,
).map(lambda document: json.dumps(document).encode())
known_types = st.sampled_from(["text/csv", "application/json", "text/csv; charset=utf-8", "application/x-npy", ""])


def test_arbitrary_requests_never_get_a_5xx(server, expected_one):
    @settings(max_examples=100, deadline=None, database=None)
    @given(
        body=st.one_of(st.binary(max_size=2048), csv_bodies, json_bodies),
        content_type=st.one_of(st.none(), known_types, header_text),
        accept=st.one_of(st.none(), known_types, header_text),
    )
    def throw(body, content_type, accept):
        headers = {name: value for name, value in (("Content-Type", content_type), ("Accept", accept)) if value}
        status, _, answer = server.request("POST", "/invocations", body, headers)
        assert status in (200, 400, 406, 413, 415), (status, answer)

    throw()
    assert server.request("GET", "/ping")[0] == 200
    assert invoke(server, ONE_ROW) == (200, "text/csv", as_csv(expected_one))


def test_a_corrupt_model_is_a_reason_not_a_crash(tmp_path, trained_tree, caplog):
    shutil.copytree(trained_tree / "model", tmp_path / "model")
    for path in (tmp_path / "model").rglob("*"):
        if path.is_file():
            path.write_bytes(b"not a model")
    loaded = ServedModel(tmp_path / "model")
    assert loaded.model is None
    assert loaded.error.startswith(f"cannot load the model from {tmp_path / 'model'}: ")
    assert [record.getMessage() for record in caplog.records if record.name.endswith(".server")] == [loaded.error]


def test_missing_model_is_unhealthy_with_a_reason(tmp_path):
    (tmp_path / "model").mkdir()
    running = Server(tmp_path)  # two workers, each loading the model itself
    try:
        status, _, body = running.wait_until_listening()
        assert status == 503
        assert b"cannot load the model" in body
        for _ in range(5):
            assert running.request("GET", "/ping")[0] == 503
        assert invoke(running, ONE_ROW)[0] == 503
        # A client that writes a big body before reading gets the 503 too; then the connection closes cleanly.
        with running.connect() as sock:
            big = b"1," * (2 * 1024 * 1024)
            sock.sendall(post_head(content_length=len(big)) + big)
            status, answer = read_response(sock)
            assert (status, b"cannot load the model" in answer) == (503, True)
            assert sock.recv(1) == b""  # closed once the body was read: not reset
    finally:
        code, log = running.stop()
    assert code == 0
    # Once per worker that booted before the stop (both, unless the stop came first), never once per ping.
    assert 1 <= log.count("cannot load the model") <= 2, log
    assert "Traceback" not in log


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(trained_tree, expected):
    running = Server(trained_tree)
    assert running.wait_until_listening()[0] == 200
    body = TWO_ROWS
    with running.connect() as sock:
        sock.sendall(post_head(content_length=len(body)) + body[:10])
        time.sleep(0.3)  # a worker holds the request and waits for the rest of its body
        running.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)
        sock.sendall(body[10:])  # the rest arrives while the server is shutting down
        answer = read_response(sock)
    code, log = running.stop()
    assert answer == (200, as_csv(expected))
    assert code == 0, log
    assert time.monotonic() - signalled < 20, "SageMaker kills the container 30 s after SIGTERM"
