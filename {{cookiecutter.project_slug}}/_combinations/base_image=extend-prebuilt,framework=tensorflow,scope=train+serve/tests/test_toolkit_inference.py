"""AWS's prebuilt TensorFlow Serving image runs the SavedModel between input_handler and
output_handler of the artifact's code/inference.py. TensorFlow Serving itself is a C++ server
that cannot run here, so the tests run the exported SavedModel's serving signature in its place,
with the request and response bodies of its REST API."""

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import tensorflow as tf

from {{ cookiecutter.package_name }}._runtime.framework import MODEL_VERSION, FrameworkModel
from {{ cookiecutter.package_name }}._runtime.payloads import InferenceError, UnsupportedContentType
from {{ cookiecutter.package_name }}._runtime.tables import SCHEMA_FILE

from .support import CLASSIFICATION, FEATURES, PACKAGE, PROJECT_DIR, csv_body, sample_rows


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


@pytest.fixture(scope="module")
def in_process(artifact):
    """The same SavedModel answering in this process: what the handlers' answers must be."""
    return FrameworkModel.load(artifact)


def serve_like_tensorflow_serving(artifact, request_body: str) -> ServingResponse:
    signature = tf.saved_model.load(str(artifact / MODEL_VERSION)).signatures["serving_default"]
    instances = tf.constant(json.loads(request_body)["instances"], dtype=tf.float32)
    (answers,) = signature(instances).values()
    return ServingResponse(200, json.dumps({"predictions": answers.numpy().tolist()}).encode())


def round_trip(handlers, artifact, body, content_type, accept=None):
    context = Context(content_type, accept)
    request = handlers.input_handler(Body(body), context)
    return handlers.output_handler(serve_like_tensorflow_serving(artifact, request), context)


def records(rows):
    """Rows as JSON records by name, the names in reverse order: the handlers match them by name."""
    return [dict(reversed(list(zip(FEATURES, row, strict=True)))) for row in rows.tolist()]


def test_the_artifact_is_what_tensorflow_serving_loads(artifact):
    assert (artifact / MODEL_VERSION / "saved_model.pb").exists()
    assert (artifact / SCHEMA_FILE).exists()
    assert (artifact / "code" / "inference.py").exists()
    assert (artifact / "code" / PACKAGE / "_runtime" / "payloads.py").exists()


