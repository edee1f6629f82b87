"""Several models in one endpoint: the store the workers share, and the real server answering the /models API."""

import csv
import http.client
import io
import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }}._runtime import training
from {{ cookiecutter.package_name }}._runtime.inference import model_fn
from {{ cookiecutter.package_name }}._runtime.multi_model import (
    MB,
    Memory,
    ModelApiError,
    ModelStore,
    MultiModelConfig,
    answer,
    container_memory,
    memory_limit,
)
from {{ cookiecutter.package_name }}._runtime.server_settings import ServerSettings

from .support import CLASSIFICATION, SCHEMA, csv_body, environment_for, make_tree, run_cli, sample_rows
from .test_server import Server, as_csv

# The slow tier (`make test-all`): hosting modes and HTTP's edges, template code that model.py and data.py
# leave as it is; the everyday tier serves the model through the same server (test_server.py).
pytestmark = pytest.mark.slow

ROWS = sample_rows(8)
BODY = csv_body(ROWS)
# A model whose files alone are larger than any limit set here (sparse: it takes no room on disk).
HUGE = 64 * 1024 * MB
LIMIT_MB = 16 * 1024  # the module server's MULTI_MODEL_MEMORY_LIMIT_MB
BAD_NAMES = ["..", ".", "../outside", "a/b", "a b", "a\\b", "naïve", "x" * 256, ""]


def copy_model(source: Path, root: Path, name: str) -> str:
    """A model's folder where SageMaker puts it, <root>/<name>/model; its url."""
    shutil.copytree(source, root / name / "model")
    return str(root / name / "model")


def pad(folder: str | Path, size: int) -> None:
    """Make a model's files `size` bytes larger, in a file the model does not read."""
    with open(Path(folder) / "padding.bin", "wb") as padding:
        padding.truncate(size)


def mirror_labels(tree: Path) -> None:
    """Rewrite a tree's labels so a model trained on it answers differently: classes reversed, numbers negated."""
    files = sorted((tree / "input" / "data").rglob("*.csv"))
    tables = [list(csv.reader(io.StringIO(path.read_text()))) for path in files]
    column = tables[0][0].index(SCHEMA.label)
    top = max(int(float(row[column])) for table in tables for row in table[1:])
    for path, (header, *rows) in zip(files, tables, strict=True):
        for row in rows:
            row[column] = str(top - int(float(row[column]))) if CLASSIFICATION else repr(-float(row[column]))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([header, *rows])
        path.write_text(text.getvalue())


@pytest.fixture(scope="module")
def mirrored_tree(tmp_path_factory):
    base_dir = make_tree(tmp_path_factory.mktemp("mirrored") / "ml")
    mirror_labels(base_dir)
    assert training.main(environment_for(base_dir)) == 0
    return base_dir


def store_config(tmp_path, workers=2, limit_mb=None, **variables) -> MultiModelConfig:
    if limit_mb is not None:
        variables["MULTI_MODEL_MEMORY_LIMIT_MB"] = str(limit_mb)
    (tmp_path / "models").mkdir(exist_ok=True)
    return MultiModelConfig.create(tmp_path / "models", workers, variables, tmp_path)


def plenty() -> Memory:
    return Memory(total=64 * 1024 * MB, available=60 * 1024 * MB)


def refusal(call, *args) -> tuple[int, str]:
    with pytest.raises(ModelApiError) as refused:
        call(*args)
    return refused.value.status, str(refused.value)


# The store: one per worker, sharing a registry.


@pytest.mark.parametrize("name", ["first", "model-1.2_b", "A" * 255, "..x", "-"])
def test_names_of_letters_digits_dots_dashes_and_underscores_are_allowed(tmp_path, trained_tree, name):
    store = ModelStore(store_config(tmp_path), memory=plenty)
    url = copy_model(trained_tree / "model", tmp_path / "models", name)
    assert store.load(name, url).description() == {"modelName": name, "modelUrl": url}
    assert [entry.name for entry in store.page()[0]] == [name]


