"""AWS's prebuilt inference images call code/inference.py of the model artifact through the
sagemaker-inference toolkit's Transformer; these tests drive that same machinery."""

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
from sagemaker_inference.transformer import Transformer

from {{ cookiecutter.package_name }}._runtime.inference import model_fn

from .support import CLASSIFICATION, FEATURES, PACKAGE, PROJECT_DIR, csv_body, sample_rows

ROWS = sample_rows(2)


class RequestProcessor:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self.headers


class RequestContext:
    """The model server's per-request context, reduced to what the Transformer reads and sets."""

    def __init__(self, model_dir, content_type, accept=None):
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        self.system_properties = {"model_dir": str(model_dir)}
        self.request_processor = [RequestProcessor(headers)]
        self.response_content_type = None
        self.status = None

    def set_response_content_type(self, index, value):
        self.response_content_type = value

    def set_response_status(self, code, phrase):
        self.status = (code, phrase)


@pytest.fixture(scope="module")
def artifact(trained_tree, tmp_path_factory):
    """The model directory as training in the prebuilt image leaves it: model files plus code/."""
    model_dir = tmp_path_factory.mktemp("artifact") / "model"
    shutil.copytree(trained_tree / "model", model_dir)
    spec = importlib.util.spec_from_file_location("train_entry", PROJECT_DIR / "toolkit" / "train_entry.py")
    train_entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_entry)
    train_entry.package_inference_code(model_dir)
    return model_dir


@pytest.fixture
def transformer(artifact, monkeypatch):
    monkeypatch.syspath_prepend(str(artifact / "code"))
    monkeypatch.delenv("SAGEMAKER_PROGRAM", raising=False)  # the toolkit's default module: inference
    monkeypatch.delitem(sys.modules, "inference", raising=False)
    yield Transformer(default_inference_handler=DefaultInferenceHandler())
    sys.modules.pop("inference", None)


def invoke(transformer, artifact, body, content_type, accept=None):
    context = RequestContext(artifact, content_type, accept)
    (answer,) = transformer.transform([{"body": body}], context)
    return context, answer


@pytest.fixture(scope="module")
def expected(trained_tree):
    return model_fn(trained_tree / "model").model.predict(ROWS)


def test_training_packs_only_what_the_inference_image_runs(artifact):
    packed = sorted(path.relative_to(artifact / "code").as_posix() for path in (artifact / "code").rglob("*.py"))
    assert "inference.py" in packed
    assert f"{PACKAGE}/_runtime/inference.py" in packed
    assert f"{PACKAGE}/data.py" in packed and f"{PACKAGE}/model.py" in packed, "the user's modules go along"
    assert f"{PACKAGE}/_runtime/npy.py" in packed, "payloads.py reads .npy bodies with it"
    server_only = ("server.py", "server_settings.py", "http_connection.py", "custom_attributes.py")
    for left_out in ("__main__.py", *(f"_runtime/{name}" for name in server_only), "_runtime/training.py"):
        assert f"{PACKAGE}/{left_out}" not in packed


