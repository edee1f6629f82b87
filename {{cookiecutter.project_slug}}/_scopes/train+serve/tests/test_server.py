"""The real server, started as the container starts it, answering real HTTP on 127.0.0.1."""

import http.client
import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from .support import PACKAGE, child_environment


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


@pytest.fixture(scope="module")
def server(trained_tree):
    running = Server(trained_tree, SAGEMAKER_MAX_PAYLOAD_IN_MB="0.01")
    status, _, _ = running.wait_until_listening()
    assert status == 200
    yield running
    running.stop()


def invoke(server, body, content_type="text/csv", accept=None):
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    return server.request("POST", "/invocations", body, headers)


def test_ping_is_healthy(server):
    assert server.request("GET", "/ping")[0] == 200


def test_one_csv_row(server):
    assert invoke(server, b"5.1,3.5,1.4,0.2") == (200, "text/csv", b"0\n")


def test_many_csv_rows_answered_as_json(server):
    status, content_type, body = invoke(server, b"5.1,3.5,1.4,0.2\n7.7,3.0,6.1,2.3\n", accept="application/json")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"predictions": [0, 2]}


def test_json_in_csv_out(server):
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]})
    assert invoke(server, body, "application/json", accept="text/csv") == (200, "text/csv", b"0\n2\n")


def test_accept_with_preferences(server):
    status, content_type, _ = invoke(server, b"5.1,3.5,1.4,0.2", accept="application/xml;q=1, application/json;q=0.5")
    assert (status, content_type) == (200, "application/json")


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "reason"),
    [
        (b"5.1,3.5,1.4,0.2", "text/plain", None, 415, b"use text/csv or application/json"),
        (b"5.1,3.5,1.4,0.2", "text/csv", "application/xml", 406, b"accept type 'application/xml' is not supported"),
        (b"5.1,oops,1.4,0.2", "text/csv", None, 400, b"malformed CSV"),
        (b"5.1,3.5,1.4", "text/csv", None, 400, b"each row needs 4 features, got 3"),
        (b"{", "application/json", None, 400, b"malformed JSON"),
        (b"1," * 10_000, "text/csv", None, 413, b"over the limit"),
    ],
)
def test_bad_requests_get_a_clear_4xx(server, body, content_type, accept, status, reason):
    answer_status, answer_type, answer = invoke(server, body, content_type, accept)
    assert answer_status == status
    assert answer_type.startswith("text/plain")
    assert reason in answer
    assert answer.count(b"\n") == 1
    assert invoke(server, b"5.1,3.5,1.4,0.2")[0] == 200


def test_missing_model_is_unhealthy_with_a_reason(tmp_path):
    (tmp_path / "model").mkdir()
    running = Server(tmp_path)
    try:
        status, _, body = running.wait_until_listening()
        assert status == 503
        assert b"cannot load the model" in body
        assert invoke(running, b"5.1,3.5,1.4,0.2")[0] == 503
    finally:
        code, log = running.stop()
    assert code == 0
    assert log.count("cannot load the model") == 1


def test_sigterm_stops_the_server_cleanly(trained_tree):
    running = Server(trained_tree)
    assert running.wait_until_listening()[0] == 200
    code, _ = running.stop()
    assert code == 0