@pytest.mark.parametrize("name", [*BAD_NAMES, 7, None])
def test_other_names_are_refused_before_anything_is_read(tmp_path, trained_tree, name):
    store = ModelStore(store_config(tmp_path), memory=plenty)
    url = copy_model(trained_tree / "model", tmp_path / "models", "first")
    status, reason = refusal(store.load, name, url)
    assert status == 400
    assert "letters, digits" in reason
    for call in (store.describe, store.unload, store.model):
        assert refusal(call, name)[0] == 400
    assert store.page() == ([], None)


def test_urls_outside_the_model_root_are_refused_and_nothing_there_is_loaded(tmp_path, trained_tree):
    store = ModelStore(store_config(tmp_path), memory=plenty)
    root = tmp_path / "models"
    outside = copy_model(trained_tree / "model", tmp_path / "elsewhere", "first")
    (root / "linked").symlink_to(Path(outside).parent)
    for url in (outside, f"{root}/../elsewhere/first/model", str(root / "linked" / "model"), "first/model", str(root)):
        status, reason = refusal(store.load, "first", url)
        assert status == 400
        assert str(root) in reason
    assert refusal(store.load, "first", ["not", "a", "path"])[0] == 400
    assert store.page() == ([], None)


def test_a_url_with_no_model_is_a_404_or_a_400_with_the_reason(tmp_path):
    store = ModelStore(store_config(tmp_path), memory=plenty)
    missing = tmp_path / "models" / "missing" / "model"
    status, reason = refusal(store.load, "missing", str(missing))
    assert (status, reason) == (404, f"there is no model at {missing}: it is not a folder")
    (tmp_path / "models" / "empty" / "model").mkdir(parents=True)
    status, reason = refusal(store.load, "empty", str(tmp_path / "models" / "empty" / "model"))
    assert status == 400
    assert reason.startswith(f"cannot load a model from {tmp_path / 'models' / 'empty' / 'model'}: ")
    assert store.page() == ([], None)


def test_a_model_loaded_by_one_worker_answers_on_another_until_unloaded(tmp_path, trained_tree):
    config = store_config(tmp_path)
    loading, other = ModelStore(config, memory=plenty), ModelStore(config, memory=plenty)
    url = copy_model(trained_tree / "model", tmp_path / "models", "first")
    loading.load("first", url)
    expected = model_fn(url).model.predict(ROWS)
    np.testing.assert_array_equal(other.model("first").model.predict(ROWS), expected)
    assert other.describe("first").description() == {"modelName": "first", "modelUrl": url}
    assert refusal(other.load, "first", url)[0] == 409  # already loaded, whichever worker asks

    loading.unload("first")
    assert refusal(other.model, "first") == (404, "model 'first' is not loaded")
    assert refusal(other.unload, "first")[0] == 404
    other.forget_unloaded()
    assert other._held == {}


def test_two_workers_loading_one_name_at_once_answer_200_and_409(tmp_path, trained_tree):
    config = store_config(tmp_path)
    url = copy_model(trained_tree / "model", tmp_path / "models", "first")
    other = ModelStore(config, memory=plenty)
    answers = []

    def load_while_the_other_worker_loads_too(folder):
        if not answers:
            answers.append(other.load("first", url).name)  # the other worker's load ends while this one's runs
        return model_fn(folder)

    first = ModelStore(config, load=load_while_the_other_worker_loads_too, memory=plenty)
    assert refusal(first.load, "first", url)[0] == 409
    assert answers == ["first"]
    assert [entry.name for entry in first.page()[0]] == ["first"]
    expected = model_fn(url).model.predict(ROWS)
    np.testing.assert_array_equal(first.model("first").model.predict(ROWS), expected)  # from the registry


def test_a_name_loaded_again_after_an_unload_is_the_new_model_on_every_worker(tmp_path, trained_tree, mirrored_tree):
    config = store_config(tmp_path)
    loading, other = ModelStore(config, memory=plenty), ModelStore(config, memory=plenty)
    first = copy_model(trained_tree / "model", tmp_path / "models", "first")
    mirrored = copy_model(mirrored_tree / "model", tmp_path / "models", "mirrored")
    loading.load("model", first)
    other.model("model")
    loading.unload("model")
    loading.load("model", mirrored)
    np.testing.assert_array_equal(other.model("model").model.predict(ROWS), model_fn(mirrored).model.predict(ROWS))


