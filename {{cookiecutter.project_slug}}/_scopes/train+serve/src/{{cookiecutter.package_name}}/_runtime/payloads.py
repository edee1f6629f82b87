"""Request and response bodies, checked against the model's schema.

Four formats, in and out: CSV (`text/csv`), JSON (`application/json`), JSON Lines
(`application/jsonlines`, one row or record per line) and NumPy's .npy (`application/x-npy`, what the
SageMaker SDK's NumpySerializer sends). Rows come by position (CSV lines, JSON lists, .npy rows: the
features in the schema's order) or by name (a CSV header row, JSON records `{"<feature>": value}`).
Text is UTF-8. Nothing from a request is ever unpickled: a .npy body is read by npy.py, never
`numpy.load`.

CSV and JSON Lines answers have exactly one line per row, in the rows' order, and no header: what a
batch transform with `SplitType=Line` and `AssembleWith=Line` (and `JoinSource=Input`) needs. Every
refusal is an InferenceError whose `status` is the HTTP status that says why, with a reason written
for the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import npy
from .messages import shown
from .tables import DataError, Schema, is_number, parse_numbers, quoted, split_cells

CSV = "text/csv"
JSON = "application/json"
JSON_LINES = "application/jsonlines"
JSON_LINES_ALIAS = "application/x-jsonlines"  # the same format, as some producers name it
NPY = "application/x-npy"
# What /invocations reads and answers: the one list the server's 415 and 406 refusals name.
CONTENT_TYPES = (CSV, JSON, JSON_LINES, JSON_LINES_ALIAS, NPY)
ACCEPT_TYPES = CONTENT_TYPES
TEXT_TYPES = (CSV, JSON, JSON_LINES, JSON_LINES_ALIAS)
# ASCII is a subset of UTF-8: a body declared as either reads the same.
UTF8_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")
# `Accept: application/json; probabilities=true` asks a classifier for its class probabilities.
PROBABILITIES = "probabilities"
# `Content-Type: text/csv; header=present` (or `absent`) says whether the first line names the columns.
HEADER = "header"


class InferenceError(ValueError):
    """A request the handlers refuse; `status` is the HTTP status that says why."""

    status = 400


class UnsupportedContentType(InferenceError):
    status = 415


class UnsupportedAccept(InferenceError):
    status = 406


@dataclass(frozen=True)
class Rows:
    """A parsed request: rows by position (`values`, by a CSV header's `columns` when it has one), or
    JSON `records` (objects by name, maybe with lists by position among them).

    `lines` holds each row's line in the body (CSV, JSON Lines), so that a refusal can name it.
    """

    values: np.ndarray | None = None
    columns: tuple[str, ...] | None = None
    records: list[dict[str, Any] | list[Any]] | None = None
    lines: tuple[int, ...] | None = None
    header_declared: bool = False  # `header=present`: the first line names the columns, whatever it holds

    def where(self, index: int) -> str:
        """How a refusal names the index-th row: by its line, or by its place in a JSON list (from 0)."""
        if self.lines is not None:
            return f"line {self.lines[index]}"
        if self.records is not None and isinstance(self.records[index], dict):
            return f"record {index}"
        return f"row {index}"


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


def supported(types: tuple[str, ...]) -> str:
    return " or ".join(types)


def check_content_encoding(value: str | None) -> None:
    """Refuse a compressed body (415, naming its encoding): bodies are read as sent."""
    codings = [coding.strip().lower() for coding in (value or "").split(",")]
    if any(coding not in ("", "identity") for coding in codings):
        raise UnsupportedContentType(
            f"content encoding {shown(value.strip())} is not supported; send the body uncompressed, "
            "without a Content-Encoding header"
        )


def check_content_type(header: str | None) -> str:
    """The media type of a Content-Type header the handlers read (415 for another type, or for text in
    another charset than UTF-8), so that a server can refuse it before reading the body."""
    kind = media_type(header)
    if kind not in CONTENT_TYPES:
        shown_kind = kind or "(none)"
        raise UnsupportedContentType(f"content type {shown_kind!r} is not supported; use {supported(CONTENT_TYPES)}")
    charset = parameters(header).get("charset")
    if kind in TEXT_TYPES and charset is not None and charset not in UTF8_CHARSETS:
        raise UnsupportedContentType(f"charset {shown(charset)} is not supported; send UTF-8 text (charset=utf-8)")
    return kind


def decode(body: bytes | bytearray | str) -> str:
    try:
        text = body if isinstance(body, str) else bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InferenceError(f"body is not UTF-8 text (byte {error.start})") from None
    return text.removeprefix("\ufeff")  # a byte-order mark, as spreadsheet exports write


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """The text's lines that are not blank, numbered from 1. Lines end at a newline alone (as batch
    transform splits them), a carriage return before it dropped."""
    return [(number, line.removesuffix("\r")) for number, line in enumerate(text.split("\n"), 1) if line.strip()]


def parse_csv(text: str, content_type: str | None = CSV) -> Rows:
    lines = numbered_lines(text)
    declared = parameters(content_type).get(HEADER)
    if declared not in (None, "present", "absent"):
        raise InferenceError(f"text/csv parameter header={declared} must be header=present or header=absent")
    first = split_cells(lines[0][1])
    if declared is None:
        # Undeclared, a first row of names is a header when rows follow it; a lone row is data, however malformed.
        has_header = len(lines) > 1 and not all(is_number(cell) for cell in first)
    else:
        has_header = declared == "present"
    data = lines[1:] if has_header else lines
    names = tuple(first) if has_header else None
    values = _numbers(data, list(names) if names else [f"#{i + 1}" for i in range(len(first))])
    return Rows(values=values, columns=names, lines=tuple(n for n, _ in data), header_declared=declared == "present")


def _numbers(lines: list[tuple[int, str]], names: list[str]) -> np.ndarray:
    if not lines:
        return np.empty((0, len(names)))
    text = "\n".join(line for _, line in lines)
    try:
        return parse_numbers(text, "CSV body", names, line_numbers=[number for number, _ in lines])
    except DataError as error:
        raise InferenceError(f"malformed CSV: {error}") from None


def load_json(text: str, line: int | None = None) -> Any:
    """One JSON document: the body's, or one line's of JSON Lines."""
    what = "malformed JSON" if line is None else f"malformed JSON Lines: line {line}"
    try:
        return json.loads(text)
    except RecursionError:
        raise InferenceError(f"{what}: nested too deeply") from None
    except json.JSONDecodeError as error:
        place = f"line {error.lineno} column {error.colno}" if line is None else f"column {error.colno}"
        raise InferenceError(f"{what}: {error.msg} at {place}") from None
    except ValueError:  # an integer of thousands of digits, which Python will not read
        raise InferenceError(f"{what}: a number too long to read") from None


def parse_json(text: str) -> Rows:
    document = load_json(text)
    if isinstance(document, dict):
        if "instances" not in document:
            raise InferenceError('JSON object must have an "instances" list of rows or records')
        document = document["instances"]
    if not isinstance(document, list):
        raise InferenceError('JSON body must be a list of rows, or {"instances": [...]} of rows or records')
    if document and not any(isinstance(item, list | dict) for item in document):
        document = [document]  # a single row
    return rows_of(document, None, may_hold_booleans=_has_booleans(text))


def parse_json_lines(text: str) -> Rows:
    lines = numbered_lines(text)
    items = [load_json(line, number) for number, line in lines]
    return rows_of(items, tuple(number for number, _ in lines), may_hold_booleans=_has_booleans(text))


def _has_booleans(text: str) -> bool:
    # json has no hook for true and false, and numpy reads them as numbers: a body without either word
    # holds none, and its rows need no check value by value.
    return "true" in text or "false" in text


def rows_of(items: list[Any], lines: tuple[int, ...] | None, may_hold_booleans: bool = True) -> Rows:
    """JSON rows (lists of numbers) or records (objects by feature name), each checked to hold numbers."""
    if all(isinstance(item, list) for item in items):
        rows = Rows(lines=lines, records=items)  # to name rows by their place while checking them
        return Rows(values=_number_rows(items, rows, may_hold_booleans), lines=lines)
    rows = Rows(records=items, lines=lines)
    for index, item in enumerate(items):
        if isinstance(item, dict):
            for name, value in item.items():
                if not _is_number(value):
                    raise InferenceError(f"{rows.where(index)}: feature {shown(name)} is {_shown(value)}, not a number")
        elif isinstance(item, list):
            _check_row(item, rows.where(index))
        else:
            raise InferenceError(
                f"{rows.where(index)} is {_shown(item)}: send each row as a list of numbers, "
                "or as a record (an object by feature name)"
            )
    return rows


def _number_rows(items: list[list[Any]], rows: Rows, may_hold_booleans: bool) -> np.ndarray:
    if not items:
        return np.empty((0, 0))
    try:
        values = np.asarray(items)
        fast = values.dtype.kind in "iuf" and values.ndim == 2 and not may_hold_booleans
    except (TypeError, ValueError, OverflowError, RecursionError):  # ragged rows, or nested deeper
        fast = False
    if fast:
        return values.astype(np.float64)
    for index, item in enumerate(items):
        _check_row(item, rows.where(index))
        if len(item) != len(items[0]):
            raise InferenceError(
                f"{rows.where(index)} has {_count(len(item), 'value')} where {rows.where(0)} has {len(items[0])}: "
                "send every row with the same features"
            )
    return np.array(items, dtype=np.float64).reshape(len(items), -1)


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" + "s" * (number != 1)


def _check_row(row: list[Any], where: str) -> None:
    for position, value in enumerate(row):
        if not _is_number(value):
            raise InferenceError(f"{where}: value {position + 1} is {_shown(value)}, not a number")


def _is_number(value: Any) -> bool:
    """A JSON number that fits a float: not true or false (which Python counts as integers), not text."""
    return isinstance(value, int | float) and not isinstance(value, bool) and is_number(value)


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:40]}..."


def parse_npy(body: bytes | bytearray | str) -> Rows:
    if isinstance(body, str):
        raise InferenceError("an application/x-npy body is binary: send the bytes numpy.save writes")
    try:
        values = npy.read(body)
    except npy.NotNumbers as error:
        raise InferenceError(str(error)) from None
    if values.ndim not in (1, 2):
        raise InferenceError(f"the .npy array has shape {values.shape}: send one row (1-D) or rows of features (2-D)")
    return Rows(values=values.reshape(1, -1) if values.ndim == 1 else values)


def parse(body: bytes | bytearray | str, content_type: str) -> Rows:
    """The request's rows; `content_type` is the whole header, with its parameters (charset, header)."""
    kind = check_content_type(content_type)
    if kind == NPY:
        rows = parse_npy(body)
    else:
        text = decode(body)
        if not text.strip():
            raise InferenceError("the body holds no rows to predict")
        if kind == CSV:
            rows = parse_csv(text, content_type)
        elif kind == JSON:
            rows = parse_json(text)
        else:
            rows = parse_json_lines(text)
    if rows.values is not None and (rows.values.ndim != 2 or rows.values.size == 0):
        raise InferenceError("the body holds no rows to predict")
    if rows.records is not None and not rows.records:
        raise InferenceError("the body holds no rows to predict")
    return rows


