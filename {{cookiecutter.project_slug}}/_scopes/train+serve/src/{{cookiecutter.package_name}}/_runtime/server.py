"""The HTTP server SageMaker talks to: GET /ping and POST /invocations on port 8080.

A small ASGI app served by uvicorn workers (httptools parser, uvloop, keep-alive) under a
gunicorn master that restarts a worker that dies or hangs. Each worker loads the model itself
after the fork (deep-learning runtimes do not survive a fork once loaded) and runs one request
at a time on its event loop, like a sync worker, without the per-request connection set-up.
Settings come from SageMaker's variables: SAGEMAKER_BIND_TO_PORT, SAGEMAKER_MODEL_SERVER_WORKERS,
SAGEMAKER_MODEL_SERVER_TIMEOUT, SAGEMAKER_MAX_PAYLOAD_IN_MB, SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT and
SAGEMAKER_BATCH, each checked before the server starts. GET /execution-parameters tells a batch
transform job how to send its records. ServingProtocol keeps refusals readable by clients that write
the whole body first, and bounds request heads and idle connections.
With SAGEMAKER_MULTI_MODEL=true it serves the models SageMaker loads through /models instead
(multi_model.py), each invoked at /models/<name>/invoke under the rules of /invocations.
The workers share the CPUs: each runs its framework's maths on its share of them (`share_cores`).
On SIGTERM the server stops accepting connections, lets requests in flight finish, and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools
from gunicorn.app.base import BaseApplication
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from . import inference, multi_model
from .environment import SageMakerEnvironment
from .payloads import PROBABILITIES, check_content_encoding, wants_probabilities

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# SageMaker stops an instance 30 s after SIGTERM; finish in-flight requests well before that.
GRACEFUL_TIMEOUT_SECONDS = 20
# Longer than the usual 60 s idle timeout of a proxy in front, so the server is never the side
# that closes a connection while a request is being sent on it. Also how long a new connection, or
# one whose last request was answered, has to send a whole request head (ServingProtocol).
KEEPALIVE_SECONDS = 75
TEXT = "text/plain; charset=utf-8"
MEBIBYTE = 1024 * 1024
DEFAULT_MAX_PAYLOAD_IN_MB = 6  # InvokeEndpoint's own limit
# SAGEMAKER_MAX_PAYLOAD_IN_MB=0 means no fixed limit, as in batch transform. A body is still held in a
# worker's memory, so none may exceed the largest input SageMaker sends anywhere: an asynchronous
# inference's 1 GB. A refused body is read and thrown away up to the same size (ServingProtocol).
LARGEST_BODY_BYTES = 1024 * MEBIBYTE
DEFAULT_TIMEOUT_SECONDS = 60  # a real-time endpoint's: InvokeEndpoint gives up after 60 s
# How long a batch transform job waits for a mini-batch unless its ModelClientConfig says otherwise.
BATCH_TIMEOUT_SECONDS = 600
# Request lines and headers add up to less than this (SageMaker's own headers take a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024
# The headers that say where a request's body ends.
FRAMING_HEADERS = (b"content-length", b"transfer-encoding")
# The methods each of the server's own paths answers: a 405 lists them in Allow.
METHODS = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",), "/execution-parameters": ("GET", "HEAD")}
CUSTOM_ATTRIBUTES = b"x-amzn-sagemaker-custom-attributes"
MAX_CUSTOM_ATTRIBUTES = 1024
# The request's X-Amzn-SageMaker-Custom-Attributes (None without one), for the handlers to read while they
# answer it; the answer carries the header only when a handler sets `response_custom_attributes`.
request_custom_attributes: ContextVar[str | None] = ContextVar("request_custom_attributes", default=None)
response_custom_attributes: ContextVar[str | None] = ContextVar("response_custom_attributes", default=None)
MULTI_MODEL_INVOCATIONS = (
    b"this endpoint serves several models (SAGEMAKER_MULTI_MODEL=true): use POST /models/<name>/invoke\n"
)
# What the frameworks read, when they start in a worker, for the threads of their maths: OpenMP's
# (PyTorch, scikit-learn's compiled estimators), MKL's, and TensorFlow's two pools.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


class PayloadTooLarge(inference.InferenceError):
    status = 413


class ClientDisconnected(Exception):
    """The client went away before sending the whole body: there is no one to answer."""


@dataclass(frozen=True)
class ServerSettings:
    """SageMaker's variables for the server, each checked at start: a bad one stops it with the reason."""

    port: int = 8080
    workers: int = 1
    timeout: int = DEFAULT_TIMEOUT_SECONDS
    max_payload_in_mb: int = DEFAULT_MAX_PAYLOAD_IN_MB
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_IN_MB * MEBIBYTE
    default_accept: str | None = None
    multi_model: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ServerSettings:
        batch = _true_or_false(environ, "SAGEMAKER_BATCH")
        megabytes = _whole_number(
            environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", DEFAULT_MAX_PAYLOAD_IN_MB, "a whole number of megabytes", 0
        )
        return cls(
            port=_whole_number(environ, "SAGEMAKER_BIND_TO_PORT", 8080, "a port number", 1, 65535),
            workers=_whole_number(
                environ, "SAGEMAKER_MODEL_SERVER_WORKERS", os.cpu_count() or 1, "a whole number of workers", 1
            ),
            timeout=_whole_number(
                environ,
                "SAGEMAKER_MODEL_SERVER_TIMEOUT",
                BATCH_TIMEOUT_SECONDS if batch else DEFAULT_TIMEOUT_SECONDS,
                "a whole number of seconds",
                1,
            ),
            max_payload_in_mb=megabytes,
            max_payload_bytes=megabytes * MEBIBYTE if megabytes else LARGEST_BODY_BYTES,
            default_accept=_default_accept(environ, "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"),
            multi_model=_true_or_false(environ, "SAGEMAKER_MULTI_MODEL"),
        )


