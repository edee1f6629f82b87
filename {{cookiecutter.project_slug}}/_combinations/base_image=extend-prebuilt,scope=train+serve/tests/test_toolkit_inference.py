"""AWS's prebuilt inference images call code/inference.py of the model artifact through the
sagemaker-inference toolkit's Transformer; these tests drive that same machinery."""

import importlib.util
import json
import shutil
import sys

import pytest
from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
from sagemaker_inference.transformer import Transformer

from .support import PACKAGE, PROJECT_DIR


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


def test_training_packs_the_handlers_into_the_artifact(artifact):
    assert (artifact / "code" / "inference.py").exists()
    assert (artifact / "code" / PACKAGE / "inference.py").exists()


def test_csv_in_csv_out(transformer, artifact):
    context, answer = invoke(transformer, artifact, b"5.1,3.5,1.4,0.2\n7.7,3.0,6.1,2.3", "text/csv", "text/csv")
    assert context.status is None
    assert (context.response_content_type, answer) == ("text/csv", b"0\n2\n")


def test_json_in_default_accept_out(transformer, artifact):
    context, answer = invoke(transformer, artifact, json.dumps([[5.1, 3.5, 1.4, 0.2]]).encode(), "application/json")
    assert context.response_content_type == "application/json"
    assert json.loads(answer) == {"predictions": [0]}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"5.1,abc", "text/csv", 400, "malformed CSV"),
        (b"5.1,3.5,1.4", "text/csv", 400, "each row needs 4 features, got 3"),
        (b"x", "application/x-npy", 415, "use text/csv or application/json"),
    ],
)
def test_refusals_keep_their_status_and_reason(transformer, artifact, body, content_type, status, reason):
    context, answer = invoke(transformer, artifact, body, content_type)
    assert context.status[0] == status
    assert reason in answer.splitlines()[0]