def align(rows: Rows, schema: Schema) -> np.ndarray:
    """The request's features in the schema's order, each checked; a 400 names what does not fit."""
    names = schema.feature_names
    if rows.records is not None:
        features = np.empty((len(rows.records), len(names)))
        for index, item in enumerate(rows.records):
            if isinstance(item, list):
                _check_width(len(item), names, rows.where(index))
                features[index] = item
            else:
                _check_names(list(item), schema, rows.where(index))
                features[index] = [item[name] for name in names]
    elif rows.columns is not None:
        features = rows.values[:, _header_positions(rows, schema)]
    else:
        features = rows.values
        _check_width(features.shape[1], names, "each row")
    _check(features, schema, rows)
    return features


def _check_width(width: int, names: tuple[str, ...], where: str) -> None:
    if width != len(names):
        raise InferenceError(f"{where} needs {len(names)} features ({', '.join(names)}), got {width}")


def _check_names(given: list[str], schema: Schema, where: str) -> None:
    """The names of a record or a CSV header: every feature, nothing else (and never the label)."""
    names = schema.feature_names
    if schema.label in given and schema.label not in names:
        raise InferenceError(f"{where}: {shown(schema.label)} is the label; send the features only ({quoted(names)})")
    missing = [name for name in names if name not in given]
    unknown = [name for name in given if name not in names]
    if missing or unknown:
        problems = [f"missing {quoted(missing)}"] * bool(missing) + [f"unknown {quoted(unknown)}"] * bool(unknown)
        raise InferenceError(f"{where}: {' and '.join(problems)}; the features are {quoted(names)}")