def test_the_memory_limit_counts_every_workers_copy_and_unloads_nothing(tmp_path, trained_tree):
    store = ModelStore(store_config(tmp_path, workers=2, limit_mb=500), memory=plenty)
    urls = [copy_model(trained_tree / "model", tmp_path / "models", name) for name in ("a", "b", "c")]
    for url in urls:
        pad(url, 100 * MB)  # 100 MB and a little more on disk: 200 MB and more in two workers
    store.load("a", urls[0])
    store.load("b", urls[1])
    status, reason = refusal(store.load, "c", urls[2])
    assert status == 507
    assert "of the 500.0 MB of MULTI_MODEL_MEMORY_LIMIT_MB are in use" in reason
    assert [entry.name for entry in store.page()[0]] == ["a", "b"]
    store.unload("a")
    store.load("c", urls[2])


def test_a_model_too_large_for_the_limit_is_refused_before_it_is_loaded(tmp_path, trained_tree):
    store = ModelStore(store_config(tmp_path, limit_mb=100), memory=plenty)
    url = copy_model(trained_tree / "model", tmp_path / "models", "huge")
    for path in Path(url).rglob("*"):
        if path.is_file():
            path.write_bytes(b"not a model")  # a load would be a 400: the 507 comes first
    pad(url, 200 * MB)
    assert refusal(store.load, "huge", url)[0] == 507


def test_a_load_must_leave_a_tenth_of_the_containers_memory_free_once_every_worker_holds_it(tmp_path, trained_tree):
    tight = Memory(total=1000 * MB, available=150 * MB)
    url = copy_model(trained_tree / "model", tmp_path / "models", "first")
    pad(url, 30 * MB)
    one_worker = ModelStore(store_config(tmp_path, workers=1), memory=lambda: tight)
    one_worker.load("first", url)  # 150 MB free; 100 MB must stay free
    three_workers = ModelStore(store_config(tmp_path, workers=3), memory=lambda: tight)
    status, reason = refusal(three_workers.load, "first", url)  # two more copies: 90 MB left
    assert status == 507
    assert "150 MB of the container's 1000 MB are free" in reason


def write_files(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


MEMINFO = "MemTotal:       8000000 kB\nMemFree:  100 kB\nMemAvailable:   6000000 kB\n"


@pytest.mark.parametrize(
    ("files", "memory"),
    [
        ({}, Memory(8_192_000_000, 6_144_000_000)),
        ({"memory.max": "max\n", "memory.current": "5\n"}, Memory(8_192_000_000, 6_144_000_000)),
        (
            {"memory.max": "2000000000\n", "memory.current": "900000000\n", "memory.stat": "inactive_file 400000000\n"},
            Memory(2_000_000_000, 1_500_000_000),
        ),
        (
            {"memory/memory.limit_in_bytes": "1000000000\n", "memory/memory.usage_in_bytes": "300000000\n"},
            Memory(1_000_000_000, 700_000_000),
        ),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": "3\n"}, None),
    ],
)
def test_the_containers_memory_is_its_cgroups_else_the_machines(tmp_path, files, memory):
    cgroup = write_files(tmp_path / "cgroup", files)
    meminfo = write_files(tmp_path, {"meminfo": MEMINFO}) / "meminfo"
    assert container_memory(cgroup, meminfo) == (memory or Memory(8_192_000_000, 6_144_000_000))
    assert container_memory(cgroup, tmp_path / "absent") is None


def test_the_list_comes_in_pages(tmp_path, trained_tree):
    store = ModelStore(store_config(tmp_path), memory=plenty)
    for name in ("c", "a", "b"):
        store.load(name, copy_model(trained_tree / "model", tmp_path / "models", name))
    first = answer(store, "GET", "/models", b"max_results=2", b"")
    assert first == (200, {"models": [store.describe(name).description() for name in "ab"], "nextPageToken": "b"})
    rest = answer(store, "GET", "/models", b"max_results=2&next_page_token=b", b"")
    assert rest == (200, {"models": [store.describe("c").description()]})
    assert [model["modelName"] for model in answer(store, "GET", "/models", b"", b"")[1]["models"]] == ["a", "b", "c"]
    for query in (b"max_results=0", b"max_results=two", b"next_page_token=../a"):
        assert refusal(answer, store, "GET", "/models", query, b"")[0] == 400


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/models", b"{", 400),
        ("POST", "/models", b'["first"]', 400),
        ("POST", "/models", b'{"model_name": "first"}', 400),
        ("PUT", "/models", b"", 405),
        ("POST", "/models/first", b"", 405),
        ("GET", "/models/first/invoke", b"", 405),
        ("GET", "/models/first", b"", 404),
        ("DELETE", "/models/first", b"", 404),
    ],
)
def test_requests_the_api_refuses(tmp_path, method, path, body, status):
    store = ModelStore(store_config(tmp_path), memory=plenty)
    assert refusal(answer, store, method, path, b"", body)[0] == status