def _whole_number(
    environ: Mapping[str, str], name: str, default: int, what: str, minimum: int, maximum: int | None = None
) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    value = int(text) if text.isascii() and text.isdigit() else None
    if value is not None and value >= minimum and (maximum is None or value <= maximum):
        return value
    allowed = f"from {minimum} to {maximum}" if maximum else f"{minimum} or more"
    raise ValueError(f"{name} must be {what}, {allowed}, not {environ[name]!r}")


def _default_accept(environ: Mapping[str, str], name: str) -> str | None:
    """The answer's type for a request without Accept: one the handlers write, parameters allowed."""
    text = environ.get(name, "").strip()
    if not text:
        return None
    if inference.media_type(text) not in inference.ACCEPT_TYPES:
        raise ValueError(f"{name} must be one of {', '.join(inference.ACCEPT_TYPES)}, not {environ[name]!r}")
    return text


def _true_or_false(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "false").strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, not {environ[name]!r}")
    return value == "true"


class ServedModel:
    """The model, or the reason there is none (reported by /ping, logged once)."""

    def __init__(self, model_dir: Path) -> None:
        self.model: Any = None
        self.error: str | None = None
        try:
            self.model = inference.model_fn(model_dir)
        except Exception as error:  # any failure to load means "unhealthy", never a crash loop
            self.error = f"cannot load the model from {model_dir}: {type(error).__name__}: {error}"
            logger.error(self.error)


