"""The user module AWS's prebuilt images load as code/inference.py: the project's own four handlers.

The package comes from BENCH_PACKAGE (the bench serves several rendered projects). As the
template's extend-prebuilt toolkit/inference.py does, a refused request is re-raised as the
toolkit's error type, so MMS answers its 4xx status instead of a 500.
"""

import importlib
import os
from functools import wraps

from sagemaker_inference.errors import BaseInferenceToolkitError

_handlers = importlib.import_module(f"{os.environ['BENCH_PACKAGE']}._runtime.inference")


def _answer_refusals_with_their_status(handler):
    @wraps(handler)
    def wrapper(*args):
        try:
            return handler(*args)
        except _handlers.InferenceError as error:
            raise BaseInferenceToolkitError(error.status, str(error), type(error).__name__) from error

    return wrapper


model_fn = _handlers.model_fn
input_fn = _answer_refusals_with_their_status(_handlers.input_fn)
predict_fn = _answer_refusals_with_their_status(_handlers.predict_fn)
output_fn = _answer_refusals_with_their_status(_handlers.output_fn)