@pytest.mark.parametrize("text", ["abc", "0", "-1", "inf", "nan"])
def test_a_memory_limit_that_is_not_a_positive_number_is_refused(text):
    with pytest.raises(ValueError, match=f"must be a number of megabytes above 0, not {text!r}"):
        memory_limit({"MULTI_MODEL_MEMORY_LIMIT_MB": text})


def test_multi_model_mode_is_true_or_false():
    assert ServerSettings.from_environ({}).multi_model is False
    assert ServerSettings.from_environ({"SAGEMAKER_MULTI_MODEL": "True"}).multi_model is True


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        ({"SAGEMAKER_MULTI_MODEL": "yes"}, "SAGEMAKER_MULTI_MODEL must be true or false, not 'yes'"),
        (
            {"SAGEMAKER_MULTI_MODEL": "true", "MULTI_MODEL_MEMORY_LIMIT_MB": "lots"},
            "MULTI_MODEL_MEMORY_LIMIT_MB must be a number of megabytes above 0, not 'lots'",
        ),
    ],
)
def test_a_bad_multi_model_setting_stops_the_server_with_one_line(tmp_path, variables, reason):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    finished = run_cli("serve", base_dir=tmp_path, TMPDIR=str(scratch), **variables)
    assert finished.returncode != 0
    assert finished.stderr.strip() == f"cannot serve: {reason}"
    assert not any(scratch.iterdir())  # no registry left behind


# The real server, two workers, the way SageMaker drives it.


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory, trained_tree, mirrored_tree):
    """A multi-model server with two models loaded, `first` and `mirrored`; and its model root."""
    base_dir = tmp_path_factory.mktemp("endpoint") / "ml"
    root = base_dir / "models"
    urls = {
        "first": copy_model(trained_tree / "model", root, "first"),
        "mirrored": copy_model(mirrored_tree / "model", root, "mirrored"),
        "spare": copy_model(trained_tree / "model", root, "spare"),
        "huge": copy_model(trained_tree / "model", root, "huge"),
    }
    pad(urls["huge"], HUGE)
    copy_model(trained_tree / "model", base_dir.parent / "outside", "first")
    running = Server(
        base_dir,
        SAGEMAKER_MULTI_MODEL="true",
        MULTI_MODEL_MEMORY_LIMIT_MB=str(LIMIT_MB),
        SAGEMAKER_MAX_PAYLOAD_IN_MB="1",
    )
    status, _, body = running.wait_until_listening()
    assert (status, body) == (200, b"healthy\n")  # healthy with no model loaded
    for name in ("first", "mirrored"):
        assert load(running, name, urls[name]) == (200, {"modelName": name, "modelUrl": urls[name]})
    yield running, urls
    code, log = running.stop()
    assert code == 0, log
    assert "Traceback" not in log, log
    assert log.count("Booting worker") == 2, log


def load(server, name, url):
    status, content_type, body = server.request(
        "POST", "/models", json.dumps({"model_name": name, "url": url}), {"Content-Type": "application/json"}
    )
    return status, json.loads(body) if content_type == "application/json" else body.decode()


def invoke(server, name, body=BODY, content_type="text/csv", accept=None):
    headers = {"Content-Type": content_type, "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"}
    if accept:
        headers["Accept"] = accept
    return server.request("POST", f"/models/{name}/invoke", body, headers)


def listed(server, query=""):
    status, content_type, body = server.request("GET", f"/models{query}")
    assert (status, content_type) == (200, "application/json")
    return json.loads(body)


