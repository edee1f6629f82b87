"""AWS's prebuilt TensorFlow Serving image runs the SavedModel between input_handler and
output_handler of the artifact's code/inference.py. TensorFlow Serving itself is a C++ server
that cannot run here, so the tests run the exported SavedModel's serving signature in its place,
with the request and response bodies of its REST API."""

import importlib.util
import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import tensorflow as tf

from {{ cookiecutter.package_name }}.inference import InferenceError
from {{ cookiecutter.package_name }}.model import MODEL_VERSION

from .support import PACKAGE, PROJECT_DIR


@dataclass
class Context:
    """The handler context the TensorFlow Serving container passes, reduced to what the handlers read."""

    request_content_type: str
    accept_header: str | None = None


@dataclass
class ServingResponse:
    status_code: int
    content: bytes


class Body:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def read(self) -> bytes:
        return self.content


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def artifact(trained_tree, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("artifact") / "model"
    shutil.copytree(trained_tree / "model", model_dir)
    load(PROJECT_DIR / "toolkit" / "train_entry.py", "train_entry").package_inference_code(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def handlers(artifact):
    return load(artifact / "code" / "inference.py", "inference_handlers")


def serve_like_tensorflow_serving(artifact, request_body: str) -> ServingResponse:
    signature = tf.saved_model.load(str(artifact / MODEL_VERSION)).signatures["serving_default"]
    instances = tf.constant(json.loads(request_body)["instances"], dtype=tf.float32)
    (probabilities,) = signature(instances).values()
    return ServingResponse(200, json.dumps({"predictions": probabilities.numpy().tolist()}).encode())


def round_trip(handlers, artifact, body, content_type, accept=None):
    context = Context(content_type, accept)
    request = handlers.input_handler(Body(body), context)
    return handlers.output_handler(serve_like_tensorflow_serving(artifact, request), context)


def test_the_artifact_is_what_tensorflow_serving_loads(artifact):
    assert (artifact / MODEL_VERSION / "saved_model.pb").exists()
    assert (artifact / "code" / "inference.py").exists()
    assert (artifact / "code" / PACKAGE / "inference.py").exists()


def test_csv_in_csv_out(handlers, artifact):
    assert round_trip(handlers, artifact, b"5.1,3.5,1.4,0.2\n7.7,3.0,6.1,2.3", "text/csv", "text/csv") == (
        b"0\n2\n",
        "text/csv",
    )


def test_json_in_json_out(handlers, artifact):
    body, content_type = round_trip(handlers, artifact, b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', "application/json")
    assert content_type == "application/json"
    assert json.loads(body) == {"predictions": [0]}


def test_bad_requests_are_refused_before_tensorflow_serving(handlers):
    with pytest.raises(InferenceError, match="malformed CSV"):
        handlers.input_handler(Body(b"5.1,abc"), Context("text/csv"))


def test_a_tensorflow_serving_error_is_passed_on(handlers):
    with pytest.raises(ValueError, match="Matrix size-incompatible"):
        handlers.output_handler(ServingResponse(400, b"Matrix size-incompatible"), Context("text/csv"))


def test_request_body_is_tensorflow_serving_rest_json(handlers):
    request = json.loads(handlers.input_handler(Body(b"1,2,3,4"), Context("text/csv")))
    np.testing.assert_array_equal(request["instances"], [[1, 2, 3, 4]])
