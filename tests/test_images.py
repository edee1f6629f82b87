"""Build every rendered image for real and run it the way SageMaker does.

`docker run IMAGE train` against a SageMaker tree written by the project's own `sample-data`
command, mounted at /opt/ml; `docker run IMAGE serve` with SAGEMAKER_BIND_TO_PORT, real HTTP,
then SIGTERM. The engine is docker when one answers, else buildah (tests/containers.py); a base
image that cannot be pulled is replaced by a labelled stand-in (tests/standins.py). An image that
cannot be built here is skipped with the reason, never counted as passed; the terminal summary
lists every image with its size.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from .conftest import DEFAULTS, SUPPORTED, TEMPLATE_DIR, Combination, locked_versions, package_name
from .containers import Engine, EngineError, ImageInfo, RunOptions, detect, outside_writable_roots
from .image_report import DOES_NOT_APPLY
from .standins import PREBUILT_PYTHON, PREBUILT_TORCH, Base, NoBase, cache_dir, ensure_base
from .wheel_index import CpuWheelIndex, NoCpuWheel

MB = 1_000_000
PROJECT_TEMPLATE = Path(__file__).resolve().parent.parent / "{{cookiecutter.project_slug}}"
FIGURES_FILE = PROJECT_TEMPLATE / "_fragments" / "image-figures.j2"


def recorded_figures() -> dict:
    """The table the project README quotes (see that file): a JSON object inside one Jinja `set`."""
    text = FIGURES_FILE.read_text()
    return json.loads(text[text.index("{%- set image_figures =") + len("{%- set image_figures =") : text.rindex("-%}")])


# What a from-scratch image may add on top of its base image (the base is not ours to shrink), by framework
# and processor, from the figures table; an image without a budget fails its size test.
SIZE_BUDGET_MB = {
    tuple(kind.split("-")): figures["budget_mb"]
    for kind, figures in recorded_figures().items()
    if kind != "measured_on"
}
# How far an image's measured size may stray from the README's figure before the figure must be measured again.
SIZE_DRIFT = 0.10
# What a rebuild after a code-only change should take, reported beside each image (a benchmark figure,
# never asserted: timings depend on the machine and its load).
REBUILD_BUDGET_SECONDS = 15
# An extend-prebuilt image adds only the project's code to AWS's image (measured: well under 1 MB).
EXTEND_BUDGET_MB = 5
# SageMaker runs images as root unless the image sets USER; hosting expects root (see the project README).
SAGEMAKER_USERS = {"", "root", "0", "0:0"}
BROKEN_HYPERPARAMETER = "no_such_hyperparameter"
# One namespace per test run, so parallel runs on one machine never touch each other's images.
IMAGE_PREFIX = f"localhost/byoc-test-{os.getpid()}/"


@dataclass(frozen=True)
class ImageCase:
    combination: Combination
    python_version: str

    @property
    def id(self) -> str:
        return f"{self.combination.id}-py{self.python_version}"

    @property
    def extends(self) -> bool:
        """FROM AWS's prebuilt image: `train` is the sagemaker-training toolkit's, code in /opt/ml/code."""
        return self.combination.base_image == "extend-prebuilt"

    @property
    def installs_torch_cpu(self) -> bool:
        """Its build installs torch's CPU build from the index PIP_EXTRA_INDEX_URL names (tests/wheel_index.py)."""
        return self.combination.framework == "pytorch" and self.combination.processor == "cpu"

    def recorded(self) -> dict:
        """This from-scratch image's figures as the project README quotes them."""
        combination = self.combination
        return recorded_figures()[f"{combination.framework}-{combination.processor}"][combination.scope]

    def size_budget_mb(self) -> int | None:
        combination = self.combination
        return EXTEND_BUDGET_MB if self.extends else SIZE_BUDGET_MB.get((combination.framework, combination.processor))

    def answers(self) -> dict[str, str]:
        answers = self.combination.answers()
        if self.python_version != DEFAULTS["python_version"][0]:
            answers["python_version"] = self.python_version  # the default reuses other tests' bakes
        return answers


# Every supported combination on the default Python; the other Pythons on the default combination.
IMAGE_CASES = [ImageCase(c, DEFAULTS["python_version"][0]) for c in SUPPORTED] + [
    ImageCase(SUPPORTED[0], version) for version in DEFAULTS["python_version"][1:]
]


