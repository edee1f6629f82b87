"""What SageMaker's hosting modes ask of the server beyond /ping and /invocations, over real HTTP on 127.0.0.1.

Settings refused at start, batch transform's execution parameters, refusals that reach clients which write
the whole body before reading, 405 with Allow, bounded request heads and idle connections, Connection:
Upgrade, custom attributes and Content-Encoding.
"""

import http.client
import json
import os
import socket
import threading

import numpy as np
import pytest
import uvicorn

from {{ cookiecutter.package_name }}._runtime import custom_attributes, inference
from {{ cookiecutter.package_name }}._runtime.http_connection import MAX_HEAD_BYTES, ServingProtocol
from {{ cookiecutter.package_name }}._runtime.inference import model_fn
from {{ cookiecutter.package_name }}._runtime.server import App, ServedModel
from {{ cookiecutter.package_name }}._runtime.server_settings import LARGEST_BODY_BYTES, ServerSettings

from .support import FEATURES, csv_body, run_cli, sample_rows
from .test_server import Server, free_port, post_head, read_response

# The slow tier (`make test-all`): hosting modes and HTTP's edges, template code that model.py and data.py
# leave as it is; the everyday tier serves the model through the same server (test_server.py).
pytestmark = pytest.mark.slow

ROWS = sample_rows(2)
TWO_ROWS = csv_body(ROWS)
MEBIBYTE = 1024 * 1024
BIG = 4 * MEBIBYTE  # over the module server's limit of 1 MB, and more than a socket's buffers hold
WORKERS = 2


@pytest.fixture(scope="module")
def running(trained_tree):
    started = Server(trained_tree, SAGEMAKER_MAX_PAYLOAD_IN_MB="1", SAGEMAKER_MODEL_SERVER_TIMEOUT="3600")
    assert started.wait_until_listening()[0] == 200
    yield started
    code, log = started.stop()
    assert code == 0, log
    assert "Traceback" not in log, log
    # An asynchronous endpoint's hour-long requests: the timeout asked for is the one the workers run with.
    assert f"with {WORKERS} workers, 3600 s per request, bodies up to {MEBIBYTE} bytes" in log, log


@pytest.fixture(scope="module")
def expected(trained_tree) -> np.ndarray:
    return model_fn(trained_tree / "model").model.predict(ROWS)


def as_csv(values) -> bytes:
    return "".join(f"{value}\n" for value in values.tolist()).encode()