@pytest.fixture(scope="module")
def predictions(endpoint):
    _, urls = endpoint
    return {name: model_fn(urls[name]).model.predict(ROWS) for name in ("first", "mirrored")}


def test_each_model_answers_as_it_does_in_process(endpoint, predictions):
    server, _ = endpoint
    assert not np.array_equal(predictions["first"], predictions["mirrored"])  # else a mix-up would go unseen
    for _ in range(10):  # each on a new connection (which worker takes it is the kernel's choice: see below)
        for name, expected in predictions.items():
            assert invoke(server, name) == (200, "text/csv", as_csv(expected))
            status, content_type, body = invoke(server, name, json.dumps(ROWS.tolist()), "application/json")
            assert (status, content_type) == (200, "application/json")
            assert json.loads(body) == {"predictions": expected.tolist()}


def test_the_loaded_models_are_listed_and_described(endpoint):
    server, urls = endpoint
    described = {name: {"modelName": name, "modelUrl": urls[name]} for name in ("first", "mirrored")}
    assert listed(server) == {"models": [described["first"], described["mirrored"]]}
    page = listed(server, "?max_results=1")
    assert page == {"models": [described["first"]], "nextPageToken": "first"}
    assert listed(server, "?max_results=1&next_page_token=first") == {"models": [described["mirrored"]]}
    status, content_type, body = server.request("GET", "/models/mirrored")
    assert (status, content_type, json.loads(body)) == (200, "application/json", described["mirrored"])
    status, _, body = server.request("GET", "/models/absent")
    assert (status, body) == (404, b"model 'absent' is not loaded\n")


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "reason"),
    [
        (BODY, "text/plain", None, 415, b"use text/csv or application/json"),
        (BODY, "text/csv", "application/xml", 406, b"accept type 'application/xml' is not supported"),
        (b"oops" + BODY[BODY.index(b",") :], "text/csv", None, 400, b"malformed CSV"),
        (b"{", "application/json", None, 400, b"malformed JSON"),
        (b"1," * MB, "text/csv", None, 413, b"over the limit"),  # 2 MB, over the server's 1 MB
    ],
)
def test_an_invoke_follows_the_rules_of_invocations(endpoint, predictions, body, content_type, accept, status, reason):
    server, _ = endpoint
    answer_status, answer_type, answer_body = invoke(server, "first", body, content_type, accept)
    assert (answer_status, answer_type) == (status, "text/plain; charset=utf-8")
    assert reason in answer_body
    assert invoke(server, "first") == (200, "text/csv", as_csv(predictions["first"]))


def test_invocations_says_to_invoke_a_model_by_name(endpoint):
    server, _ = endpoint
    status, _, body = server.request("POST", "/invocations", BODY, {"Content-Type": "text/csv"})
    assert status == 404
    assert b"use POST /models/<name>/invoke" in body


def test_a_model_loaded_twice_is_a_409_and_a_url_without_one_a_404(endpoint, predictions):
    server, urls = endpoint
    status, reason = load(server, "first", urls["spare"])
    assert (status, reason) == (409, "model 'first' is already loaded; unload it first to load it again\n")
    missing = str(Path(urls["spare"]).parent / "nothing")
    assert load(server, "nothing", missing) == (404, f"there is no model at {missing}: it is not a folder\n")
    assert invoke(server, "first") == (200, "text/csv", as_csv(predictions["first"]))


def test_an_unloaded_model_is_gone_from_every_worker(endpoint, predictions):
    server, urls = endpoint
    assert load(server, "spare", urls["spare"])[0] == 200
    for _ in range(6):
        assert invoke(server, "spare") == (200, "text/csv", as_csv(predictions["first"]))
    status, _, body = server.request("DELETE", "/models/spare")
    assert (status, json.loads(body)) == (200, {"modelName": "spare", "modelUrl": urls["spare"]})
    for _ in range(6):
        assert invoke(server, "spare")[:2] == (404, "text/plain; charset=utf-8")
    assert server.request("GET", "/models/spare")[0] == 404
    assert server.request("DELETE", "/models/spare")[0] == 404
    assert [model["modelName"] for model in listed(server)["models"]] == ["first", "mirrored"]