@dataclass(frozen=True)
class BuiltImage:
    case: ImageCase
    project: Path
    tag: str
    base: Base
    base_size: int
    info: ImageInfo
    build_seconds: float
    rebuild_seconds: float  # after a code-only change
    rebuild_cached: list[str]  # the instructions that rebuild took from the layer cache

    @property
    def serves(self) -> bool:
        return self.case.combination.scope == "train+serve"


@dataclass(frozen=True)
class TrainRun:
    tree: Path
    result: subprocess.CompletedProcess[str]
    outside: list[str]
    seconds: float


def dead_runs(image: str) -> bool:
    """Whether image belongs to an earlier test run whose process is gone (interrupted, killed)."""
    match = re.match(r"^localhost/byoc-test-(\d+)/", image)
    return match is not None and not Path(f"/proc/{match.group(1)}").exists()


@pytest.fixture(scope="session")
def engine() -> Engine:
    found = detect()
    if found is None:
        reason = "no container engine: no docker engine answers and buildah is not installed (or not root)"
        if os.environ.get("BYOC_REQUIRE_IMAGES") == "1":
            pytest.fail(reason + "; BYOC_REQUIRE_IMAGES=1 demands the image tests run")
        pytest.skip(reason)
    found.remove_leftovers(dead_runs)
    return found


def from_images(dockerfile: Path) -> list[str]:
    """The base images a Dockerfile names, with ARG defaults filled in (later stages may build FROM earlier ones)."""
    defaults: dict[str, str] = {}
    stages: set[str] = set()
    bases = []
    for line in dockerfile.read_text().splitlines():
        if match := re.match(r"^ARG\s+(\w+)=(\S+)", line, re.I):
            defaults[match.group(1)] = match.group(2)
        elif match := re.match(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I):
            name = re.sub(r"\$\{?(\w+)\}?", lambda variable: defaults.get(variable.group(1), ""), match.group(1))
            if name not in stages:
                bases.append(name)
            if match.group(2):
                stages.add(match.group(2))
    return bases


def build_arguments(dockerfile: Path) -> set[str]:
    """The build arguments a Dockerfile declares: only those are passed, so no build log warns of unused ones."""
    return set(re.findall(r"^\s*ARG\s+(\w+)", dockerfile.read_text(), re.M | re.I))


def project_pins(project: Path) -> dict[str, str]:
    """pyproject.toml's `name==version` dependencies, by normalised name."""
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)")  # extras (tensorflow[and-cuda]) left out
    pins = dict(pin.match(dependency).groups() for dependency in dependencies)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()}


def torch_wheel_wanted(case: ImageCase, project: Path) -> tuple[str, str]:
    """(torch version, Python version) whose CPU wheel the image's build installs: the stand-in's or the project's."""
    if case.extends:
        return PREBUILT_TORCH, PREBUILT_PYTHON
    return project_pins(project)["torch"], case.python_version


@pytest.fixture(scope="session")
def torch_cpu_index(tmp_path_factory) -> Iterator[CpuWheelIndex]:
    index = CpuWheelIndex(tmp_path_factory.mktemp("torch-cpu-index"), cache_dir().parent / "wheels")
    yield index
    index.close()


# Secrets a careless build would copy in: a user's .env, AWS credentials, the local SageMaker tree.
DECOYS = {
    ".env": "AWS_SECRET_ACCESS_KEY=byoc-decoy-secret\n",
    ".aws/credentials": "[default]\naws_secret_access_key = byoc-decoy-secret\n",
    "local/input/config/byoc-decoy.json": "{}\n",
}
CREDENTIAL_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def with_decoys(project: Path, context: Path) -> Path:
    """The rendered project as a build context, with files that must never reach the image."""
    shutil.copytree(project, context, ignore=shutil.ignore_patterns("__pycache__", ".*_cache", ".venv"))
    for name, text in DECOYS.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(text)
    return context


