"""The HTTP server SageMaker talks to: GET /ping and POST /invocations on port 8080.

A Falcon WSGI app under gunicorn (pre-forked sync workers; the model is loaded once in the
master and shared by every worker). Settings come from SageMaker's variables:
SAGEMAKER_BIND_TO_PORT, SAGEMAKER_MODEL_SERVER_WORKERS, SAGEMAKER_MODEL_SERVER_TIMEOUT,
SAGEMAKER_MAX_PAYLOAD_IN_MB and SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT. On SIGTERM gunicorn
stops accepting connections, lets requests in flight finish, and exits 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon
from gunicorn.app.base import BaseApplication

from . import inference
from .environment import SageMakerEnvironment

logger = logging.getLogger(__name__)

# SageMaker stops an instance 30 s after SIGTERM; finish in-flight requests well before that.
GRACEFUL_TIMEOUT_SECONDS = 20


class PayloadTooLarge(inference.InferenceError):
    status = 413


@dataclass(frozen=True)
class ServerSettings:
    port: int = 8080
    workers: int = 1
    timeout: int = 60
    max_payload_bytes: int = 6 * 1024 * 1024
    default_accept: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ServerSettings:
        megabytes = float(environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "6"))
        return cls(
            port=int(environ.get("SAGEMAKER_BIND_TO_PORT", "8080")),
            workers=int(environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", str(os.cpu_count() or 1))),
            timeout=int(environ.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60")),
            max_payload_bytes=int(megabytes * 1024 * 1024),
            default_accept=environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or None,
        )


class LoadedModel:
    """The model, or the reason there is none (reported by /ping, logged once)."""

    def __init__(self, model_dir: Path) -> None:
        self.model: Any = None
        self.error: str | None = None
        try:
            self.model = inference.model_fn(model_dir)
        except Exception as error:  # any failure to load means "unhealthy", never a crash loop
            self.error = f"cannot load the model from {model_dir}: {type(error).__name__}: {error}"
            logger.error(self.error)


def _refuse(resp: falcon.Response, status: int, reason: str) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_TEXT
    resp.text = reason + "\n"


class Ping:
    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.loaded.model is None:
            _refuse(resp, 503, f"unhealthy: {self.loaded.error}")
        else:
            resp.content_type = falcon.MEDIA_TEXT
            resp.text = "healthy\n"


class Invocations:
    def __init__(self, loaded: LoadedModel, settings: ServerSettings) -> None:
        self.loaded = loaded
        self.settings = settings

    def _accept(self, req: falcon.Request, content_type: str) -> str:
        header = req.get_header("Accept")
        if not header or header.strip() == "*/*":
            return self.settings.default_accept or content_type
        if header in inference.ACCEPT_TYPES:
            return header
        preferred = req.client_prefers(list(inference.ACCEPT_TYPES))
        if preferred is None:
            raise inference.UnsupportedAccept(
                f"accept type {header!r} is not supported; use {' or '.join(inference.ACCEPT_TYPES)}"
            )
        return preferred

    def _body(self, req: falcon.Request) -> bytes:
        limit = self.settings.max_payload_bytes
        if req.content_length is not None and req.content_length > limit:
            raise PayloadTooLarge(f"body of {req.content_length} bytes is over the limit of {limit} bytes")
        body = req.bounded_stream.read(limit + 1)  # bounded even when no Content-Length was sent
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        return body

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.loaded.model is None:
            _refuse(resp, 503, f"unhealthy: {self.loaded.error}")
            return
        try:
            content_type = inference.media_type(req.content_type)
            if content_type not in inference.CONTENT_TYPES:
                raise inference.UnsupportedContentType(
                    f"content type {content_type or '(none)'!r} is not supported; "
                    f"use {' or '.join(inference.CONTENT_TYPES)}"
                )
            accept = self._accept(req, content_type)
            rows = inference.input_fn(self._body(req), content_type)
            prediction = inference.predict_fn(rows, self.loaded.model)
            resp.data = inference.output_fn(prediction, accept)
            resp.content_type = accept
        except inference.InferenceError as error:
            _refuse(resp, error.status, str(error))


def create_app(model_dir: Path, settings: ServerSettings) -> falcon.App:
    loaded = LoadedModel(model_dir)
    app = falcon.App()
    app.add_route("/ping", Ping(loaded))
    app.add_route("/invocations", Invocations(loaded, settings))
    return app


class GunicornServer(BaseApplication):
    """gunicorn configured from code, so `python -m <package> serve` is the whole command."""

    def __init__(self, app: falcon.App, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> falcon.App:
        return self.application


def serve(env: SageMakerEnvironment | None = None) -> None:
    env = env or SageMakerEnvironment.from_environ()
    settings = ServerSettings.from_environ(env.variables)
    app = create_app(env.model_dir, settings)
    options = {
        "bind": f"0.0.0.0:{settings.port}",
        "workers": settings.workers,
        "worker_class": "sync",
        "timeout": settings.timeout,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
    }
    logger.info("serving %s on port %d with %d workers", env.model_dir, settings.port, settings.workers)
    GunicornServer(app, options).run()