def negotiate(header: str, supported: Sequence[str]) -> str | None:
    """The supported type an Accept header ranks highest (ties go to the first); None if none is acceptable."""
    ranges: dict[str, float] = {}
    for item in header.split(","):
        media, *params = item.split(";")
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media.strip():
            ranges.setdefault(media.strip().lower(), quality if math.isfinite(quality) else 0.0)
    best, best_quality = None, 0.0
    for candidate in supported:
        # The most specific range that matches decides (text/csv;q=0 beats */*).
        patterns = (candidate, candidate.split("/")[0] + "/*", "*/*")
        quality = next((ranges[pattern] for pattern in patterns if pattern in ranges), 0.0)
        if quality > best_quality:
            best, best_quality = candidate, quality
    return best


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class App:
    """The ASGI application. Handlers run on the worker's event loop: one request at a time."""

    def __init__(
        self, loaded: ServedModel | None, settings: ServerSettings, models: multi_model.ModelStore | None = None
    ) -> None:
        self.loaded = loaded  # None when serving several models (`models`)
        self.settings = settings
        self.models = models

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/ping" and method in ("GET", "HEAD"):
            await self._ping(send)
        elif self.models is not None and (path == "/models" or path.startswith("/models/")):
            await self._models(scope, receive, send)
        elif path == "/invocations" and method == "POST":
            await self._invoke(scope, receive, send)
        elif path == "/execution-parameters" and method in ("GET", "HEAD"):
            await self._execution_parameters(send)
        elif path in METHODS:
            allowed = ", ".join(METHODS[path])
            reason = f"method {method} is not allowed on {path}; use {allowed}\n"
            await _respond(send, 405, reason.encode(), TEXT, headers=[(b"allow", allowed.encode())])
        else:
            await _respond(send, 404, f"no such path: {path}; use /ping or /invocations\n".encode(), TEXT)

    async def _ping(self, send: Send) -> None:
        if self.models is not None:
            self.models.forget_unloaded()  # an idle worker frees what another worker unloaded
        if self.loaded is not None and self.loaded.model is None:
            await _respond(send, 503, f"unhealthy: {self.loaded.error}\n".encode(), TEXT)
        else:
            await _respond(send, 200, b"healthy\n", TEXT)

    async def _execution_parameters(self, send: Send) -> None:
        """What a batch transform job uses where it sets none itself: a request per worker at a time, each
        holding as many records as fit under the payload limit (0: no fixed limit, as the job's own 0)."""
        document = {
            "MaxConcurrentTransforms": self.settings.workers,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": self.settings.max_payload_in_mb,
        }
        await _respond(send, 200, json.dumps(document).encode(), inference.JSON)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.loaded is None:
            await _respond(send, 404, MULTI_MODEL_INVOCATIONS, TEXT, close=True)
            return
        if self.loaded.model is None:
            await _respond(send, 503, f"unhealthy: {self.loaded.error}\n".encode(), TEXT, close=True)
            return
        await self._predict(scope, receive, send, self.loaded.model)

    async def _predict(self, scope: Scope, receive: Receive, send: Send, model: Any) -> None:
        """The answer of `model` to the request: /invocations' rules, which /models/<name>/invoke shares."""
        try:
            request_custom_attributes.set(custom_attributes(_header(scope, CUSTOM_ATTRIBUTES)))
            response_custom_attributes.set(None)
            check_content_encoding(_header(scope, b"content-encoding"))
            content_type_header = _header(scope, b"content-type")
            content_type = inference.check_content_type(content_type_header)
            accept = self._accept(_header(scope, b"accept"), content_type)
            body = await self._body(scope, receive)
            rows = inference.input_fn(body, content_type_header or content_type)  # with CSV's header=present
            prediction = inference.predict_fn(rows, model)
            answer = inference.output_fn(prediction, accept)
            await _respond(send, 200, answer, inference.media_type(accept), headers=_answer_custom_attributes())
        except inference.InferenceError as error:
            # A body left unread is read and thrown away by ServingProtocol: the connection stays usable.
            reason = str(error).replace("\n", " ")
            await _respond(send, error.status, f"{reason}\n".encode(), TEXT)
        except ClientDisconnected:
            return

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """SageMaker's multi-model API (multi_model.py); an invoke is answered as /invocations is."""
        assert self.models is not None
        method = scope["method"]
        name, invoke = multi_model.model_path(scope["path"])
        try:
            if invoke and method == "POST":
                await self._predict(scope, receive, send, self.models.model(name or ""))
                return
            body = await self._body(scope, receive) if method == "POST" else b""
            status, document = multi_model.answer(self.models, method, scope["path"], scope["query_string"], body)
        except (multi_model.ModelApiError, inference.InferenceError) as error:
            reason = str(error).replace("\n", " ")
            allowed = getattr(error, "allow", ())
            headers = [(b"allow", ", ".join(allowed).encode())] if allowed else []
            await _respond(send, error.status, f"{reason}\n".encode(), TEXT, headers=headers)
            return
        except ClientDisconnected:
            return
        await _respond(send, status, json.dumps(document).encode(), inference.JSON)

    def _accept(self, header: str | None, content_type: str) -> str:
        fallback = self.settings.default_accept or content_type
        if not header or not header.strip():
            return fallback
        choice = negotiate(header, (fallback, *inference.ACCEPT_TYPES))
        if choice is None:
            raise inference.UnsupportedAccept(
                f"accept type {header!r} is not supported; use {' or '.join(inference.ACCEPT_TYPES)}"
            )
        # The media type chosen, with the one parameter the handlers read (class probabilities).
        return f"{choice}; {PROBABILITIES}=true" if wants_probabilities(header) else choice

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The body, refused as soon as it is known to be over the limit: never read whole first."""
        limit = self.settings.max_payload_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"body of {int(declared)} bytes is over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # chunked bodies carry no length up front
                raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def custom_attributes(value: str | None) -> str | None:
    """X-Amzn-SageMaker-Custom-Attributes as SageMaker allows it: at most 1024 visible ASCII characters."""
    if value is None:
        return None
    if not (value.isascii() and value.isprintable()):
        problem = "characters that are not visible ASCII"
    elif len(value) > MAX_CUSTOM_ATTRIBUTES:
        problem = f"{len(value)} characters"
    else:
        return value
    raise inference.InferenceError(
        f"X-Amzn-SageMaker-Custom-Attributes must be at most {MAX_CUSTOM_ATTRIBUTES} visible ASCII characters; "
        f"this one has {problem}"
    )


def _answer_custom_attributes() -> list[tuple[bytes, bytes]]:
    """The custom attributes a handler set for the answer (`response_custom_attributes`), when valid."""
    value = response_custom_attributes.get()
    if value is None:
        return []
    try:
        return [(CUSTOM_ATTRIBUTES, custom_attributes(value).encode("ascii"))]
    except inference.InferenceError as error:
        logger.error("the answer goes without the custom attributes a handler set: %s", error)
        return []


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    close: bool = False,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(model_dir: Path, settings: ServerSettings, models: multi_model.MultiModelConfig | None = None) -> App:
    if models is not None:
        return App(None, settings, multi_model.ModelStore(models))
    return App(ServedModel(model_dir), settings)


class _ClosesAfterTheBody:
    """The connection as uvicorn's request cycle sees it, except that a close waits for the rest of the body."""

    def __init__(self, protocol: ServingProtocol) -> None:
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_after_body()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol.transport, name)


