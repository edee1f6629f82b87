"""Pre- and post-processing for AWS's prebuilt TensorFlow Serving image.

TensorFlow Serving loads the SavedModel from model/1/ and runs it; these two handlers turn a
CSV or JSON request into its REST request, and its class probabilities into labels in the
Accept type. Parsing and encoding are the package's own (`inference.input_fn`/`output_fn`),
so both serving paths accept and refuse exactly the same requests.
"""

import json
from typing import Any

import numpy as np

from {{ cookiecutter.package_name }} import inference


def input_handler(data: Any, context: Any) -> str:
    rows = inference.input_fn(data.read(), context.request_content_type)
    return json.dumps({"instances": rows.tolist()})


def output_handler(response: Any, context: Any) -> tuple[bytes, str]:
    if response.status_code != 200:
        raise ValueError(response.content.decode("utf-8"))
    probabilities = np.asarray(json.loads(response.content)["predictions"])
    accept = inference.media_type(context.accept_header) or inference.JSON
    if accept == "*/*":
        accept = inference.JSON
    return inference.output_fn(probabilities.argmax(axis=1), accept), accept