def test_a_model_past_the_memory_limit_is_a_507_and_the_others_still_answer(endpoint, predictions):
    server, urls = endpoint
    status, reason = load(server, "huge", urls["huge"])
    assert status == 507
    assert f"of the {LIMIT_MB:.1f} MB of MULTI_MODEL_MEMORY_LIMIT_MB are in use" in reason
    assert [model["modelName"] for model in listed(server)["models"]] == ["first", "mirrored"]
    for name, expected in predictions.items():
        assert invoke(server, name) == (200, "text/csv", as_csv(expected))


@pytest.mark.parametrize("name", ["..", "../outside", "a%2Fb", "a%20b", "%2E%2E"])
def test_bad_names_in_the_path_are_a_400(endpoint, name):
    server, _ = endpoint
    for method, path in (("GET", f"/models/{name}"), ("DELETE", f"/models/{name}"), ("POST", f"/models/{name}/invoke")):
        status, _, body = server.request(method, path, BODY if method == "POST" else None, {"Content-Type": "text/csv"})
        assert (status, b"letters, digits" in body) == (400, True), body


def test_loads_of_bad_names_or_outside_urls_are_a_400_and_load_nothing(endpoint):
    server, urls = endpoint
    outside = str(Path(urls["first"]).parents[3] / "outside" / "first" / "model")
    for name in BAD_NAMES:
        status, reason = load(server, name, urls["spare"])
        assert status == 400
        assert "letters, digits" in reason
    for url in (outside, urls["spare"] + "/../../../../outside/first/model"):
        status, reason = load(server, "outside", url)
        assert status == 400
        assert "outside" in reason
    assert [model["modelName"] for model in listed(server)["models"]] == ["first", "mirrored"]


def test_the_ping_is_healthy_whatever_is_loaded(endpoint):
    server, _ = endpoint
    assert server.request("GET", "/ping")[::2] == (200, b"healthy\n")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/models", "GET, POST"),
        ("POST", "/models/first", "GET, DELETE"),
        ("GET", "/models/first/invoke", "POST"),
    ],
)
def test_a_method_a_path_does_not_answer_is_a_405_naming_those_it_does(endpoint, method, path, allow):
    server, _ = endpoint
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, b"{}")
        response = connection.getresponse()
        assert (response.status, response.getheader("Allow"), response.read()) == (
            405,
            allow,
            f"method {method} is not allowed on {path}; use {allow.replace(', ', ' or ')}\n".encode(),
        )
    finally:
        connection.close()


def booted_worker(server) -> int:
    """The pid of the next worker the server's log says it booted (reading the log up to that line)."""
    for line in server.process.stdout:
        booted = re.search(r"Booting worker with pid: (\d+)", line)
        if booted:
            return int(booted.group(1))
    raise AssertionError("the server stopped before booting another worker")


def test_workers_that_never_saw_the_load_answer_for_the_model_and_its_unload(tmp_path, trained_tree):
    """Both workers replaced after the load: every answer comes from a worker that only read the registry."""
    root = tmp_path / "ml" / "models"
    url = copy_model(trained_tree / "model", root, "first")
    expected = as_csv(model_fn(url).model.predict(ROWS))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    running = Server(tmp_path / "ml", SAGEMAKER_MULTI_MODEL="true", TMPDIR=str(temporary))
    try:
        workers = [booted_worker(running), booted_worker(running)]
        assert running.wait_until_listening()[0] == 200
        assert load(running, "first", url)[0] == 200
        for worker in workers:
            os.kill(worker, signal.SIGTERM)  # the worker exits; the master boots another
            assert booted_worker(running) not in workers
        for _ in range(10):
            assert invoke(running, "first") == (200, "text/csv", expected)
        assert [model["modelName"] for model in listed(running)["models"]] == ["first"]
        assert len(list(temporary.iterdir())) == 1  # the registry
        assert running.request("DELETE", "/models/first")[0] == 200
        for _ in range(10):
            assert invoke(running, "first")[0] == 404
    finally:
        code, log = running.stop()
    assert code == 0, log
    assert "Traceback" not in log, log
    assert list(temporary.iterdir()) == []
