"""SageMaker's variables for the server, each checked before it starts: a bad one is refused with the reason.

SAGEMAKER_BIND_TO_PORT, SAGEMAKER_MODEL_SERVER_WORKERS, SAGEMAKER_MODEL_SERVER_TIMEOUT,
SAGEMAKER_MAX_PAYLOAD_IN_MB, SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, SAGEMAKER_BATCH and SAGEMAKER_MULTI_MODEL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from . import inference

MEBIBYTE = 1024 * 1024
DEFAULT_MAX_PAYLOAD_IN_MB = 6  # InvokeEndpoint's own limit
# SAGEMAKER_MAX_PAYLOAD_IN_MB=0 means no fixed limit, as in batch transform. A body is still held in a
# worker's memory, so none may exceed the largest input SageMaker sends anywhere: an asynchronous
# inference's 1 GB. A refused body is read and thrown away up to the same size (http_connection.py).
LARGEST_BODY_BYTES = 1024 * MEBIBYTE
DEFAULT_TIMEOUT_SECONDS = 60  # a real-time endpoint's: InvokeEndpoint gives up after 60 s
# How long a batch transform job waits for a mini-batch unless its ModelClientConfig says otherwise.
BATCH_TIMEOUT_SECONDS = 600
# Each worker holds its own copy of the model and answers one request at a time on CPU-bound maths: past a
# few per CPU they only wait for each other, and a slip such as 100000 would fork until memory runs out.
WORKERS_PER_CPU = 8


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
            environ,
            "SAGEMAKER_MAX_PAYLOAD_IN_MB",
            DEFAULT_MAX_PAYLOAD_IN_MB,
            "a whole number of megabytes",
            0,
            LARGEST_BODY_BYTES // MEBIBYTE,
        )
        return cls(
            port=_whole_number(environ, "SAGEMAKER_BIND_TO_PORT", 8080, "a port number", 1, 65535),
            workers=_whole_number(
                environ,
                "SAGEMAKER_MODEL_SERVER_WORKERS",
                os.cpu_count() or 1,
                f"a whole number of workers ({WORKERS_PER_CPU} per CPU at most)",
                1,
                WORKERS_PER_CPU * (os.cpu_count() or 1),
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
