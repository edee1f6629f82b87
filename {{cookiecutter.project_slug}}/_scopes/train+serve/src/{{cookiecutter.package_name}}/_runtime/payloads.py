"""Request and response bodies: CSV and JSON in, CSV and JSON out, checked against the model's schema.

Requests may carry rows by position (CSV lines, JSON lists: the features in the schema's order) or
by name (a CSV header row, or JSON records `{"instances": [{"<feature>": value, ...}]}`). Nothing
from a request is ever unpickled. Every refusal is an InferenceError whose `status` is the HTTP
status that says why, with a reason written for the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .tables import (
    DataError,
    Schema,
    column_positions,
    header_columns,
    is_number,
    parse_numbers,
    quoted,
    split_cells,
)

CSV = "text/csv"
JSON = "application/json"
CONTENT_TYPES = (CSV, JSON)
ACCEPT_TYPES = (CSV, JSON)
# `Accept: application/json; probabilities=true` asks a classifier for its class probabilities.
PROBABILITIES = "probabilities"


class InferenceError(ValueError):
    """A request the handlers refuse; `status` is the HTTP status that says why."""

    status = 400


class UnsupportedContentType(InferenceError):
    status = 415


class UnsupportedAccept(InferenceError):
    status = 406


@dataclass(frozen=True)
class Rows:
    """A parsed request: rows by position (`columns` None), by a CSV header's names, or JSON records."""

    values: np.ndarray | None = None
    columns: tuple[str, ...] | None = None
    records: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Prediction:
    """What a model answered for a request's rows; probabilities are computed only when asked for."""

    values: np.ndarray
    classes: np.ndarray | None = None
    compute_probabilities: Callable[[], np.ndarray] | None = None

    def probabilities(self) -> np.ndarray:
        if self.compute_probabilities is None:
            raise UnsupportedAccept("class probabilities come from classifiers only; this model answers numbers")
        return self.compute_probabilities()