@pytest.fixture(scope="module", params=IMAGE_CASES, ids=lambda case: case.id)
def image(request, bake_once, engine: Engine, tmp_path_factory):
    case: ImageCase = request.param
    for variable, value in (
        ("BYOC_IMAGE_FRAMEWORKS", case.combination.framework),
        ("BYOC_IMAGE_PROCESSORS", case.combination.processor),
    ):
        selected = os.environ.get(variable)
        if selected and value not in selected.split(","):
            pytest.skip(f"image {case.id} not built: {variable}={selected} leaves it out")
    result = bake_once(**case.answers())
    assert result.exit_code == 0, f"{case.id} did not render: {result.exception}"
    project: Path = result.project_path
    build_args = {}
    if case.installs_torch_cpu:
        # PyTorch's CPU wheel index, the build argument the project documents.
        index = request.getfixturevalue("torch_cpu_index")
        try:
            build_args["PIP_EXTRA_INDEX_URL"] = index.url_for(*torch_wheel_wanted(case, project))
        except NoCpuWheel as reason:
            if os.environ.get("BYOC_REQUIRE_IMAGES") == "1":
                pytest.fail(f"image {case.id}: {reason}; BYOC_REQUIRE_IMAGES=1 demands the image tests run")
            pytest.skip(f"image {case.id} not built: {reason}")
    bases = []
    for name in from_images(project / "Dockerfile"):
        try:
            bases.append(ensure_base(engine, name, build_args))
        except NoBase as reason:
            pytest.skip(f"image {case.id} not built: {reason}")
    tag = f"{IMAGE_PREFIX}{case.id.replace('+', '-')}:latest"
    context = with_decoys(project, tmp_path_factory.mktemp("context") / project.name)
    declared = build_arguments(project / "Dockerfile")
    arguments = {k: v for k, v in build_args.items() if k in declared}
    started = time.monotonic()
    overrides = {name: image for base in bases for name, image in base.overrides().items()}
    build(engine, case, context, tag, arguments, overrides)
    build_seconds = time.monotonic() - started
    # What a user's next `make build` after editing model.py does: every layer but the code's from the cache.
    edited = context / "src" / package_name(project) / "model.py"
    edited.write_text(edited.read_text() + "# edited after the first build\n")
    started = time.monotonic()
    rebuild_log = build(engine, case, context, tag, arguments, overrides)
    built = BuiltImage(
        case=case,
        project=project,
        tag=tag,
        base=bases[-1],
        base_size=engine.inspect(bases[-1].image).size,
        info=engine.inspect(tag),
        build_seconds=build_seconds,
        rebuild_seconds=time.monotonic() - started,
        rebuild_cached=engine.cached_steps(rebuild_log),
    )
    yield built
    engine.remove_image(tag)  # with the build's cached layers; only the bases stay


def build(
    engine: Engine, case: ImageCase, context: Path, tag: str, build_args: dict[str, str], bases: dict[str, str]
) -> str:
    try:
        return engine.build(context, tag, timeout=1800, build_args=build_args, base_images=bases)
    except EngineError as error:
        pytest.fail(f"{case.id}: the rendered Dockerfile did not build with {engine.name}:\n{str(error)[-6000:]}")


def sample_tree(project: Path, directory: Path) -> Path:
    """A SageMaker tree written by the project's own `sample-data` command."""
    package = package_name(project)
    environ = dict(os.environ, PYTHONPATH=str(project / "src"))
    command = [sys.executable, "-m", package, "sample-data", str(directory)]
    finished = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr
    return directory


