"""Inference handlers under SageMaker's four names: model_fn, input_fn, predict_fn, output_fn.

The same functions serve this project's own HTTP server and AWS's prebuilt inference images
(which look them up by name). `input_fn` parses the body; `predict_fn` matches it to the schema
saved with the model, so that a request naming a feature the model does not know, or missing
one, gets a 400 naming it. The framework is imported only when a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .payloads import (
    ACCEPT_TYPES,
    CONTENT_TYPES,
    CSV,
    JSON,
    InferenceError,
    Prediction,
    Rows,
    UnsupportedAccept,
    UnsupportedContentType,
    align,
    check_content_type,
    encode,
    media_type,
    parse,
)
from .tables import Schema

__all__ = [
    "ACCEPT_TYPES",
    "CONTENT_TYPES",
    "CSV",
    "JSON",
    "InferenceError",
    "LoadedModel",
    "UnsupportedAccept",
    "UnsupportedContentType",
    "check_content_type",
    "input_fn",
    "media_type",
    "model_fn",
    "output_fn",
    "predict_fn",
]


@dataclass(frozen=True)
class LoadedModel:
    """The trained model and the schema it was trained on."""

    model: Any  # the framework's FrameworkModel
    schema: Schema


def model_fn(model_dir: str | Path) -> LoadedModel:
    from .framework import FrameworkModel

    return LoadedModel(FrameworkModel.load(Path(model_dir)), Schema.load(Path(model_dir)))


def input_fn(body: bytes | bytearray | str, content_type: str) -> Rows:
    """A request body as rows: by position, by a CSV header's names, or as JSON records.

    `content_type` is the whole Content-Type header: `charset` and CSV's `header` are read from it."""
    return parse(body, content_type)


def predict_fn(data: Rows, model: LoadedModel) -> Prediction:
    features = align(data, model.schema)
    trained = model.model
    values = trained.predict(features)
    if not model.schema.is_classification:
        return Prediction(values)
    return Prediction(values, trained.classes, lambda: trained.probabilities(features))


def output_fn(prediction: Prediction, accept: str) -> bytes:
    """Labels (classification) or numbers (regression), one per row; probabilities when Accept asks."""
    try:
        return encode(prediction, accept)
    except ValueError as error:
        if isinstance(error, InferenceError):
            raise
        raise UnsupportedAccept(str(error)) from None  # e.g. an estimator without predict_proba
