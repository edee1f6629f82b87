"""The TorchServe handler: the project's own model_fn once, then input_fn -> predict_fn -> output_fn.

TorchServe imports this module and instantiates its one class. The package comes from
BENCH_PACKAGE and the model folder from MODEL_DIR (the project's trained model, where every
stack of the bench reads it). Content-Type and Accept come from each request's headers; a
refused request gets the status the project gives it.
"""

import importlib
import os


def _header(headers, name):
    """A request header whatever its case (TorchServe passes them as the client wrote them)."""
    wanted = name.lower()
    value = next((value for key, value in headers.items() if key.lower() == wanted), None)
    return value.decode() if isinstance(value, (bytes, bytearray)) else value


class ProjectHandler:
    def __init__(self):
        self.handlers = None
        self.model = None

    def initialize(self, context):
        self.handlers = importlib.import_module(f"{os.environ['BENCH_PACKAGE']}._runtime.inference")
        self.model = self.handlers.model_fn(os.environ["MODEL_DIR"])

    def handle(self, data, context):
        answers = []
        for index, request in enumerate(data):
            body = request.get("body")
            if body is None:
                body = request.get("data")
            headers = context.get_all_request_header(index)
            content_type = _header(headers, "Content-Type") or self.handlers.CSV
            accept = _header(headers, "Accept") or content_type
            try:
                rows = self.handlers.input_fn(body, content_type)
                answers.append(self.handlers.output_fn(self.handlers.predict_fn(rows, self.model), accept))
                context.set_response_content_type(index, accept)
            except self.handlers.InferenceError as error:
                context.set_response_status(error.status, str(error), index)
                answers.append(str(error))
        return answers