def test_the_handlers_run_from_the_artifact_without_tensorflow(artifact):
    program = (
        "import sys; sys.modules['tensorflow'] = sys.modules['keras'] = None\n"
        "import inference, json\n"
        "class Body:\n    read = staticmethod(lambda: sys.stdin.buffer.read())\n"
        "class Context:\n    request_content_type = 'text/csv'\n"
        "print(json.dumps([inference.__file__, inference.input_handler(Body, Context)]))\n"
    )
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # code/ alone
    rows = sample_rows(3)
    finished = subprocess.run(
        [sys.executable, "-c", program],
        cwd=artifact / "code",
        env=environ | {"PYTHONPATH": str(artifact / "code")},
        input=csv_body(rows),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    path, request = json.loads(finished.stdout)
    assert path == str(artifact / "code" / "inference.py")
    np.testing.assert_array_equal(json.loads(request)["instances"], rows)


def test_csv_rows_in_csv_out(handlers, artifact, in_process):
    rows = sample_rows(5)
    body, content_type = round_trip(handlers, artifact, csv_body(rows), "text/csv", "text/csv")
    assert content_type == "text/csv"
    answers = np.array([float(line) for line in body.decode().splitlines()])
    np.testing.assert_allclose(answers, in_process.predict(rows), rtol=1e-5, atol=1e-6)


def test_json_records_by_name_in_json_out(handlers, artifact, in_process):
    rows = sample_rows(5)
    request = json.dumps({"instances": records(rows)}).encode()
    body, content_type = round_trip(handlers, artifact, request, "application/json")
    assert content_type == "application/json"
    np.testing.assert_allclose(json.loads(body)["predictions"], in_process.predict(rows), rtol=1e-5, atol=1e-6)


def test_a_record_missing_a_feature_is_refused_naming_it(handlers):
    (record,) = records(sample_rows(1))
    del record[FEATURES[-1]]
    with pytest.raises(InferenceError, match=f"missing '{FEATURES[-1]}'"):
        handlers.input_handler(Body(json.dumps({"instances": [record]}).encode()), Context("application/json"))


def test_probabilities_on_request(handlers, artifact, in_process):
    rows = sample_rows(5)
    accept = "application/json; probabilities=true"
    if not CLASSIFICATION:
        with pytest.raises(InferenceError, match="classifiers only"):
            round_trip(handlers, artifact, csv_body(rows), "text/csv", accept)
        return
    body, content_type = round_trip(handlers, artifact, csv_body(rows), "text/csv", accept)
    document = json.loads(body)
    assert content_type == "application/json"
    np.testing.assert_allclose(document["probabilities"], in_process.probabilities(rows), rtol=1e-5, atol=1e-6)
    assert document["predictions"] == in_process.predict(rows).tolist()
    assert document["classes"] == in_process.classes.tolist()


def test_any_accept_type_answers_json(handlers, artifact, in_process):
    rows = sample_rows(2)
    body, content_type = round_trip(handlers, artifact, csv_body(rows), "text/csv", "*/*")
    assert content_type == "application/json"
    np.testing.assert_allclose(json.loads(body)["predictions"], in_process.predict(rows), rtol=1e-5, atol=1e-6)


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_json_lines_rows_and_records_in_json_lines_out(handlers, artifact, in_process):
    rows = sample_rows(4)
    items = [*rows[:2].tolist(), *records(rows[2:])]
    body = "".join(json.dumps(item) + "\n" for item in items).encode()
    answer, content_type = round_trip(handlers, artifact, body, "application/jsonlines", "application/jsonlines")
    assert content_type == "application/jsonlines"
    lines = answer.decode().splitlines()
    np.testing.assert_allclose([json.loads(line) for line in lines], in_process.predict(rows), rtol=1e-5, atol=1e-6)


def test_json_lines_probabilities_are_one_object_per_line(handlers, artifact, in_process):
    rows = sample_rows(3)
    accept = "application/jsonlines; probabilities=true"
    if not CLASSIFICATION:
        with pytest.raises(InferenceError, match="classifiers only"):
            round_trip(handlers, artifact, csv_body(rows), "text/csv", accept)
        return
    answer, content_type = round_trip(handlers, artifact, csv_body(rows), "text/csv", accept)
    assert content_type == "application/jsonlines"
    lines = [json.loads(line) for line in answer.decode().splitlines()]
    assert [line["prediction"] for line in lines] == in_process.predict(rows).tolist()
    probabilities = [line["probabilities"] for line in lines]
    np.testing.assert_allclose(probabilities, in_process.probabilities(rows), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [1, 5])
def test_npy_in_npy_out(handlers, artifact, in_process, dtype, count):
    # What the SageMaker SDK's NumpySerializer sends (a 1-D array is one row) and its NumpyDeserializer reads.
    rows = sample_rows(count).astype(dtype)
    body = npy(rows[0] if count == 1 else rows)
    answer, content_type = round_trip(handlers, artifact, body, "application/x-npy", "application/x-npy")
    assert content_type == "application/x-npy"
    answers = np.load(io.BytesIO(answer), allow_pickle=False)
    np.testing.assert_allclose(answers, in_process.predict(rows.astype(np.float64)), rtol=1e-5, atol=1e-6)


class LeavesAFile:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_an_object_npy_array_is_refused_and_never_unpickled(handlers, tmp_path):
    marker = tmp_path / "unpickled"
    body = npy(np.array([LeavesAFile(marker)], dtype=object))
    with pytest.raises(InferenceError, match="holds Python objects, not numbers"):
        handlers.input_handler(Body(body), Context("application/x-npy"))
    assert not marker.exists()
    np.load(io.BytesIO(body), allow_pickle=True)  # the body is what it claims: loading it leaves the file
    assert marker.exists()


def test_another_charset_is_refused_naming_it(handlers):
    with pytest.raises(UnsupportedContentType, match="charset 'latin-1' is not supported"):
        handlers.input_handler(Body("é".encode("latin-1")), Context("text/csv; charset=latin-1"))


def test_bad_requests_are_refused_before_tensorflow_serving(handlers):
    with pytest.raises(InferenceError, match="line 2: value 2 is true, not a number"):
        handlers.input_handler(Body(b"[1, 2]\n[3, true]\n"), Context("application/jsonlines"))
    with pytest.raises(InferenceError, match=f"each row needs {len(FEATURES)} features"):
        handlers.input_handler(Body(npy(sample_rows(2)[:, 1:])), Context("application/x-npy"))
    with pytest.raises(InferenceError, match="malformed CSV"):
        handlers.input_handler(Body(csv_body(sample_rows(1)) + b"1,abc\n"), Context("text/csv"))


def test_a_tensorflow_serving_error_is_passed_on(handlers):
    with pytest.raises(ValueError, match="Matrix size-incompatible"):
        handlers.output_handler(ServingResponse(400, b"Matrix size-incompatible"), Context("text/csv"))


def test_request_body_is_tensorflow_serving_rest_json_in_the_schemas_order(handlers):
    rows = sample_rows(3)
    header = ",".join(reversed(FEATURES)) + "\n"
    body = header.encode() + csv_body(rows[:, ::-1])
    request = json.loads(handlers.input_handler(Body(body), Context("text/csv")))
    np.testing.assert_array_equal(request["instances"], rows)
