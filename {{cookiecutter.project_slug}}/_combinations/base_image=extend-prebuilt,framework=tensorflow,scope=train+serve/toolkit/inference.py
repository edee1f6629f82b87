"""Pre- and post-processing for AWS's prebuilt TensorFlow Serving image.

TensorFlow Serving loads the SavedModel from model/1/ and runs it; these two handlers, run from the
model artifact's code/ folder, turn a request (CSV, JSON, JSON Lines or .npy) into its REST request,
and its answers (class probabilities, or numbers for a regression) into the Accept type. Parsing, the checks
against the schema saved beside the model, and encoding are the package's own (`_runtime.payloads`),
so both serving paths accept and refuse exactly the same requests. Nothing here imports TensorFlow:
the handlers run in the image's own Python, beside the C++ server.
"""

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from {{ cookiecutter.package_name }}._runtime.payloads import JSON, Prediction, align, encode, media_type, parse
from {{ cookiecutter.package_name }}._runtime.tables import Schema

# The artifact's root: code/ (this file's folder) lies beside 1/ (the SavedModel) and schema.json.
MODEL_DIR = Path(__file__).resolve().parent.parent
ANY_TYPE = ("", "*/*")


@cache
def schema() -> Schema:
    """The columns the model was trained on, read once, at the first request."""
    return Schema.load(MODEL_DIR)


def input_handler(data: Any, context: Any) -> str:
    """The request's rows, checked and in the schema's order, as TensorFlow Serving's REST body."""
    features = align(parse(data.read(), context.request_content_type), schema())
    return json.dumps({"instances": features.tolist()})


def prediction(answers: np.ndarray) -> Prediction:
    """TensorFlow Serving's answers: class probabilities (classification) or numbers (regression)."""
    if not schema().is_classification:
        return Prediction(answers.reshape(-1))
    return Prediction(answers.argmax(axis=1), np.arange(answers.shape[1]), lambda: answers)


def output_handler(response: Any, context: Any) -> tuple[bytes, str]:
    if response.status_code != 200:
        raise ValueError(response.content.decode("utf-8"))
    answers = np.asarray(json.loads(response.content)["predictions"], dtype=np.float64)
    accept = context.accept_header or JSON
    kind, separator, accept_parameters = accept.partition(";")
    if media_type(kind) in ANY_TYPE:
        accept = JSON + separator + accept_parameters  # keeps `; probabilities=true`
    return encode(prediction(answers), accept), media_type(accept)