class ServingProtocol(HttpToolsProtocol):
    """uvicorn's httptools connection, with the limits and manners SageMaker's callers need.

    - A request answered before its body was read (a refusal) has the rest of its body read and thrown
      away, up to LARGEST_BODY_BYTES, before the connection takes the next request or closes. Clients
      that write the whole body before reading (http.client, boto3) then read the answer: closed with
      the body unread, the connection would be reset under them and the answer lost.
    - A request's head (request line and headers) over MAX_HEAD_BYTES is refused with 431.
    - The server waits `timeout_keep_alive` seconds (KEEPALIVE_SECONDS) for a request's whole head, on a
      new connection and after each answer (with the rest of a refused body), then closes the connection.
    - A request with `Connection: Upgrade` (curl --http2 sends one) keeps its body: httptools stops after
      its head, taking what follows for the new protocol's bytes, but this server never upgrades.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_bytes = 0  # received while the head is incomplete
        self._body_read = True  # the latest request's body has been parsed to its end
        self._discarding = False  # an answer went out before its request's body was read
        self._discarded = 0
        self._close_after_body = False
        self._finished = False  # nothing more is parsed or answered on this connection
        self._upgrade_body = False  # httptools skips this request's body: it is parsed past the upgrade point
        self._replaying_head = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting_for_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            self._discarded += len(data)
            if self._discarded > LARGEST_BODY_BYTES:  # not worth reading any further
                self._finish()
                return
        if self._finished:
            return
        if self._reading_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        self._feed(data)
        if self._reading_head and self._head_bytes > MAX_HEAD_BYTES and not self._finished:
            self._refuse(431, f"the request line and headers are over {MAX_HEAD_BYTES} bytes")

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._parse_past_upgrade()
            self._feed(data[upgrade.args[0] :])
        except httptools.HttpParserError:
            self._refuse(400, "the request is not valid HTTP/1.1")

    def _parse_past_upgrade(self) -> None:
        """A new parser for what follows an upgrade request's head: its body first (given its framing headers)."""
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        if self._upgrade_body:
            self._upgrade_body = False
            framing = [name + b": " + value for name, value in self.headers if name in FRAMING_HEADERS]
            self._replaying_head = True  # the callbacks for this head are not a new request's
            self.parser.feed_data(b"\r\n".join([b"POST / HTTP/1.1", *framing, b"", b""]))
            self._replaying_head = False

    def on_message_begin(self) -> None:
        if not (self._replaying_head or self._finished):
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not (self._replaying_head or self._finished):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not (self._replaying_head or self._finished):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._replaying_head or self._finished:
            return
        self._reading_head = False
        self._head_bytes = 0
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEAD_BYTES:
            self._refuse(431, f"the request line and headers are over {MAX_HEAD_BYTES} bytes")
            return
        self._stop_waiting_for_head()
        self._body_read = False
        self._upgrade_body = self.parser.should_upgrade() and any(name in FRAMING_HEADERS for name, _ in self.headers)
        super().on_headers_complete()
        self.cycle.transport = _ClosesAfterTheBody(self)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if not self._finished:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._finished or self._upgrade_body:
            return
        self._body_read = True
        self._discarding = False
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()
        if self._close_after_body:
            self._finish()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # else the next request, parsed already, starts now
        super().on_response_complete()
        if not self.transport.is_closing():
            self._discarding, self._discarded = not self._body_read, 0
            if waiting:
                self._wait_for_head()

    def close_after_body(self) -> None:
        """Close once the request's body has been read to its end: now, if it has."""
        if self._body_read:
            self._finish()
        else:
            self._close_after_body = True

    def _finish(self) -> None:
        self.transport.close()
        self._finished = True

    def _refuse(self, status: int, reason: str) -> None:
        """Answer what the parser cannot take, then drop what the client still sends until it closes (or the
        wait for a head runs out): closed at once, the connection could be reset before the answer is read."""
        cycle = self.cycle
        answer = cycle is None or not cycle.response_started or (cycle.response_complete and self._body_read)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the request being answered gets no answer of its own
            cycle.message_event.set()
        if answer:
            body = f"{reason}\n".encode()
            headers = [*self.server_state.default_headers, (b"content-type", TEXT.encode())]
            headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            self.transport.write(STATUS_LINE[status] + head + b"\r\n" + body)
        self._finished = True
        self._discarding, self._discarded = True, 0
        self._wait_for_head()

    def _wait_for_head(self) -> None:
        self._stop_waiting_for_head()
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_timed_out)

    def _stop_waiting_for_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class ServingWorker(UvicornWorker):
    """uvicorn's gunicorn worker with the fast parser (ServingProtocol) and loop, no WebSockets, no lifespan
    events, no access log."""

    CONFIG_KWARGS = {  # noqa: RUF012
        "loop": "uvloop",
        "http": ServingProtocol,
        "ws": "none",
        "lifespan": "off",
        "access_log": False,
    }


