"""The HTTP server SageMaker talks to: GET /ping and POST /invocations on port 8080.

A small ASGI app served by uvicorn workers (httptools parser, uvloop, keep-alive) under a
gunicorn master that restarts a worker that dies or hangs. Each worker loads the model itself
after the fork (deep-learning runtimes do not survive a fork once loaded) and runs one request
at a time on its event loop, like a sync worker, without the per-request connection set-up.
Settings come from SageMaker's variables, each checked before the server starts (server_settings.py).
GET /execution-parameters tells a batch transform job how to send its records. Each connection keeps
refusals readable by clients that write the whole body first, and bounds request heads and idle
connections (http_connection.py).
With SAGEMAKER_MULTI_MODEL=true it serves the models SageMaker loads through /models instead
(multi_model.py), each invoked at /models/<name>/invoke under the rules of /invocations.
The workers share the CPUs: each runs its framework's maths on its share of them (`share_cores`).
On SIGTERM the server stops accepting connections, lets requests in flight finish, and exits 0.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker

from . import custom_attributes, inference, multi_model
from .environment import SageMakerEnvironment
from .http_connection import TEXT, ServingProtocol
from .payloads import PROBABILITIES, check_content_encoding, wants_probabilities
from .server_settings import ServerSettings

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
# The methods each of the server's own paths answers: a 405 lists them in Allow.
METHODS = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",), "/execution-parameters": ("GET", "HEAD")}
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
        body = None
        try:
            request = custom_attributes.check(_header(scope, custom_attributes.HEADER))
            custom_attributes.request_custom_attributes.set(request)
            custom_attributes.response_custom_attributes.set(None)
            check_content_encoding(_header(scope, b"content-encoding"))
            content_type_header = _header(scope, b"content-type")
            content_type = inference.check_content_type(content_type_header)
            accept = self._accept(_header(scope, b"accept"), content_type)
            body = await self._body(scope, receive)
            rows = inference.input_fn(body, content_type_header or content_type)  # with CSV's header=present
            prediction = inference.predict_fn(rows, model)
            answer = inference.output_fn(prediction, accept)
            await _respond(send, 200, answer, inference.media_type(accept), headers=custom_attributes.answer_headers())
        except inference.InferenceError as error:
            # A body left unread is read and thrown away by ServingProtocol: the connection stays usable,
            # unless the client waits for 100 Continue before sending it (then it never comes).
            reason = str(error).replace("\n", " ")
            close = body is None and _expects_continue(scope)
            await _respond(send, error.status, f"{reason}\n".encode(), TEXT, close=close)
        except ClientDisconnected:
            return

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """SageMaker's multi-model API (multi_model.py); an invoke is answered as /invocations is."""
        assert self.models is not None
        method = scope["method"]
        name, invoke = multi_model.model_path(scope["path"])
        body = None
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
            close = body is None and method == "POST" and _expects_continue(scope)
            await _respond(send, error.status, f"{reason}\n".encode(), TEXT, close=close, headers=headers)
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


def _expects_continue(scope: Scope) -> bool:
    """The client sends the body only after a 100 Continue, which goes out when the app first reads it."""
    return (_header(scope, b"expect") or "").strip().lower() == "100-continue"


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
