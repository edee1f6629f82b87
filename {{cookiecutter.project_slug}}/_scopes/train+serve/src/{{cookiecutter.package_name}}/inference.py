"""Inference handlers under SageMaker's four names: model_fn, input_fn, predict_fn, output_fn.

The same functions serve this project's own HTTP server and AWS's prebuilt inference images
(which look them up by name). Request bodies are parsed as CSV or JSON only; nothing from a
request is ever unpickled.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .model import Model

CSV = "text/csv"
JSON = "application/json"
CONTENT_TYPES = (CSV, JSON)
ACCEPT_TYPES = (CSV, JSON)


class InferenceError(ValueError):
    """A request the handlers refuse; `status` is the HTTP status that says why."""

    status = 400


class UnsupportedContentType(InferenceError):
    status = 415


class UnsupportedAccept(InferenceError):
    status = 406


def media_type(header: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv'."""
    return (header or "").split(";", 1)[0].strip().lower()


def model_fn(model_dir: str | Path) -> Model:
    return Model.load(Path(model_dir))


def _decode(body: bytes | bytearray | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InferenceError(f"body is not UTF-8 text (byte {error.start})") from None


def _parse_csv(text: str) -> np.ndarray:
    try:
        return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise InferenceError(f"malformed CSV: {str(error).splitlines()[0]}") from None


def _parse_json(text: str) -> np.ndarray:
    try:
        document = json.loads(text)
    except RecursionError:
        raise InferenceError("malformed JSON: nested too deeply") from None
    except ValueError as error:
        raise InferenceError(f"malformed JSON: {error}") from None
    if isinstance(document, dict):
        if "instances" not in document:
            raise InferenceError('JSON object must have an "instances" list of rows')
        document = document["instances"]
    if not isinstance(document, list):
        raise InferenceError('JSON body must be a list of rows or {"instances": [...]}')
    try:
        rows = np.asarray(document, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise InferenceError("JSON rows must all be lists of numbers of the same length") from None
    return rows.reshape(1, -1) if rows.ndim == 1 else rows


def input_fn(body: bytes | bytearray | str, content_type: str) -> np.ndarray:
    """A request body as a 2-D float array, one row per record."""
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise UnsupportedContentType(
            f"content type {kind or '(none)'!r} is not supported; use {' or '.join(CONTENT_TYPES)}"
        )
    text = _decode(body)
    if not text.strip():
        raise InferenceError("the body holds no rows to predict")
    rows = _parse_csv(text) if kind == CSV else _parse_json(text)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise InferenceError("the body holds no rows to predict")
    if not np.all(np.isfinite(rows)):
        raise InferenceError("every feature must be a finite number")
    return rows


def predict_fn(data: np.ndarray, model: Model) -> np.ndarray:
    if data.shape[1] != model.num_features:
        raise InferenceError(f"each row needs {model.num_features} features, got {data.shape[1]}")
    return model.predict(data)


def output_fn(prediction: np.ndarray, accept: str) -> bytes:
    kind = media_type(accept)
    values = prediction.tolist()
    if kind == CSV:
        return ("\n".join(str(value) for value in values) + "\n").encode("utf-8")
    if kind == JSON:
        return json.dumps({"predictions": values}).encode("utf-8")
    raise UnsupportedAccept(f"accept type {kind!r} is not supported; use {' or '.join(ACCEPT_TYPES)}")