def connection(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def exchange(client: http.client.HTTPConnection, method, path, body=None, headers=None):
    """One request on a kept-alive connection, as boto3 and http.client send it: the whole body, then the read."""
    client.request(method, path, body=body, headers=headers or {})
    response = client.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def predict(client: http.client.HTTPConnection, body=TWO_ROWS, **headers) -> tuple[int, bytes]:
    status, _, answer = exchange(client, "POST", "/invocations", body, {"Content-Type": "text/csv", **headers})
    return status, answer


# Start: every variable SageMaker sets is checked before the server binds its port.
WORKERS_ALLOWED = f"a whole number of workers (8 per CPU at most), from 1 to {8 * (os.cpu_count() or 1)}"


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("SAGEMAKER_BIND_TO_PORT", "0", "a port number, from 1 to 65535"),
        ("SAGEMAKER_BIND_TO_PORT", "http", "a port number, from 1 to 65535"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "0", WORKERS_ALLOWED),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "1.5", WORKERS_ALLOWED),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "100000", WORKERS_ALLOWED),
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60s", "a whole number of seconds, 1 or more"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "-1", "a whole number of megabytes, from 0 to 1024"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "6.5", "a whole number of megabytes, from 0 to 1024"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "100000", "a whole number of megabytes, from 0 to 1024"),
        ("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/xml", f"one of {', '.join(inference.ACCEPT_TYPES)}"),
        ("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "*/*", f"one of {', '.join(inference.ACCEPT_TYPES)}"),
        ("SAGEMAKER_MULTI_MODEL", "yes", "true or false"),
        ("SAGEMAKER_BATCH", "1", "true or false"),
    ],
)
def test_a_bad_variable_stops_the_server_with_one_line_saying_why(tmp_path, variable, value, allowed):
    finished = run_cli("serve", base_dir=tmp_path, **{variable: value})
    assert finished.returncode != 0
    assert finished.stderr.splitlines() == [f"cannot serve: {variable} must be {allowed}, not {value!r}"]
    assert "Traceback" not in finished.stdout + finished.stderr


def test_settings_from_sagemakers_variables():
    defaults = ServerSettings.from_environ({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    assert (defaults.port, defaults.workers, defaults.timeout) == (8080, 3, 60)
    assert (defaults.max_payload_in_mb, defaults.max_payload_bytes, defaults.default_accept) == (6, 6 * MEBIBYTE, None)
    # A batch transform job waits 600 s for a mini-batch unless told otherwise; an explicit timeout wins.
    assert ServerSettings.from_environ({"SAGEMAKER_BATCH": "true"}).timeout == 600
    longer = {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3600"}
    assert ServerSettings.from_environ(longer).timeout == 3600
    unlimited = ServerSettings.from_environ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"})
    assert (unlimited.max_payload_in_mb, unlimited.max_payload_bytes) == (0, LARGEST_BODY_BYTES)
    accept = "application/json; probabilities=true"
    assert ServerSettings.from_environ({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": accept}).default_accept == accept
    assert ServerSettings.from_environ({"SAGEMAKER_BIND_TO_PORT": " 9090 "}).port == 9090


# Batch transform.


def test_execution_parameters_for_batch_transform(running):
    status, headers, body = exchange(connection(running.port), "GET", "/execution-parameters")
    assert (status, headers["content-type"]) == (200, "application/json")
    # The container's spelling of the strategy, as in SAGEMAKER_BATCH_STRATEGY (the API's is MultiRecord).
    parameters = {"MaxConcurrentTransforms": WORKERS, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}
    assert json.loads(body) == parameters


def test_no_fixed_payload_limit_takes_a_body_over_6_mb(trained_tree):
    unlimited = Server(trained_tree, SAGEMAKER_MAX_PAYLOAD_IN_MB="0")
    try:
        assert unlimited.wait_until_listening()[0] == 200
        client = connection(unlimited.port)
        status, _, body = exchange(client, "GET", "/execution-parameters")
        assert (status, json.loads(body)["MaxPayloadInMB"]) == (200, 0)
        rows = np.repeat(ROWS, 7 * MEBIBYTE // len(TWO_ROWS) + 1, axis=0)
        request = csv_body(rows)
        assert len(request) > 7 * MEBIBYTE
        status, answer = predict(client, request)
        assert status == 200, answer
        assert len(answer.splitlines()) == len(rows)
        # Still held in memory: nothing over the largest input SageMaker sends (an asynchronous inference's).
        with unlimited.connect() as sock:
            sock.sendall(post_head(content_length=LARGEST_BODY_BYTES + 1))
            assert read_response(sock) == (
                413,
                f"body of {LARGEST_BODY_BYTES + 1} bytes is over the limit of {LARGEST_BODY_BYTES} bytes\n".encode(),
            )
    finally:
        code, log = unlimited.stop()
    assert code == 0, log


# Refusals: each reaches a client that writes the whole body before it reads, and the connection goes on.


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({"Content-Type": "text/plain"}, 415, b"content type 'text/plain' is not supported"),
        ({"Content-Type": "text/csv; charset=iso-8859-1"}, 415, b"charset 'iso-8859-1' is not supported"),
        ({"Content-Type": "text/csv"}, 413, f"body of {BIG} bytes is over the limit of {MEBIBYTE} bytes".encode()),
        ({"Content-Type": "text/csv", "Accept": "image/png"}, 406, b"accept type 'image/png' is not supported"),
        ({"Content-Type": "text/csv", "Content-Encoding": "gzip"}, 415, b"content encoding 'gzip' is not supported"),
        (
            {"Content-Type": "text/csv", "X-Amzn-SageMaker-Custom-Attributes": "a" * 1025},
            400,
            b"X-Amzn-SageMaker-Custom-Attributes must be at most 1024 visible ASCII characters",
        ),
    ],
)
def test_a_refusal_reaches_a_client_that_sends_a_big_body_first(running, expected, headers, status, reason):
    client = connection(running.port)
    answer_status, _, answer = exchange(client, "POST", "/invocations", b"1," * (BIG // 2), headers)
    assert answer_status == status
    assert reason in answer
    # The refused body was read to its end: the same connection takes the next request.
    assert predict(client) == (200, as_csv(expected))
    client.close()


def test_a_refusal_reaches_a_client_that_sends_a_big_chunked_body_first(running, expected):
    client = connection(running.port)
    pieces = (b"1," * 32768 for _ in range(BIG // 65536))
    client.request("POST", "/invocations", body=pieces, headers={"Content-Type": "text/plain"}, encode_chunked=True)
    response = client.getresponse()
    assert (response.status, b"is not supported" in response.read()) == (415, True)
    assert predict(client) == (200, as_csv(expected))


def continue_head(content_type: str, length: int) -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()


def test_a_refusal_before_100_continue_closes_the_connection(running):
    # The client waits for 100 Continue before its body and sends none after a final answer: nothing follows
    # for the server to throw away, so it closes rather than take the client's next request for that body.
    with running.connect() as sock:
        sock.sendall(continue_head("text/plain", 7_000_000))
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, response.getheader("Connection")) == (415, "close")
        assert b"is not supported" in response.read()
        assert sock.recv(1) == b""  # closed by the server (the socket's timeout fails a hang)


def test_a_body_sent_after_100_continue_is_answered(running, expected):
    with running.connect() as sock:
        sock.sendall(continue_head("text/csv", len(TWO_ROWS)))
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(TWO_ROWS)
        assert read_response(sock) == (200, as_csv(expected))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/invocations", "POST"),
        ("POST", "/ping", "GET, HEAD"),
        ("DELETE", "/execution-parameters", "GET, HEAD"),
    ],
)
def test_a_405_says_which_methods_are_allowed(running, method, path, allowed):
    status, headers, body = exchange(connection(running.port), method, path, b"1," * 1000)
    assert (status, headers["allow"]) == (405, allowed)
    assert body == f"method {method} is not allowed on {path}; use {allowed}\n".encode()


# The request's head.


def test_a_head_over_the_limit_gets_a_431(running):
    with running.connect() as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * (4 * MAX_HEAD_BYTES) + b"\r\n\r\n")
        assert read_response(sock) == (431, f"the request line and headers are over {MAX_HEAD_BYTES} bytes\n".encode())
        assert sock.recv(1) == b""  # the answer ends the connection: a client reading to the end gets there
    many = "".join(f"X-Header-{index}: {'b' * 100}\r\n" for index in range(MAX_HEAD_BYTES // 100))
    with running.connect() as sock:
        sock.sendall(f"GET /ping HTTP/1.1\r\nHost: test\r\n{many}\r\n".encode())
        assert read_response(sock)[0] == 431


def test_a_head_within_the_limit_is_answered(running):
    padding = {"X-Padding": "a" * (MAX_HEAD_BYTES // 2)}
    assert exchange(connection(running.port), "GET", "/ping", headers=padding)[::2] == (200, b"healthy\n")


def test_a_request_that_is_not_http_gets_a_400(running):
    with running.connect() as sock:
        sock.sendall(b"HELLO\x00 THERE\r\n\r\n")
        assert read_response(sock) == (400, b"the request is not valid HTTP/1.1\n")


@pytest.mark.parametrize("upgrade", ["h2c", "websocket"])
def test_a_post_asking_to_upgrade_keeps_its_body(running, expected, upgrade):
    """curl --http2 on http:// sends `Connection: Upgrade, HTTP2-Settings`; the server answers in HTTP/1.1."""
    upgrading = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": upgrade}
    client = connection(running.port)
    assert predict(client, **upgrading, **{"HTTP2-Settings": "AAMAAABkAAQAoAAAAAIAAAAA"}) == (200, as_csv(expected))
    # Chunked, then requests after it on the same connection.
    assert predict(client, iter([TWO_ROWS[:9], TWO_ROWS[9:]]), **upgrading) == (200, as_csv(expected))
    assert exchange(client, "GET", "/ping", headers=upgrading)[::2] == (200, b"healthy\n")
    assert predict(client) == (200, as_csv(expected))


def test_custom_attributes_are_accepted_and_not_echoed(running, expected):
    attributes = "trace-id=" + "7" * (1024 - len("trace-id="))
    headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Custom-Attributes": attributes}
    status, answer_headers, body = exchange(connection(running.port), "POST", "/invocations", TWO_ROWS, headers)
    assert (status, body) == (200, as_csv(expected))
    assert "x-amzn-sagemaker-custom-attributes" not in answer_headers
    for unseen in ("caf\u00e9".encode().decode("latin-1"), "tab\there"):
        headers["X-Amzn-SageMaker-Custom-Attributes"] = unseen
        status, _, body = exchange(connection(running.port), "POST", "/invocations", TWO_ROWS, headers)
        assert (status, b"characters that are not visible ASCII" in body) == (400, True)


def test_content_encoding_identity_is_plain(running, expected):
    assert predict(connection(running.port), **{"Content-Encoding": "identity"}) == (200, as_csv(expected))


def test_the_content_types_parameters_reach_the_handlers(running):
    """`header=absent` says a first row of names is data: refused, where without it the row is read as a header."""
    named = ",".join(FEATURES).encode() + b"\n" + TWO_ROWS
    status, answer = predict(connection(running.port), named, **{"Content-Type": "text/csv; header=absent"})
    assert (status, b"malformed CSV" in answer) == (400, True)


# The same app and connection protocol in this process, with a short wait for a request's head.


class InProcessServer:
    def __init__(self, app: App, keep_alive_seconds: float = 1) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            http=ServingProtocol,
            ws="none",
            lifespan="off",
            timeout_keep_alive=keep_alive_seconds,
            log_config=None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "InProcessServer":
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise AssertionError("the in-process server did not start")
            self.thread.join(0.05)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def in_process(trained_tree):
    with InProcessServer(App(ServedModel(trained_tree / "model"), ServerSettings())) as running_here:
        yield running_here


def test_a_connection_that_never_sends_a_request_is_closed(in_process):
    with socket.create_connection(("127.0.0.1", in_process.port), timeout=30) as sock:
        assert sock.recv(1) == b""  # closed by the server (a socket timeout here would fail the test)
    with socket.create_connection(("127.0.0.1", in_process.port), timeout=30) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: te")  # a head that never ends
        assert sock.recv(1) == b""


def test_a_kept_alive_connection_is_closed_once_idle(in_process):
    with socket.create_connection(("127.0.0.1", in_process.port), timeout=30) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_response(sock) == (200, b"healthy\n")
        assert sock.recv(1) == b""


def test_handlers_read_the_custom_attributes_and_may_answer_some(in_process, expected, monkeypatch):
    """A project's handler reads the request's attributes and sets the answer's: here output_fn echoes them."""
    seen = []
    project_output_fn = inference.output_fn

    def output_fn(prediction, accept):
        seen.append(custom_attributes.request_custom_attributes.get())
        if seen[-1] is not None:
            custom_attributes.response_custom_attributes.set(f"echo={seen[-1]}")
        return project_output_fn(prediction, accept)

    monkeypatch.setattr(inference, "output_fn", output_fn)
    client = connection(in_process.port)
    headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Custom-Attributes": "trace-id=42"}
    status, answer_headers, body = exchange(client, "POST", "/invocations", TWO_ROWS, headers)
    assert (status, body) == (200, as_csv(expected))
    assert answer_headers["x-amzn-sagemaker-custom-attributes"] == "echo=trace-id=42"
    # The next request on the same connection has none, and its answer carries none.
    status, answer_headers, _ = exchange(client, "POST", "/invocations", TWO_ROWS, {"Content-Type": "text/csv"})
    assert (status, "x-amzn-sagemaker-custom-attributes" in answer_headers) == (200, False)
    assert seen == ["trace-id=42", None]