def _header_positions(rows: Rows, schema: Schema) -> list[int]:
    columns = list(rows.columns)
    if not rows.header_declared and not {*schema.feature_names, schema.label}.intersection(columns):
        raise InferenceError(
            f"malformed CSV: the first line is neither a header naming the features ({quoted(schema.feature_names)}) "
            f"nor a row of numbers: {quoted(columns[:8])}"
        )
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise InferenceError(f"the CSV header names some columns more than once: {quoted(duplicated)}")
    _check_names(columns, schema, "the CSV header")
    return [columns.index(name) for name in schema.feature_names]


def _check(features: np.ndarray, schema: Schema, rows: Rows) -> None:
    finite = np.isfinite(features)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise InferenceError(f"{rows.where(row)}: feature '{schema.feature_names[column]}' must be a finite number")
    for column, (name, kind) in enumerate(schema.features):
        values = features[:, column]
        if kind == "int" and np.any(values != np.round(values)):
            row = int(np.argmax(values != np.round(values)))
            raise InferenceError(f"{rows.where(row)}: feature '{name}' is {values[row]:g}; it must be a whole number")


def encode(prediction: Prediction, accept: str) -> bytes:
    """The answer in the Accept type: one value (or line) per row, in order."""
    kind = media_type(accept)
    if kind not in ACCEPT_TYPES:
        raise UnsupportedAccept(f"accept type {kind!r} is not supported; use {supported(ACCEPT_TYPES)}")
    values = prediction.values
    if wants_probabilities(accept):
        probabilities = prediction.probabilities()
        classes = prediction.classes.tolist() if prediction.classes is not None else None
        if kind == NPY:
            return npy.to_bytes(probabilities)
        if kind == CSV:
            return _lines(",".join(f"{p:.6g}" for p in row) for row in probabilities.tolist())
        if kind == JSON:
            document = {"predictions": values.tolist(), "probabilities": probabilities.tolist()}
            return json.dumps(document | {"classes": classes}).encode("utf-8")
        return _lines(
            json.dumps({"prediction": value, "probabilities": row, "classes": classes})
            for value, row in zip(values.tolist(), probabilities.tolist(), strict=True)
        )
    if kind == NPY:
        return npy.to_bytes(values)
    if kind == JSON:
        return json.dumps({"predictions": values.tolist()}).encode("utf-8")
    # A number's str() is its JSON; json.dumps only for anything else a model might answer.
    plain = kind == CSV or values.dtype.kind in "iuf"
    return _lines(map(str if plain else json.dumps, values.tolist()))


def _lines(lines: Any) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def write_sample_requests(directory: Path, rows: int = 5) -> None:
    """Request bodies for /invocations from the sample validation rows: CSV rows, and JSON records by name."""
    from .sample_tree import sample_split, schema

    features = sample_split()[1].features[:rows]
    names = schema().feature_names
    directory.mkdir(parents=True, exist_ok=True)
    np.savetxt(directory / "payload.csv", features, delimiter=",", fmt="%.10g")
    records = [dict(zip(names, row, strict=True)) for row in features.tolist()]
    (directory / "payload.json").write_text(json.dumps({"instances": records}) + "\n", encoding="utf-8")
