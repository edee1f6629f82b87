"""The handlers AWS's prebuilt inference images call (sagemaker-inference toolkit), from the package.

Training copies this file and the package into the model artifact's code/ folder. A refused
request is re-raised as the toolkit's own error type, so the endpoint answers its 4xx status
instead of a 500.
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


model_fn = inference.model_fn
input_fn = _answer_refusals_with_their_status(inference.input_fn)
predict_fn = _answer_refusals_with_their_status(inference.predict_fn)
output_fn = _answer_refusals_with_their_status(inference.output_fn)