def test_the_packed_code_serves_on_its_own(artifact, expected):
    """As in AWS's image: only the artifact's code/ on the path, not this project's src/."""
    script = (
        "import sys, inference; rows = inference.input_fn(sys.stdin.read(), 'text/csv'); "
        "model = inference.model_fn(sys.argv[1]); "
        "body, _ = inference.output_fn(inference.predict_fn(rows, model), 'application/json'); "
        "sys.stdout.write(body.decode())"
    )
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    finished = subprocess.run(
        [sys.executable, "-c", script, str(artifact)],
        input=csv_body(ROWS).decode(),
        cwd=artifact / "code",
        env=environ | {"PYTHONPATH": str(artifact / "code")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout) == {"predictions": expected.tolist()}


def as_csv(values):
    return "".join(f"{value}\n" for value in values.tolist()).encode()


def test_csv_in_csv_out(transformer, artifact, expected):
    context, answer = invoke(transformer, artifact, csv_body(ROWS), "text/csv", "text/csv")
    assert context.status is None
    assert (context.response_content_type, answer) == ("text/csv", as_csv(expected))


def test_json_records_in_default_accept_out(transformer, artifact, expected):
    records = [dict(zip(FEATURES, row, strict=True)) for row in ROWS.tolist()]
    context, answer = invoke(transformer, artifact, json.dumps({"instances": records}).encode(), "application/json")
    assert context.response_content_type == "application/json"
    assert json.loads(answer) == {"predictions": expected.tolist()}


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_json_lines_in_json_lines_out(transformer, artifact, expected):
    # Rows by position and records by name, one per line: what a batch transform with SplitType=Line sends.
    items = [ROWS[0].tolist(), dict(zip(FEATURES, ROWS[1].tolist(), strict=True))]
    body = "".join(json.dumps(item) + "\n" for item in items).encode()
    context, answer = invoke(transformer, artifact, body, "application/jsonlines", "application/jsonlines")
    assert context.status is None
    assert context.response_content_type == "application/jsonlines"
    assert [json.loads(line) for line in answer.decode().splitlines()] == expected.tolist()


def test_json_lines_probabilities_are_one_object_per_line(transformer, artifact, expected):
    accept = "application/jsonlines; probabilities=true"
    context, answer = invoke(transformer, artifact, csv_body(ROWS), "text/csv", accept)
    if not CLASSIFICATION:
        assert context.status[0] == 406
        return
    assert context.response_content_type == "application/jsonlines"  # the type, without the parameter
    lines = [json.loads(line) for line in answer.decode().splitlines()]
    assert [line["prediction"] for line in lines] == expected.tolist()


@pytest.mark.parametrize("rows", [ROWS, ROWS.astype(np.float32), ROWS[0]], ids=["float64", "float32", "one-row"])
def test_npy_in_npy_out(transformer, artifact, trained_tree, rows):
    # What the SageMaker SDK's NumpySerializer sends and its NumpyDeserializer reads.
    context, answer = invoke(transformer, artifact, npy(rows), "application/x-npy", "application/x-npy")
    assert context.status is None
    assert context.response_content_type == "application/x-npy"
    expected = model_fn(trained_tree / "model").model.predict(np.atleast_2d(rows).astype(np.float64))
    np.testing.assert_array_equal(np.load(io.BytesIO(answer), allow_pickle=False), expected)


class LeavesAFile:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_an_object_npy_array_is_refused_and_never_unpickled(transformer, artifact, tmp_path):
    marker = tmp_path / "unpickled"
    body = npy(np.array([LeavesAFile(marker)], dtype=object))
    context, answer = invoke(transformer, artifact, body, "application/x-npy")
    assert context.status[0] == 400
    assert "holds Python objects, not numbers" in answer.splitlines()[0]
    assert not marker.exists()
    np.load(io.BytesIO(body), allow_pickle=True)  # the body is what it claims: loading it leaves the file
    assert marker.exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"5.1,abc", "text/csv", 400, "malformed CSV"),
        (csv_body(ROWS[:, 1:]), "text/csv", 400, f"each row needs {len(FEATURES)} features"),
        (json.dumps([{"colour": 1}]).encode(), "application/json", 400, f"record 0: missing '{FEATURES[0]}'"),
        (b"[1, 2]\n[3, true]\n", "application/jsonlines", 400, "line 2: value 2 is true, not a number"),
        (npy(ROWS[:, 1:]), "application/x-npy", 400, f"each row needs {len(FEATURES)} features"),
        (b"x", "application/x-npy", 400, "the body is not a .npy array"),
        ("é".encode("latin-1"), "text/csv; charset=latin-1", 415, "charset 'latin-1' is not supported"),
        (b"x", "application/x-npz", 415, "use text/csv or application/json or "),
    ],
)
def test_refusals_keep_their_status_and_reason(transformer, artifact, body, content_type, status, reason):
    context, answer = invoke(transformer, artifact, body, content_type)
    assert context.status[0] == status
    assert reason in answer.splitlines()[0]