def media_type(header: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv'."""
    return (header or "").split(";", 1)[0].strip().lower()


def parameters(header: str | None) -> dict[str, str]:
    """'application/json; probabilities=true' -> {'probabilities': 'true'}."""
    pairs = (part.partition("=") for part in (header or "").split(";")[1:])
    return {name.strip().lower(): value.strip().strip('"').lower() for name, _, value in pairs if name.strip()}


def wants_probabilities(accept: str | None) -> bool:
    return parameters(accept).get(PROBABILITIES) in ("true", "1", "yes")


def decode(body: bytes | bytearray | str) -> str:
    try:
        text = body if isinstance(body, str) else bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InferenceError(f"body is not UTF-8 text (byte {error.start})") from None
    return text.removeprefix("\ufeff")  # a byte-order mark, as spreadsheet exports write


def parse_csv(text: str) -> Rows:
    lines = [line for line in text.splitlines() if line.strip()]
    cells = split_cells(lines[0])
    # A first row of names is a header when rows follow it; a lone row is data, however malformed.
    if len(lines) == 1 or all(is_number(cell) for cell in cells):
        return Rows(values=_numbers("\n".join(lines), [f"#{i + 1}" for i in range(len(cells))], 0))
    names = tuple(cells)
    return Rows(values=_numbers("\n".join(lines[1:]), list(names), 1), columns=names)


def _numbers(text: str, names: list[str], skipped: int) -> np.ndarray:
    try:
        return parse_numbers(text, "CSV body", names, skipped) if text.strip() else np.empty((0, len(names)))
    except DataError as error:
        raise InferenceError(f"malformed CSV: {error}") from None


def parse_json(text: str) -> Rows:
    try:
        document = json.loads(text)
    except RecursionError:
        raise InferenceError("malformed JSON: nested too deeply") from None
    except ValueError as error:
        raise InferenceError(f"malformed JSON: {error}") from None
    if isinstance(document, dict):
        if "instances" not in document:
            raise InferenceError('JSON object must have an "instances" list of rows or records')
        document = document["instances"]
    if not isinstance(document, list):
        raise InferenceError('JSON body must be a list of rows, or {"instances": [...]} of rows or records')
    if document and all(isinstance(item, dict) for item in document):
        for number, record in enumerate(document):
            for name, value in record.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or not is_number(value):
                    shown = json.dumps(value) if len(str(value)) <= 40 else f"{str(value)[:40]}..."
                    raise InferenceError(f"record {number}: feature '{name}' is {shown}, not a number")
        return Rows(records=document)
    try:
        rows = np.asarray(document)
        if rows.dtype.kind not in "iuf" or rows.ndim > 2:  # text, true/false, ragged or nested deeper
            raise ValueError(rows.dtype)
        rows = rows.astype(np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise InferenceError("JSON rows must all be lists of numbers of the same length") from None
    return Rows(values=rows.reshape(1, -1) if rows.ndim == 1 else rows)


def parse(body: bytes | bytearray | str, content_type: str) -> Rows:
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise UnsupportedContentType(
            f"content type {kind or '(none)'!r} is not supported; use {' or '.join(CONTENT_TYPES)}"
        )
    text = decode(body)
    if not text.strip():
        raise InferenceError("the body holds no rows to predict")
    rows = parse_csv(text) if kind == CSV else parse_json(text)
    if rows.values is not None and (rows.values.ndim != 2 or rows.values.size == 0):
        raise InferenceError("the body holds no rows to predict")
    return rows


def align(rows: Rows, schema: Schema) -> np.ndarray:
    """The request's features in the schema's order, each checked; a 400 names what does not fit."""
    names = schema.feature_names
    if rows.records is not None:
        features = np.empty((len(rows.records), len(names)))
        for number, record in enumerate(rows.records):
            missing = [name for name in names if name not in record]
            unknown = [name for name in record if name not in names]
            if missing or unknown:
                problems = [f"missing {quoted(missing)}"] * bool(missing)
                problems += [f"unknown {quoted(unknown)}"] * bool(unknown)
                raise InferenceError(f"record {number}: {' and '.join(problems)}; the features are {quoted(names)}")
            features[number] = [record[name] for name in names]
    elif rows.columns is not None:
        header = _checked_header(rows.columns, schema)
        try:
            positions = column_positions(header, schema, "the CSV header", label=False)
        except DataError as error:
            raise InferenceError(str(error)) from None
        features = rows.values[:, positions]
    else:
        features = rows.values
        if features.shape[1] != len(names):
            raise InferenceError(f"each row needs {len(names)} features ({', '.join(names)}), got {features.shape[1]}")
    _check(features, schema)
    return features


def _checked_header(columns: tuple[str, ...], schema: Schema) -> list[str]:
    try:
        header = header_columns(list(columns), schema, "the CSV header")
    except DataError as error:
        raise InferenceError(f"malformed CSV: {error}") from None
    if header is None:  # a first row of numbers is never taken for a header
        raise InferenceError("malformed CSV")
    return header


def _check(features: np.ndarray, schema: Schema) -> None:
    finite = np.isfinite(features)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise InferenceError(f"row {row}: feature '{schema.feature_names[column]}' must be a finite number")
    for column, (name, kind) in enumerate(schema.features):
        values = features[:, column]
        if kind == "int" and np.any(values != np.round(values)):
            row = int(np.argmax(values != np.round(values)))
            raise InferenceError(f"row {row}: feature '{name}' is {values[row]:g}; it must be a whole number")


def encode(prediction: Prediction, accept: str) -> bytes:
    kind = media_type(accept)
    if kind not in ACCEPT_TYPES:
        raise UnsupportedAccept(f"accept type {kind!r} is not supported; use {' or '.join(ACCEPT_TYPES)}")
    if wants_probabilities(accept):
        probabilities = prediction.probabilities()
        if kind == CSV:
            return "".join(",".join(f"{p:.6g}" for p in row) + "\n" for row in probabilities.tolist()).encode("utf-8")
        classes = prediction.classes.tolist() if prediction.classes is not None else None
        document = {"predictions": prediction.values.tolist(), "probabilities": probabilities.tolist()}
        return json.dumps(document | {"classes": classes}).encode("utf-8")
    values = prediction.values.tolist()
    if kind == CSV:
        return ("\n".join(str(value) for value in values) + "\n").encode("utf-8")
    return json.dumps({"predictions": values}).encode("utf-8")


def write_sample_requests(directory: Path, rows: int = 5) -> None:
    """Request bodies for /invocations from the sample validation rows: CSV rows, and JSON records by name."""
    from .sample_tree import sample_split, schema

    features = sample_split()[1].features[:rows]
    names = schema().feature_names
    directory.mkdir(parents=True, exist_ok=True)
    np.savetxt(directory / "payload.csv", features, delimiter=",", fmt="%.10g")
    records = [dict(zip(names, row, strict=True)) for row in features.tolist()]
    (directory / "payload.json").write_text(json.dumps({"instances": records}) + "\n", encoding="utf-8")