class GunicornServer(BaseApplication):
    """gunicorn configured from code, so `python -m <package> serve` is the whole command."""

    def __init__(self, make_app: Callable[[], App], options: dict[str, Any]) -> None:
        self.make_app = make_app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> App:
        # gunicorn calls this in each worker after the fork (the app is not preloaded).
        return self.make_app()


def share_cores(workers: int, environ: MutableMapping[str, str]) -> None:
    """Each worker's share of the CPUs as its framework's thread count, where no variable sets one already.

    Under load every worker is busy at once. With a thread per CPU in each, the threads of one worker's
    request wait for CPUs the other workers hold: a 100-row PyTorch request took 27 times longer than
    with one thread per worker on two CPUs and two workers.
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    for name in THREAD_VARIABLES:
        environ.setdefault(name, str(threads))


def serve(env: SageMakerEnvironment | None = None) -> None:
    env = env or SageMakerEnvironment.from_environ()
    try:
        settings = ServerSettings.from_environ(env.variables)
        # Several models: the workers share a registry of them, made here before the fork.
        models = (
            multi_model.MultiModelConfig.create(
                env.base_dir / "models", settings.workers, env.variables, env.temporary_dir
            )
            if settings.multi_model
            else None
        )
    except ValueError as error:
        # One line in the endpoint's log, naming the variable, its value and what it may be.
        raise SystemExit(f"cannot serve: {error}") from None
    # Set before the fork: the workers import their framework afterwards, which reads these.
    share_cores(settings.workers, os.environ)
    options = {
        "bind": f"0.0.0.0:{settings.port}",
        "workers": settings.workers,
        "worker_class": ServingWorker,
        "timeout": settings.timeout,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "keepalive": KEEPALIVE_SECONDS,
        "control_socket_disable": True,  # gunicorn 27 would write ~/.gunicorn/: nothing outside /opt/ml and /tmp
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
    }
    if models is not None:
        # gunicorn calls on_exit in the master alone: a worker that exits leaves the registry to the others.
        options["on_exit"] = lambda arbiter: shutil.rmtree(models.registry, ignore_errors=True)
    logger.info(
        "serving %s on port %d with %d workers, %d s per request, bodies up to %d bytes (%s)",
        env.model_dir if models is None else f"the models SageMaker loads from {models.root}",
        settings.port,
        settings.workers,
        settings.timeout,
        settings.max_payload_bytes,
        ", ".join(f"{name}={os.environ[name]}" for name in THREAD_VARIABLES),
    )
    GunicornServer(lambda: create_app(env.model_dir, settings, models), options).run()