def run_to_end(
    engine: Engine, tag: str, args: list[str], options: RunOptions
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    container = engine.create(tag, args, options)
    try:
        result = engine.run(container, timeout=900)
        return result, outside_writable_roots(engine.changes(container))
    finally:
        engine.remove(container)


def note(request, **values: object) -> None:
    """Facts for the terminal summary (tests/conftest.py), carried by the test report."""
    request.node.user_properties.append(("image", json.dumps({"id": request.node.callspec.id, **values})))


# What SageMaker mounts for a training job: the image's own /opt/ml/code stays visible.
TRAINING_MOUNTS = ("input", "model", "output")
# What the service sets for every job (the SDK's ModelTrainer with no source code adds nothing).
TRAINING_JOB_ENV = {"TRAINING_JOB_NAME": "byoc-image-test", "TRAINING_JOB_ARN": "arn:aws:sagemaker:::training-job/byoc"}


def training_options(tree: Path) -> RunOptions:
    """A training job with network isolation; the job's host, algo-1, resolves as on SageMaker."""
    for folder in TRAINING_MOUNTS:
        (tree / folder).mkdir(exist_ok=True)
    return RunOptions(mount=tree, network=False, subfolders=TRAINING_MOUNTS, hostname="algo-1", env=TRAINING_JOB_ENV)


@pytest.fixture(scope="module")
def trained(image: BuiltImage, engine: Engine, tmp_path_factory) -> TrainRun:
    """`docker run IMAGE train`, offline, as a training job with network isolation would run it."""
    tree = sample_tree(image.project, tmp_path_factory.mktemp("trained") / "ml")
    started = time.monotonic()
    result, outside = run_to_end(engine, image.tag, ["train"], training_options(tree))
    return TrainRun(tree, result, outside, time.monotonic() - started)


def test_train_writes_the_model(request, image: BuiltImage, trained: TrainRun):
    note(request, train_seconds=round(trained.seconds, 1))
    assert trained.result.returncode == 0, trained.result.stdout[-6000:]
    assert not (trained.tree / "output" / "failure").exists()
    assert [path for path in (trained.tree / "model").rglob("*") if path.is_file()], "no model in /opt/ml/model"
    metrics = json.loads((trained.tree / "output" / "data" / "metrics.json").read_text())
    assert re.search(r"^validation:accuracy=\d", trained.result.stdout, re.M)
    assert metrics["validation:accuracy"] > 0.5
    assert trained.outside == [], f"train wrote outside /opt/ml and /tmp: {trained.outside}"
    if image.case.extends:
        # The toolkit ran the job and reported it; serving images read the handlers from the artifact.
        assert "Reporting training SUCCESS" in trained.result.stdout, trained.result.stdout[-3000:]
        assert (trained.tree / "output" / "success").exists()
        if image.serves:
            assert (trained.tree / "model" / "code" / "inference.py").exists()


def test_train_with_a_broken_hyperparameter_fails_clearly(image: BuiltImage, engine: Engine, tmp_path: Path):
    tree = sample_tree(image.project, tmp_path / "ml")
    config = tree / "input" / "config" / "hyperparameters.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), BROKEN_HYPERPARAMETER: "1"}))
    result, outside = run_to_end(engine, image.tag, ["train"], training_options(tree))
    assert result.returncode != 0, result.stdout[-3000:]
    failure = tree / "output" / "failure"
    assert failure.exists(), result.stdout[-3000:]
    assert BROKEN_HYPERPARAMETER in failure.read_text()
    assert not [path for path in (tree / "model").rglob("*") if path.is_file()], "a failed job left a model"
    assert outside == [], f"train wrote outside /opt/ml and /tmp: {outside}"


# A job launched with the notebook's use_local_code: the SDK's start-up script (tests/sdk_source_code.py) runs in
# place of the image's entrypoint, from the sm_drivers channel, and starts the project's code from the code channel.
NOTEBOOK_PYTHON = TEMPLATE_DIR / ".venv-notebook" / "bin" / "python"
LOCAL_CODE_MARKER = "byoc-test: model.py ran from"
UPLOADED_COPY = "# byoc-test: the uploaded copy\n"


def local_code_job(image: BuiltImage, tree: Path) -> tuple[list[str], list[str]]:
    """The channels such a job gets, in `tree`: the project's code, as the notebook stages it, with model.py changed to
    print where it runs from, and the SDK's drivers; returns the job's container entrypoint and arguments."""
    if not NOTEBOOK_PYTHON.exists():
        pytest.fail(f"{NOTEBOOK_PYTHON} is missing: make .venv-notebook/installed creates it (the SageMaker SDK)")
    package = package_name(image.project)
    data = tree / "input" / "data"
    code = data / "code"
    unneeded = shutil.ignore_patterns("__pycache__")
    if image.case.extends:
        shutil.copytree(image.project / "toolkit", code, ignore=unneeded)
    shutil.copytree(image.project / "src" / package, code / package, ignore=unneeded)
    for module in (code / package).rglob("*.py"):
        module.write_text(module.read_text() + UPLOADED_COPY)
    model = code / package / "model.py"
    model.write_text(model.read_text() + f'print(f"{LOCAL_CODE_MARKER} {{__file__}}", flush=True)\n')
    command = "python train_entry.py" if image.case.extends else f"python -m {package} train"
    started = subprocess.run(
        [str(NOTEBOOK_PYTHON), str(Path(__file__).with_name("sdk_source_code.py")), str(data / "sm_drivers"), command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    # SageMaker lists every channel in inputdataconfig.json, the SDK's two as well.
    config = tree / "input" / "config" / "inputdataconfig.json"
    channels = json.loads(config.read_text())
    for name in ("code", "sm_drivers"):
        channels[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
    config.write_text(json.dumps(channels))
    # The SDK's drivers read what SageMaker's resourceconfig.json holds besides the hosts; the sample tree has no need.
    resources = tree / "input" / "config" / "resourceconfig.json"
    instance = {"current_instance_type": "ml.m5.large", "current_group_name": "homogeneousCluster"}
    resources.write_text(json.dumps({**json.loads(resources.read_text()), **instance}))
    start = json.loads(started.stdout)
    return start["entrypoint"], start["arguments"]


def test_train_runs_uploaded_code_instead_of_the_image_s(image: BuiltImage, engine: Engine, tmp_path: Path):
    # The command and entrypoint depend on the framework and base only; the train+serve image also packs handlers
    # from the upload, so it covers its train-only twin (and the other Python), at two training runs per image less.
    if not image.serves or image.case.python_version != DEFAULTS["python_version"][0]:
        pytest.skip(f"image {image.case.id}: the uploaded-code path runs on the train+serve image of its framework")
    tree = sample_tree(image.project, tmp_path / "ml")
    entrypoint, arguments = local_code_job(image, tree)
    options = replace(training_options(tree), entrypoint=entrypoint)
    result, outside = run_to_end(engine, image.tag, arguments, options)
    assert result.returncode == 0, result.stdout[-6000:]
    # The changed model.py ran, from the code channel; the image's own copy has no such line.
    ran_from = f"{LOCAL_CODE_MARKER} /opt/ml/input/data/code/{package_name(image.project)}/model.py"
    assert ran_from in result.stdout, result.stdout[-6000:]
    assert not (tree / "output" / "failure").exists()
    assert [path for path in (tree / "model").rglob("*") if path.is_file()], "no model in /opt/ml/model"
    assert re.search(r"^validation:accuracy=\d", result.stdout, re.M)
    if image.case.extends and image.serves:
        # The handlers go into the artifact from the uploaded code too.
        packed = list((tree / "model" / "code" / package_name(image.project)).rglob("*.py"))
        assert packed and all(UPLOADED_COPY in module.read_text() for module in packed), packed
    assert outside == [], f"train wrote outside /opt/ml and /tmp: {outside}"

    # SageMaker's contract holds as with the image's own entrypoint: the package's failure file, a non-zero exit.
    broken = sample_tree(image.project, tmp_path / "broken")
    entrypoint, arguments = local_code_job(image, broken)
    hyperparameters = broken / "input" / "config" / "hyperparameters.json"
    hyperparameters.write_text(json.dumps({**json.loads(hyperparameters.read_text()), BROKEN_HYPERPARAMETER: "1"}))
    result, _ = run_to_end(engine, image.tag, arguments, replace(training_options(broken), entrypoint=entrypoint))
    assert result.returncode != 0, result.stdout[-3000:]
    assert BROKEN_HYPERPARAMETER in (broken / "output" / "failure").read_text(), result.stdout[-3000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(port: int, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_healthy(port: int, process: subprocess.Popen[str], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            pytest.fail(f"serve exited {process.returncode} before answering /ping:\n{process.stdout.read()[-4000:]}")
        try:
            if http(port, "/ping")[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"/ping did not answer 200 within {timeout} s")


def test_serve_answers_and_stops_on_sigterm(request, image: BuiltImage, engine: Engine, trained: TrainRun):
    if image.case.extends and not image.serves:
        pytest.skip(f"image {image.case.id}: {DOES_NOT_APPLY} (a train-only extend-prebuilt project has no endpoint)")
    if image.case.extends:
        pytest.skip(
            f"image {image.case.id}: not run, endpoints run AWS's prebuilt inference image with the artifact's "
            "code/, not this image, and AWS's model servers have no stand-in (see "
            "test_artifact_handlers_answer_in_the_image)"
        )
    if not image.serves:
        # A train-only image has no server: `serve` must be refused, not half-start.
        result, _ = run_to_end(engine, image.tag, ["serve"], RunOptions(mount=trained.tree, network=False))
        assert result.returncode != 0 and "serve" in result.stdout, result.stdout[-3000:]
        note(request, serve="refused (train-only)")
        return
    assert trained.result.returncode == 0, "serving needs the model the train test makes"
    port = free_port()
    env = {"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    container = engine.create(image.tag, ["serve"], RunOptions(mount=trained.tree, env=env, port=port))
    try:
        engine.start(container)
        assert container.process is not None
        ready = wait_until_healthy(port, container.process, timeout=120)
        requests_dir = trained.tree / "sample-requests"
        csv_status, csv_answer = http(
            port,
            "/invocations",
            (requests_dir / "payload.csv").read_bytes(),
            {"Content-Type": "text/csv", "Accept": "application/json"},
        )
        json_status, json_answer = http(
            port,
            "/invocations",
            (requests_dir / "payload.json").read_bytes(),
            {"Content-Type": "application/json", "Accept": "text/csv"},
        )
        refused_status, _ = http(port, "/invocations", b"x", {"Content-Type": "application/x-no-such-type"})
        started = time.monotonic()
        status = engine.terminate(container, timeout=30)
        stop_seconds = time.monotonic() - started
        log = container.process.stdout.read() if container.process.stdout else ""
        outside = outside_writable_roots(engine.changes(container))
    finally:
        engine.remove(container)
    note(request, ready_seconds=round(ready, 1), stop_seconds=round(stop_seconds, 1))
    assert (csv_status, json_status) == (200, 200), (csv_answer, json_answer)
    predictions = json.loads(csv_answer)["predictions"]
    rows = (requests_dir / "payload.csv").read_text().strip().splitlines()
    assert len(predictions) == len(rows)
    assert [str(p) for p in predictions] == json_answer.decode().split(), "CSV and JSON requests disagree"
    assert refused_status == 415
    assert status == 0, f"serve exited {status} on SIGTERM:\n{log[-4000:]}"
    assert "Traceback" not in log, log[-4000:]
    assert outside == [], f"serve wrote outside /opt/ml and /tmp: {outside}"


# Run inside the image: the sagemaker-inference toolkit's Transformer calls the handlers in the
# artifact's code/ as the toolkit's handler service does for each request (argv: requests as JSON).
HANDLERS = """
import json, os, sys
sys.path.insert(0, os.path.join("/opt/ml/model", "code"))  # what the toolkit's model server puts on the path
from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
from sagemaker_inference.transformer import Transformer

class Request:
    def __init__(self, headers):
        self.headers = headers
    def get_request_properties(self):
        return self.headers

class Context:
    def __init__(self, headers):
        self.system_properties = {"model_dir": "/opt/ml/model"}
        self.request_processor = [Request(headers)]
        self.content_type = self.status = None
    def set_response_content_type(self, index, value):
        self.content_type = value
    def set_response_status(self, code, phrase):
        self.status = code

transformer = Transformer(default_inference_handler=DefaultInferenceHandler())
answers = []
for body, headers in json.loads(sys.argv[1]):
    context = Context(headers)
    (answer,) = transformer.transform([{"body": body.encode()}], context)
    answer = answer.decode() if isinstance(answer, bytes) else str(answer)
    answers.append({"status": context.status or 200, "content_type": context.content_type, "body": answer})
print(json.dumps(answers))
"""


def test_artifact_handlers_answer_in_the_image(request, image: BuiltImage, engine: Engine, trained: TrainRun):
    """extend-prebuilt, train+serve: the artifact's code/ answers through the image's own inference toolkit.

    AWS's scikit-learn image is both the training and the inference image; its stand-in carries the
    sagemaker-inference toolkit but no model server, so the toolkit's Transformer is driven directly.
    AWS's PyTorch endpoint image (pytorch-inference) is a separate image whose handler service drives
    the same Transformer; here the handlers run in the training stand-in, which carries torch and the
    toolkit, as the nearest thing to it.
    """
    if not image.case.extends or not image.serves:
        pytest.skip(f"image {image.case.id}: {DOES_NOT_APPLY} (only extend-prebuilt train+serve images have handlers)")
    if image.case.combination.framework == "tensorflow":
        pytest.skip(f"image {image.case.id}: its endpoint is TensorFlow Serving, which has no stand-in here")
    assert trained.result.returncode == 0, "the handlers need the model the train test makes"
    requests_dir = trained.tree / "sample-requests"
    asks = [
        [(requests_dir / "payload.csv").read_text(), {"Content-Type": "text/csv", "Accept": "application/json"}],
        [(requests_dir / "payload.json").read_text(), {"Content-Type": "application/json", "Accept": "text/csv"}],
        ["x", {"Content-Type": "application/x-no-such-type"}],
    ]
    # As the endpoint runs: the artifact at /opt/ml/model, the notebook's environment, no network.
    env = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    options = RunOptions(mount=trained.tree, network=False, subfolders=("model",), env=env, entrypoint=["python", "-c"])
    result, outside = run_to_end(engine, image.tag, [HANDLERS, json.dumps(asks)], options)
    assert result.returncode == 0, result.stdout[-4000:]
    csv_answer, json_answer, refused = json.loads(result.stdout.strip().splitlines()[-1])
    note(request, handlers="answered in the image (sagemaker-inference Transformer)")
    assert (csv_answer["status"], json_answer["status"]) == (200, 200), (csv_answer, json_answer)
    predictions = json.loads(csv_answer["body"])["predictions"]
    rows = (requests_dir / "payload.csv").read_text().strip().splitlines()
    assert len(predictions) == len(rows)
    assert [str(p) for p in predictions] == json_answer["body"].split(), "CSV and JSON requests disagree"
    assert refused["status"] == 415, refused
    assert outside == [], f"the handlers wrote outside /opt/ml and /tmp: {outside}"


# Run inside the image: who runs it, what is installed, and any decoy that slipped in (argv: mounted folders).
INSPECTION = """
import importlib.metadata, json, os, re, sys
strays = []
for top, folders, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev", *sys.argv[1:]):
        folders.clear()
        continue
    for name in files:
        if name == ".env" or "byoc-decoy" in name or (top.endswith("/.aws") and name == "credentials"):
            strays.append(os.path.join(top, name))
installed = {
    re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version for dist in importlib.metadata.distributions()
}
print(json.dumps({"uid": os.getuid(), "strays": strays, "installed": installed}))
"""


@pytest.fixture(scope="module")
def inside(image: BuiltImage, engine: Engine, tmp_path_factory) -> dict:
    # An extend-prebuilt image keeps code in /opt/ml/code: mount one folder beside it, not over it.
    subfolders = ("input",) if image.case.extends else ()
    mounted = [f"/opt/ml/{folder}" for folder in subfolders] or ["/opt/ml"]
    mount = tmp_path_factory.mktemp("inspect")
    for folder in subfolders:
        (mount / folder).mkdir()
    options = RunOptions(mount=mount, network=False, entrypoint=["python", "-c"], subfolders=subfolders)
    result, _ = run_to_end(engine, image.tag, [INSPECTION, *mounted], options)
    assert result.returncode == 0, result.stdout[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_image_holds_no_credentials_or_local_files(image: BuiltImage, inside: dict):
    assert inside["strays"] == [], "files from the build folder that must never be in the image"
    variables = {entry.split("=", 1)[0] for entry in image.info.env}
    assert not variables & CREDENTIAL_VARIABLES, f"the image sets {variables & CREDENTIAL_VARIABLES}"


# What the base image's Python brings itself, outside any lock (a lock may still name one, for another
# Python: torch asks for setuptools on 3.12 and later).
BASE_DISTRIBUTIONS = {"pip", "setuptools", "wheel"}


def test_image_holds_exactly_the_locked_dependencies(image: BuiltImage, inside: dict):
    if image.case.extends:
        pytest.skip(
            f"image {image.case.id}: {DOES_NOT_APPLY} (its packages are AWS's image's, here a stand-in's; "
            "the Dockerfile installs none)"
        )
    pins = project_pins(image.project)
    locked = locked_versions(image.project)
    assert pins, "pyproject.toml pins nothing"
    installed = dict(inside["installed"])
    # `==2.13.0` admits PyTorch's CPU build `2.13.0+cpu` (a local version label), as pip does.
    off = {name: installed.get(name) for name in pins if installed.get(name) not in SpecifierSet(f"=={pins[name]}")}
    assert off == {}, f"installed {off}, pyproject.toml pins {pins}"
    own = {name: version for name, version in installed.items() if name not in BASE_DISTRIBUTIONS}
    unlocked = {name: version for name, version in own.items() if version not in locked.get(name, {version})}
    strays = sorted(set(own) - set(locked))
    assert unlocked == {}, f"installed versions other than requirements.txt's: {unlocked}"
    assert strays == [], f"installed but not in requirements.txt: {strays}"
    if image.case.installs_torch_cpu:
        assert installed["torch"].endswith("+cpu"), f"torch {installed['torch']} is not the CPU build"


def test_image_runs_as_the_user_sagemaker_runs_it(image: BuiltImage, inside: dict):
    user = image.info.user
    assert user in SAGEMAKER_USERS, f"the image sets USER {user!r}; SageMaker hosting expects root"
    assert inside["uid"] == 0


def test_a_code_change_rebuilds_only_the_code(request, image: BuiltImage):
    note(request, rebuild_seconds=round(image.rebuild_seconds, 1), rebuild_budget_seconds=REBUILD_BUDGET_SECONDS)
    cached = image.rebuild_cached
    code_steps = [step for step in cached if step.startswith("COPY src")]
    assert code_steps == [], f"the rebuild after editing model.py took the code from the cache: {code_steps}"
    if not image.case.extends:
        installs = [step for step in cached if step.startswith("RUN") and "requirements.txt" in step]
        assert installs, f"the rebuild after editing model.py installed the dependencies again (cached: {cached})"


def test_image_size_within_budget(request, image: BuiltImage):
    budget = image.case.size_budget_mb()
    added = image.info.size - image.base_size
    note(
        request,
        engine=request.getfixturevalue("engine").name,
        base=image.base.describe(),
        size_mb=round(image.info.size / MB),
        base_mb=round(image.base_size / MB),
        added_mb=round(added / MB, 1),
        budget_mb=budget,
        build_seconds=round(image.build_seconds),
    )
    assert budget is not None, f"no size budget declared for {image.case.id} in {FIGURES_FILE.name}"
    assert added <= budget * MB, f"{image.case.id} adds {added / MB:.1f} MB to its base, over the {budget} MB budget"
    if not image.case.extends and image.case.python_version == DEFAULTS["python_version"][0]:
        quoted = image.case.recorded()["added_mb"]
        assert abs(added / MB - quoted) <= SIZE_DRIFT * quoted, (
            f"{image.case.id} adds {added / MB:.0f} MB, the README says {quoted} MB: measure again and update "
            f"{FIGURES_FILE.relative_to(PROJECT_TEMPLATE.parent)}"
        )


def run_python_on_base(engine: Engine, bake_once, mount: Path, script: str):
    """`python -c script` offline in the default combination's base image: the run's result and files outside."""
    project = bake_once(**IMAGE_CASES[0].answers()).project_path
    try:
        base = ensure_base(engine, from_images(project / "Dockerfile")[-1])
    except NoBase as reason:
        pytest.skip(str(reason))
    options = RunOptions(mount=mount, network=False, entrypoint=["python", "-c"])
    try:
        return run_to_end(engine, base.image, [script], options)
    finally:
        engine.release(base.image)


def test_change_detection_sees_a_stray_file(engine: Engine, bake_once, tmp_path: Path):
    """The 'nothing outside /opt/ml and /tmp' checks above can fail: a stray write is caught."""
    script = "open('/root/stray', 'w').close(); open('/tmp/fine', 'w').close(); open('/opt/ml/fine', 'w').close()"
    result, outside = run_python_on_base(engine, bake_once, tmp_path, script)
    assert result.returncode == 0, result.stdout
    assert outside == ["/root/stray"]
    assert (tmp_path / "fine").exists()


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.id)
def test_project_readme_states_the_size_budget(bake_once, case: ImageCase):
    """The rendered README quotes the budget these tests enforce for its image, and its recorded figures."""
    readme = " ".join((bake_once(**case.answers()).project_path / "README.md").read_text().split())
    assert f"adds more than {case.size_budget_mb()} MB" in readme
    if not case.extends:
        figures = case.recorded()
        assert f"this image adds {figures['added_mb']} MB to its base" in readme
        assert f"it built in {figures['build_seconds']} s, and again after a code change in" in readme
        assert f"in {figures['rebuild_seconds']} s, since only the code's layer is rebuilt" in readme


OFFLINE_PROBE = """
import socket
interfaces = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    socket.create_connection(server.getsockname(), timeout=5).close()
print(",".join(sorted(interfaces)))
"""


def test_offline_runs_keep_only_the_loopback_interface(engine: Engine, bake_once, tmp_path: Path):
    """A run without network (training with network isolation) has a working loopback and nothing else."""
    result, _ = run_python_on_base(engine, bake_once, tmp_path, OFFLINE_PROBE)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1] == "lo"
