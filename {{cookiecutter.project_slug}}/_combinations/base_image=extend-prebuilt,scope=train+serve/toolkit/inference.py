"""The handlers AWS's prebuilt inference images call (sagemaker-inference toolkit), from the package.

Training copies this file and the package into the model artifact's code/ folder. The bodies are
the package's own (CSV, JSON, JSON Lines, .npy: `_runtime.payloads`), as the project's server reads
and writes them. A refused request is re-raised as the toolkit's own error type, so the endpoint
answers its 4xx status instead of a 500.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from sagemaker_inference.errors import BaseInferenceToolkitError

from {{ cookiecutter.package_name }}._runtime import inference


def _answer_refusals_with_their_status(handler: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(handler)
    def wrapper(*args: Any) -> Any:
        try:
            return handler(*args)
        except inference.InferenceError as error:
            raise BaseInferenceToolkitError(error.status, str(error), type(error).__name__) from error

    return wrapper


def _answer_with_its_media_type(prediction: Any, accept: str) -> tuple[bytes, str]:
    # The toolkit labels a bare body with the Accept header as sent (`application/json; probabilities=true`);
    # a tuple names the media type the body is.
    return inference.output_fn(prediction, accept), inference.media_type(accept)


model_fn = inference.model_fn
input_fn = _answer_refusals_with_their_status(inference.input_fn)
predict_fn = _answer_refusals_with_their_status(inference.predict_fn)
output_fn = _answer_refusals_with_their_status(_answer_with_its_media_type)
