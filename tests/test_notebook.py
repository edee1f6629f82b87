"""The launcher notebook, run top to bottom with papermill for every supported combination, against moto.

Each run gets its own `moto_server` on 127.0.0.1 (a free port, recording every request it receives) and a
kernel from `.venv-notebook` (the SageMaker SDK conflicts with the main environment's pins, see
`tests/requirements-notebook.txt`) that imports the rendered project from its `src/`. What the emulator
needs differently from AWS lives in `notebook_kernel_startup.py`, never in the notebook. The assertions read
the requests that reached the emulator and its final state, and compare them with what the project itself
produces: its hyperparameter schema, its sample data, the metric lines its training prints.

Every combination's run also asks for one launch option: managed spot training where the project only trains,
a warm pool where it also serves. One more run per framework, of a train+serve project, starts a tuning job instead
of a training job; moto answers it with a best training job it never made, so the test makes that job itself first.
The train-only CPU runs (one per framework and base image, the two ways the code is started) launch with
`use_local_code`: the SDK uploads the project's code as the job's `code` channel and its start-up script as
`sm_drivers`; the test checks what was uploaded and how the job is told to start (tests/test_images.py runs that
start-up in the built images).
Every combination's run hosts the model in real time (HOSTING_MODE's default). The other hosting modes (batch
transform, asynchronous, serverless and multi-model endpoints) run on a covering set, HOSTING_COVER, plus one run
each whose request fails, HOSTING_FAILURES; moto writes neither transform outputs nor async answers where AWS does,
nor training artifacts, so notebook_kernel_startup.py does, and the answers are moto's canned ones: these runs prove
the notebook's calls, its checks of what comes back and its clean-up, not the model.
The runs go in parallel when the module starts; each test then waits for the run it checks.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from .conftest import BASE_IMAGES, FRAMEWORKS, SUPPORTED, TEMPLATE_DIR, Combination, package_name

NOTEBOOK_VENV = TEMPLATE_DIR / ".venv-notebook"
STARTUP_FILE = Path(__file__).with_name("notebook_kernel_startup.py")
PARALLEL_RUNS = 3  # kernels mostly wait on imports and the emulator; 3 keeps 2 cores busy
RUN_TIMEOUT = 300

ACCOUNT = "123456789012"  # moto's default account
EMULATOR_AGENT = "byoc-test-emulator"  # notebook_kernel_startup.py's own requests carry it in their user agent
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/notebook-test"
BUCKET = "sagemaker-notebook-test"  # inside the policy's sagemaker-* buckets
# Two hosts, each with its own share of the train files, for the frameworks that train across hosts;
# scikit-learn refuses more than one host (it would train N separate copies).
SINGLE_HOST_FRAMEWORKS = {"sklearn"}
MULTI_HOST = {"instance_count": 2, "train_distribution": "ShardedByS3Key"}
SINGLE_HOST = {"instance_count": 1, "train_distribution": "FullyReplicated"}
# The launch options each combination's run adds: spot for projects that only train, a warm pool for the others.
SPOT = {"use_spot": True, "max_runtime_seconds": 1800}  # max_wait_seconds left to its default, twice the runtime
WARM_POOL = {"keep_alive_seconds": 600}
# The pushed image with the project's current code: one run per framework and base image (the start command differs
# by base image only), on projects that only train, so the train+serve runs keep checking the image's own code.
LOCAL_CODE = [c for c in SUPPORTED if (c.scope, c.processor) == ("train-only", "cpu")]
# The channels the SDK adds for source code, and how it starts the container then (sagemaker.train.constants).
SDK_CHANNELS = {"code", "sm_drivers"}
SDK_ENTRYPOINT = ["/bin/bash"]
SDK_ARGUMENTS = [
    "-c",
    "chmod +x /opt/ml/input/data/sm_drivers/sm_train.sh && /opt/ml/input/data/sm_drivers/sm_train.sh",
]
# A tuning job of two training jobs, one at a time, for one train+serve project of each framework.
TUNING = [c for c in SUPPORTED if (c.scope, c.base_image, c.processor) == ("train+serve", "from-scratch", "cpu")]
TUNING_SETTINGS = {"tuning_jobs": 2, "tuning_parallel_jobs": 1}
# moto's DescribeHyperParameterTuningJob names this best training job without having made it.
BEST_JOB = "FakeTrainingJobName"
# moto answers invocations with whatever is queued; these stand for the model's answers to five rows.
CSV_ANSWER = "0\n1\n2\n0\n1\n"
JSON_ANSWER = {"predictions": [0, 1, 2, 0, 1]}

# HOSTING_MODE: every combination's run hosts in real time (the notebook's default). Each other mode runs on a covering
# set: once with each base image (the serving image and its environment differ by base image only), the frameworks
# spread among them. Serverless and multi-model are CPU only (the set-up cell refuses them otherwise: the refusal
# tests below). test_hosting_cover_spans_every_mode_and_base_image checks this table against the notebook's modes.
HOSTING_COVER = {
    "batch": ["pytorch-train+serve-from-scratch-gpu", "sklearn-train+serve-extend-prebuilt-cpu"],
    "async": ["tensorflow-train+serve-from-scratch-cpu", "pytorch-train+serve-extend-prebuilt-gpu"],
    "serverless": ["sklearn-train+serve-from-scratch-cpu", "tensorflow-train+serve-extend-prebuilt-cpu"],
    "multi-model": ["pytorch-train+serve-from-scratch-cpu", "tensorflow-train+serve-extend-prebuilt-cpu"],
}
# One run per mode with the mode's own request failing, on scikit-learn projects (the quickest kernel), to prove that
# the notebook deletes what it created: <service>.<Operation> is refused before it is sent; an asynchronous request
# fails as it does on AWS, with its error written to the failure path instead of an answer (ASYNC_ERROR).
ASYNC_ERROR = "async error"
ASYNC_ERROR_BODY = "the model could not answer: injected by the notebook test"
HOSTING_FAILURES = {
    "batch": ("sklearn-train+serve-from-scratch-cpu", "sagemaker.CreateTransformJob"),
    "async": ("sklearn-train+serve-extend-prebuilt-cpu", ASYNC_ERROR),
    "serverless": ("sklearn-train+serve-from-scratch-cpu", "sagemaker-runtime.InvokeEndpoint"),
    "multi-model": ("sklearn-train+serve-extend-prebuilt-cpu", "sagemaker-runtime.InvokeEndpoint"),
}
# The notebook's own output check, made to fail: the async answer comes back one line short of the rows sent.
SHORT_ASYNC_ANSWER = "async answer one line short"
CHECK_FAILURES = {"async": ("sklearn-train+serve-from-scratch-cpu", SHORT_ASYNC_ANSWER)}
BY_ID = {c.id: c for c in SUPPORTED}
HOSTING_RUNS = [(mode, BY_ID[key]) for mode, keys in HOSTING_COVER.items() for key in keys]
SERVERLESS = {"serverless_memory_mb": 3072, "serverless_max_concurrency": 7}  # not the notebook's defaults
MULTI_MODEL_TARGETS = ["model-a.tar.gz", "model-b.tar.gz"]

SCHEMA_DUMP = """
import json
from {package}.model import HYPERPARAMETERS

print(json.dumps([
    {{"name": h.name, "type": h.type.__name__, "default": h.default,
      "minimum": h.minimum, "maximum": h.maximum, "choices": list(h.choices)}}
    for h in HYPERPARAMETERS
]))
"""

# What the project's tuning.py makes of the test's tuning_ranges. The test sets only hyperparameters that tuning
# would not search (fixed), so that those it searches by default are searched.
TUNING_DUMP = """
import json, sys
from {package}._runtime.tuning import as_request, parameter_ranges
from {package}.model import HYPERPARAMETERS

narrowing, overrides = json.loads(sys.argv[1])
fixed = [name for name in overrides if name not in parameter_ranges(HYPERPARAMETERS)]
ranges = parameter_ranges(HYPERPARAMETERS, narrowing, fixed=fixed)
static = [h.name for h in HYPERPARAMETERS if h.name not in ranges]
print(json.dumps({{"fixed": fixed, "ranges": as_request(ranges), "static": static}}))
"""


@dataclass
class Call:
    """One request moto_server received, as the recorder wrote it."""

    service: str
    operation: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")


@dataclass
class Reference:
    """What the project's own package produces: its sample tree, a real training run's output, its schema."""

    tree: Path
    training_log: str
    schema: list[dict[str, Any]]
    seconds: float


@dataclass
class Run:
    combination: Combination
    project: Path
    answers: dict[str, str]
    image_uri: str
    overrides: dict[str, Any]
    expected_hyperparameters: dict[str, str]
    reference: Path  # Reference.tree
    training_log: str
    reference_seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)  # the notebook's parameters besides the basic ones
    hosting_mode: str = "realtime"
    expected_ranges: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # tuning runs: ParameterRanges
    expected_static: dict[str, str] = field(default_factory=dict)  # tuning runs: StaticHyperParameters
    best_artifact: str = ""  # tuning runs: the model artifact of the best training job the test made
    returncode: int = -1
    log: str = ""
    seconds: float = 0.0
    calls: list[Call] = field(default_factory=list)
    training_job: dict[str, Any] = field(default_factory=dict)  # DescribeTrainingJob, after the run
    left_over: dict[str, list[str]] = field(default_factory=dict)  # endpoints, configs, models still there
    objects: dict[str, bytes] = field(default_factory=dict)  # s3://bucket/key -> content
    network_attempts: str = ""
    output: str = ""  # every stream the notebook's cells printed

    def sagemaker(self, operation: str) -> list[Call]:
        return [call for call in self.calls if call.service == "sagemaker" and call.operation == operation]

    def only(self, operation: str) -> dict[str, Any]:
        found = self.sagemaker(operation)
        assert len(found) == 1, f"expected one {operation}, the emulator got {len(found)}"
        return found[0].json()

    def failure(self) -> str:
        return f"{self.combination.id}: papermill exited {self.returncode}\n{self.log[-8000:]}"

    def prefix(self) -> str:
        """s3://<bucket>/<prefix> of the run, from where the notebook uploaded the train channel."""
        return run_prefix(self.only("CreateTrainingJob")["InputDataConfig"])


# ---------------------------------------------------------------------------------------------------------
# The emulator


# moto checks endpoint instance types against a list that predates ml.g5; AWS accepts them.
MOTO_SERVER = """
import sys
from moto.sagemaker.models import FakeEndpointConfig
from moto.server import main

FakeEndpointConfig.validate_instance_type = lambda self, instance_type: None
sys.exit(main())
"""


class MotoServer:
    """moto_server on a free loopback port, recording every request to a file."""

    def __init__(self, workdir: Path) -> None:
        self.recording = workdir / "moto-recording.jsonl"
        self.log_path = workdir / "moto.log"
        env = {**os.environ, "MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(self.recording)}
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [str(NOTEBOOK_VENV / "bin" / "python"), "-c", MOTO_SERVER, "-H", "127.0.0.1", "-p", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"Running on (http://127\.0\.0\.1:\d+)", self.log_path.read_text(errors="replace"))
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not start:\n{self.log_path.read_text(errors='replace')}")

    def request(self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        with urllib.request.urlopen(
            urllib.request.Request(self.url + path, data=body, headers=headers or {}), timeout=30
        ) as response:
            return response.read()

    def s3_get(self, path: str) -> bytes:
        # moto refuses anonymous S3 reads; it checks that a request is signed, not the signature.
        return self.request(path, headers={"Authorization": signature("s3", "us-east-1")})

    def sagemaker(self, operation: str, region: str, **parameters: Any) -> dict[str, Any]:
        headers = {
            "Authorization": signature("sagemaker", region),
            "X-Amz-Target": f"SageMaker.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        }
        return json.loads(self.request("/", json.dumps(parameters).encode(), headers))

    def post_json(self, path: str, payload: dict[str, Any]) -> None:
        self.request(path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def calls(self) -> list[Call]:
        if not self.recording.exists():
            return []
        return [call for line in self.recording.read_text().splitlines() if (call := parse_recorded(line))]

    def s3_objects(self, bucket: str) -> dict[str, bytes]:
        listing = ElementTree.fromstring(self.s3_get(f"/{bucket}?list-type=2&max-keys=1000"))
        keys = [element.text or "" for element in listing.iter() if element.tag.endswith("}Key")]
        return {f"s3://{bucket}/{key}": self.s3_get(f"/{bucket}/{key}") for key in keys}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def signature(service: str, region: str) -> str:
    return f"AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/{service}/aws4_request"


def parse_recorded(line: str) -> Call | None:
    entry = json.loads(line)
    parts = urlsplit(entry["url"])
    if parts.path.startswith("/moto-api/"):
        return None  # the test's own set-up calls
    headers = {key.lower(): value for key, value in entry["headers"].items()}
    if EMULATOR_AGENT in headers.get("user-agent", ""):
        return None  # what notebook_kernel_startup.py writes, as SageMaker would (the job's log)
    body = entry.get("body") or ""
    raw = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
    scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", headers.get("authorization", ""))
    service = scope.group(1) if scope else "unsigned"
    query = parse_qs(parts.query, keep_blank_values=True)
    if target := headers.get("x-amz-target"):
        operation = target.split(".", 1)[1]
    elif service == "sagemaker" and parts.path.endswith("/invocations"):
        service, operation = "sagemaker-runtime", "InvokeEndpoint"
    elif service == "sagemaker" and parts.path.endswith("/async-invocations"):
        service, operation = "sagemaker-runtime", "InvokeEndpointAsync"
    elif service in {"sts", "iam"}:
        operation = parse_qs(raw.decode())["Action"][0]
    elif service == "s3":
        operation = s3_operation(entry["method"], parts.path, query)
        if operation == "PutObject" and "x-amz-copy-source" in headers:
            operation = "CopyObject"
    else:
        operation = f"{entry['method']} {parts.path}"
    return Call(service, operation, entry["method"], unquote(parts.path), query, headers, raw)


def s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    if path == "/":
        return "ListBuckets"
    has_key = "/" in path.strip("/")
    if not has_key:
        if method == "PUT":
            return "CreateBucket"
        if method == "HEAD":
            return "HeadBucket"
        if "location" in query:
            return "GetBucketLocation"
        return "ListObjectsV2" if method == "GET" else f"{method} bucket"
    return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject"}.get(method, f"{method} object")


# ---------------------------------------------------------------------------------------------------------
# What the project itself says


def in_project(project: Path, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    finished = subprocess.run(
        [sys.executable, *command],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, f"{' '.join(command)} failed in {project}:\n{finished.stdout}\n{finished.stderr}"
    return finished


def overrides_for(schema: list[dict[str, Any]]) -> dict[str, Any]:
    """A value other than the default for each hyperparameter whose declaration allows one, typed as a user
    would write it in the parameters cell."""
    values: dict[str, Any] = {}
    for spec in schema:
        default, low, high = spec["default"], spec["minimum"], spec["maximum"]
        if spec["choices"]:
            others = [choice for choice in spec["choices"] if choice != default]
            if others:
                values[spec["name"]] = others[-1]
        elif spec["type"] == "bool":
            values[spec["name"]] = not default
        elif spec["type"] in {"int", "float"}:
            step = 1 if spec["type"] == "int" else default / 2 or 0.5
            for candidate in (default + step, default - step):
                if (low is None or candidate >= low) and (high is None or candidate <= high):
                    values[spec["name"]] = candidate
                    break
    return values


def narrowing_for(schema: list[dict[str, Any]]) -> dict[str, Any]:
    """The test's own tuning_ranges: the first number declared with both bounds searched over part of them, and the
    first hyperparameter with more than two choices over two of them."""
    narrowing: dict[str, Any] = {}
    for spec in schema:
        low, high = spec["minimum"], spec["maximum"]
        if "number" not in narrowing and not spec["choices"] and None not in (low, high):
            if spec["type"] == "int" and high - low >= 3:
                narrowing["number"] = (spec["name"], [low + 1, low + 1 + (high - low) // 4])
            elif spec["type"] == "float" and high > 0:
                narrowing["number"] = (spec["name"], [max(low, high / 1000), high / 10])
        if "choices" not in narrowing and len(spec["choices"]) > 2:
            narrowing["choices"] = (spec["name"], spec["choices"][:2])
    return dict(narrowing.values())


def as_sagemaker_string(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------------------------------------------------
# One run


def kernel_environment(
    workdir: Path,
    project: Path,
    moto: MotoServer,
    fail_operation: str | None,
    job_log: list[str],
    emulated: dict[str, str],
) -> dict[str, str]:
    ipython = workdir / "ipython" / "profile_default" / "startup"
    ipython.mkdir(parents=True)
    (ipython / "00-emulator.py").write_text(STARTUP_FILE.read_text())
    telemetry = workdir / "sagemaker-config.yaml"
    telemetry.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    for folder in ("home", "tmp", "jupyter-data", "jupyter-config", "jupyter-runtime"):
        (workdir / folder).mkdir()
    inherited = ("AWS_", "SAGEMAKER_", "PYTHON", "JUPYTER", "IPYTHON", "VIRTUAL_ENV", "HTTP", "NO_PROXY")
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith(inherited)}
    env.update(
        {
            "HOME": str(workdir / "home"),  # no ~/.aws, no ~/.config/sagemaker
            "TMPDIR": str(workdir / "tmp"),
            "AWS_ENDPOINT_URL": moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAGEMAKER_VALIDATE_ROLE": "false",  # moto has no iam:SimulatePrincipalPolicy
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(telemetry),
            "PYTHONPATH": str(project / "src"),
            "IPYTHONDIR": str(workdir / "ipython"),
            "JUPYTER_DATA_DIR": str(workdir / "jupyter-data"),
            "JUPYTER_CONFIG_DIR": str(workdir / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(workdir / "jupyter-runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "BYOC_TEST_NETWORK_LOG": str(workdir / "network-attempts.log"),
            "BYOC_TEST_FALLBACK_PATH": sysconfig.get_paths()["purelib"],
            "BYOC_TEST_JOB_LOG": json.dumps(job_log),
        }
    )
    if fail_operation:
        env["BYOC_TEST_FAIL_OPERATION"] = fail_operation
    return {**env, **emulated}


def package_source(project: Path) -> str:
    """A digest of the rendered package's code: combinations with the same code share one Reference."""
    digest = hashlib.sha256()
    for path in sorted((project / "src").rglob("*.py")):
        digest.update(path.relative_to(project).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def launch_settings(framework: str) -> dict[str, object]:
    return SINGLE_HOST if framework in SINGLE_HOST_FRAMEWORKS else MULTI_HOST


def make_reference(project: Path, workdir: Path) -> Reference:
    """The project's own sample tree and training run, split into the files the notebook uploads."""
    started = time.monotonic()
    answers = json.loads((project / ".cookiecutter.json").read_text())
    package = answers["package_name"]
    tree = workdir / "reference"
    settings = launch_settings(answers["framework"])
    sharded = settings["train_distribution"] == "ShardedByS3Key"
    train_files = str(settings["instance_count"]) if sharded else "1"
    in_project(project, "-m", package, "sample-data", str(tree), "--train-files", train_files)
    training = in_project(project, "-m", package, "train", env={"SAGEMAKER_BASE_DIR": str(tree)})
    schema = json.loads(in_project(project, "-c", SCHEMA_DUMP.format(package=package)).stdout)
    return Reference(tree, training.stdout + training.stderr, schema, time.monotonic() - started)


def prepare(
    combination: Combination, project: Path, reference: Reference, tuned: bool = False, hosting_mode: str = "realtime"
) -> Run:
    answers = json.loads((project / ".cookiecutter.json").read_text())
    overrides = overrides_for(reference.schema)
    parameters: dict[str, Any] = SPOT if combination.scope == "train-only" else WARM_POOL
    if hosting_mode != "realtime":
        parameters = {"HOSTING_MODE": hosting_mode, **(SERVERLESS if hosting_mode == "serverless" else {})}
    if combination in LOCAL_CODE:
        parameters = {**parameters, "use_local_code": True}
    tuning_expected: dict[str, Any] = {}
    if tuned:
        narrowing = narrowing_for(reference.schema)
        dump = TUNING_DUMP.format(package=answers["package_name"])
        tuning_expected = json.loads(in_project(project, "-c", dump, json.dumps([narrowing, overrides])).stdout)
        overrides = {name: overrides[name] for name in tuning_expected["fixed"]}
        parameters = {**TUNING_SETTINGS, "tuning_ranges": narrowing}
    expected = {
        spec["name"]: as_sagemaker_string(overrides.get(spec["name"], spec["default"])) for spec in reference.schema
    }
    region = answers["aws_region"]
    return Run(
        combination=combination,
        project=project,
        answers=answers,
        image_uri=f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{answers['ecr_repository']}:notebook-test",
        overrides=overrides,
        expected_hyperparameters=expected,
        reference=reference.tree,
        training_log=reference.training_log,
        reference_seconds=reference.seconds,
        parameters=parameters,
        expected_ranges=tuning_expected.get("ranges", {}),
        expected_static={name: expected[name] for name in tuning_expected.get("static", [])},
        hosting_mode=hosting_mode,
    )


def execute(run: Run, workdir: Path, fail_operation: str | None = None) -> Run:
    output = workdir / "launch.out.ipynb"
    moto = MotoServer(workdir)
    try:
        # The answers moto gives, in turn: a CSV and a JSON request, or, to a multi-model endpoint, two CSV ones.
        second = {"Body": json.dumps(JSON_ANSWER), "ContentType": "application/json"}
        if run.hosting_mode == "multi-model":
            second = {"Body": CSV_ANSWER, "ContentType": "text/csv"}
        region = run.answers["aws_region"]
        results = [{"Body": CSV_ANSWER, "ContentType": "text/csv"}, second]
        moto.post_json("/moto-api/static/sagemaker/endpoint-results", {"region": region, "results": results})
        async_answer = (
            {"is_failure": True, "data": ASYNC_ERROR_BODY} if fail_operation == ASYNC_ERROR else {"data": CSV_ANSWER}
        )
        if fail_operation == SHORT_ASYNC_ANSWER:
            async_answer = {"data": "".join(CSV_ANSWER.splitlines(keepends=True)[:-1])}
        moto.post_json(
            "/moto-api/static/sagemaker/async-endpoint-results", {"region": region, "results": [async_answer]}
        )
        if fail_operation in (ASYNC_ERROR, SHORT_ASYNC_ANSWER):
            fail_operation = None
        parameters = {
            "role_arn": ROLE_ARN,
            "bucket": BUCKET,
            "image_uri": run.image_uri,
            **launch_settings(run.answers["framework"]),
            "hyperparameters": run.overrides,
            **run.parameters,
        }
        if tuning(run):
            run.best_artifact = make_best_job(moto, run)
        set_up = len(moto.calls())  # the test's own requests so far, left out of those the notebook made
        started = time.monotonic()
        finished = subprocess.run(
            [
                str(NOTEBOOK_VENV / "bin" / "python"),
                "-m",
                "papermill",
                str(run.project / "notebooks" / "launch.ipynb"),
                str(output),
                "--cwd",
                str(run.project / "notebooks"),
                "--kernel",
                "python3",
                "--execution-timeout",
                "120",
                "--log-output",
                "--no-progress-bar",
                "--parameters_yaml",
                json.dumps(parameters),
            ],
            env=kernel_environment(workdir, run.project, moto, fail_operation, job_log(run), emulated(run, workdir)),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        run.seconds = time.monotonic() - started
        run.returncode = finished.returncode
        run.log = finished.stdout + finished.stderr
        run.calls = moto.calls()[set_up:]  # before the test's own queries below
        jobs = run.sagemaker("CreateTrainingJob")
        if jobs:
            name = jobs[0].json()["TrainingJobName"]
            run.training_job = moto.sagemaker("DescribeTrainingJob", region, TrainingJobName=name)
        run.left_over = {
            kind: [item[f"{kind}Name"] for item in moto.sagemaker(f"List{kind}s", region)[f"{kind}s"]]
            for kind in ("Endpoint", "EndpointConfig", "Model")
        }
        run.objects = moto.s3_objects(BUCKET)
    finally:
        moto.stop()
    attempts = workdir / "network-attempts.log"
    run.network_attempts = attempts.read_text() if attempts.exists() else ""
    if output.exists():
        notebook = json.loads(output.read_text())
        run.output = "\n".join(
            "".join(item.get("text", "")) for cell in notebook["cells"] for item in cell.get("outputs", [])
        )
    return run


def emulated(run: Run, workdir: Path) -> dict[str, str]:
    """What the emulator does besides moto for the run's hosting mode (notebook_kernel_startup.py)."""
    if run.hosting_mode == "batch":
        return {"BYOC_TEST_TRANSFORM_ANSWERS": json.dumps(CSV_ANSWER.splitlines())}
    if run.hosting_mode == "multi-model":
        return {"BYOC_TEST_MODEL_ARTIFACT": str(model_artifact(run, workdir))}
    return {}


def model_artifact(run: Run, workdir: Path) -> Path:
    """model.tar.gz of the project's own training run: what the emulator uploads as the training job's artifact."""
    artifact = workdir / "model.tar.gz"
    with tarfile.open(artifact, "w:gz") as packed:
        for path in sorted((run.reference / "model").rglob("*")):
            packed.add(path, arcname=path.relative_to(run.reference / "model").as_posix(), recursive=False)
    return artifact


def job_log(run: Run) -> list[str]:
    """What each host of the training job logs in the emulator: what the project's own training run printed."""
    lines = [line.rstrip() for line in run.training_log.splitlines() if line.strip()]
    assert len(lines) >= 2, f"training printed fewer than 2 lines:\n{run.training_log}"
    return lines


def tuning(run: Run) -> bool:
    return bool(run.parameters.get("tuning_jobs"))


def make_best_job(moto: MotoServer, run: Run) -> str:
    """The training job moto's tuning job names as its best without having made it; returns its model artifact.

    On AWS the tuning job starts its training jobs itself, named after it; moto makes none."""
    settings = launch_settings(run.answers["framework"])
    region = run.answers["aws_region"]
    moto.sagemaker(
        "CreateTrainingJob",
        region,
        TrainingJobName=BEST_JOB,
        AlgorithmSpecification={"TrainingImage": run.image_uri, "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        HyperParameters=run.expected_hyperparameters,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/tuning-test/output"},
        ResourceConfig={
            "InstanceType": run.answers["training_instance_type"],
            "InstanceCount": settings["instance_count"],
            "VolumeSizeInGB": 30,
        },
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    described = moto.sagemaker("DescribeTrainingJob", region, TrainingJobName=BEST_JOB)
    return described["ModelArtifacts"]["S3ModelArtifacts"]


# ---------------------------------------------------------------------------------------------------------
# Fixtures: every run starts at once, each test waits for its own


@pytest.fixture(scope="module")
def runs(request, bake_once, tmp_path_factory) -> Iterator[dict[str, Future[Run]]]:
    if not (NOTEBOOK_VENV / "bin" / "papermill").exists():
        pytest.fail(
            f"{NOTEBOOK_VENV} is missing: .ci/run creates it; by hand: python3 -m venv .venv-notebook && "
            ".venv-notebook/bin/python -m pip install -r tests/requirements-notebook.txt"
        )
    # Only the runs that the selected tests check (pytest -k picks a few).
    items = [item for item in request.session.items if item.module is sys.modules[__name__]]
    wanted = {item.callspec.params["run"].id for item in items if "run" in item.fixturenames}
    wanted_tuning = {item.callspec.params["tuning_run"].id for item in items if "tuning_run" in item.fixturenames}
    wanted_failure = any(item.originalname == "test_clean_up_runs_when_a_request_fails" for item in items)
    failing = next((c for c in SUPPORTED if c.scope == "train+serve"), None) if wanted_failure else None
    wanted_hosting = {item.callspec.params["hosting_run"] for item in items if "hosting_run" in item.fixturenames}
    wanted_hosting_failures = {
        item.callspec.params["hosting_failure"] for item in items if "hosting_failure" in item.fixturenames
    }
    wanted_check_failures = {
        item.callspec.params["check_failure"] for item in items if "check_failure" in item.fixturenames
    }
    hosted = {c.id for _, c in wanted_hosting} | {HOSTING_FAILURES[mode][0] for mode in wanted_hosting_failures}
    hosted |= {CHECK_FAILURES[mode][0] for mode in wanted_check_failures}
    projects = {}
    for combination in SUPPORTED:
        if combination.id in wanted | wanted_tuning | hosted or combination == failing:
            result = bake_once(**combination.answers())
            assert result.exit_code == 0, f"{combination.id} did not render: {result.exception}"
            projects[combination.id] = (combination, result.project_path)

    pool = ThreadPoolExecutor(max_workers=PARALLEL_RUNS)
    # Submitted before the runs that wait for them, so the pool never waits on work it has not started.
    references: dict[str, Future[Reference]] = {}
    for _, project in projects.values():
        key = package_source(project)
        if key not in references:
            references[key] = pool.submit(make_reference, project, tmp_path_factory.mktemp("reference"))

    def one(
        key: str,
        combination: Combination,
        project: Path,
        fail: str | None = None,
        tuned: bool = False,
        hosting_mode: str = "realtime",
    ) -> Run:
        run = prepare(combination, project, references[package_source(project)].result(), tuned, hosting_mode)
        return execute(run, tmp_path_factory.mktemp(f"notebook-{key}"), fail)

    futures = {key: pool.submit(one, key, *value) for key, value in projects.items() if key in wanted}
    for key in wanted_tuning:
        futures[f"tuning-{key}"] = pool.submit(one, f"tuning-{key}", *projects[key], tuned=True)
    if failing:
        futures["failed-request"] = pool.submit(
            one, "failed-request", *projects[failing.id], "sagemaker-runtime.InvokeEndpoint"
        )
    for mode, combination in sorted(wanted_hosting, key=lambda pair: (pair[0], pair[1].id)):
        key = hosting_key(mode, combination)
        futures[key] = pool.submit(one, key, *projects[combination.id], hosting_mode=mode)
    for mode in sorted(wanted_hosting_failures):
        combination_id, operation = HOSTING_FAILURES[mode]
        key = f"failed-{mode}"
        futures[key] = pool.submit(one, key, *projects[combination_id], operation, hosting_mode=mode)
    for mode in sorted(wanted_check_failures):
        combination_id, failure = CHECK_FAILURES[mode]
        key = f"check-failed-{mode}"
        futures[key] = pool.submit(one, key, *projects[combination_id], failure, hosting_mode=mode)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(params=SUPPORTED, ids=lambda c: c.id)
def run(request, runs) -> Run:
    return runs[request.param.id].result()


@pytest.fixture(params=TUNING, ids=lambda c: c.id)
def tuning_run(request, runs) -> Run:
    return runs[f"tuning-{request.param.id}"].result()


def hosting_key(mode: str, combination: Combination) -> str:
    return f"{mode}-{combination.id}"


@pytest.fixture(params=HOSTING_RUNS, ids=lambda pair: hosting_key(*pair))
def hosting_run(request, runs) -> Run:
    return runs[hosting_key(*request.param)].result()


@pytest.fixture(params=sorted(HOSTING_FAILURES))
def hosting_failure(request, runs) -> Run:
    return runs[f"failed-{request.param}"].result()


@pytest.fixture(params=sorted(CHECK_FAILURES))
def check_failure(request, runs) -> Run:
    return runs[f"check-failed-{request.param}"].result()


def serves(run: Run) -> bool:
    return run.combination.scope == "train+serve"


# ---------------------------------------------------------------------------------------------------------
# The runs


def test_notebook_runs_to_the_end(run):
    assert run.returncode == 0, run.failure()
    print(f"{run.combination.id}: notebook {run.seconds:.1f} s (the project's own run: {run.reference_seconds:.1f} s)")


def test_no_request_leaves_loopback(run):
    assert run.network_attempts == "", f"the kernel tried to reach other hosts:\n{run.network_attempts}"
    assert {call.headers.get("host", "").split(":")[0] for call in run.calls} == {"127.0.0.1"}


def test_training_job_request(run):
    job = run.only("CreateTrainingJob")
    assert job["AlgorithmSpecification"]["TrainingImage"] == run.image_uri
    assert job["RoleArn"] == ROLE_ARN
    settings = launch_settings(run.answers["framework"])
    assert job["ResourceConfig"]["InstanceCount"] == settings["instance_count"]
    assert job["ResourceConfig"]["InstanceType"] == run.answers["training_instance_type"]
    assert job["HyperParameters"] == run.expected_hyperparameters
    assert all(isinstance(value, str) for value in job["HyperParameters"].values())
    assert run.overrides, "the schema declares no hyperparameter the test can change"
    assert job["TrainingJobName"].startswith(f"{run.answers['project_slug']}-")
    assert job["OutputDataConfig"]["S3OutputPath"].startswith(f"s3://{BUCKET}/")
    assert_channels(run, job["InputDataConfig"])


def assert_channels(run: Run, input_data_config: list[dict[str, Any]]) -> None:
    """One CSV channel per folder of the sample tree, in the bucket; only train sharded, where the run shards."""
    channels = data_channels(input_data_config)
    assert set(channels) == {path.name for path in (run.reference / "input" / "data").iterdir()}
    for channel in channels.values():
        assert channel["ContentType"] == "text/csv"
        assert channel["DataSource"]["S3DataSource"]["S3Uri"].startswith(f"s3://{BUCKET}/")
    distributions = {
        name: channel["DataSource"]["S3DataSource"]["S3DataDistributionType"] for name, channel in channels.items()
    }
    train_distribution = launch_settings(run.answers["framework"])["train_distribution"]
    assert distributions == {"train": train_distribution, "validation": "FullyReplicated"}


def data_channels(input_data_config: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The job's channels by name, without those the SDK adds for source code."""
    return {c["ChannelName"]: c for c in input_data_config if c["ChannelName"] not in SDK_CHANNELS}


def run_prefix(input_data_config: list[dict[str, Any]]) -> str:
    """s3://<bucket>/<prefix> of the run, from where the notebook uploaded the train channel."""
    train = next(channel for channel in input_data_config if channel["ChannelName"] == "train")
    return train["DataSource"]["S3DataSource"]["S3Uri"].rsplit("/data/", 1)[0]


def test_spot_or_warm_pool_request(run):
    job = run.only("CreateTrainingJob")
    release = f"--training-job-name {job['TrainingJobName']} --resource-config KeepAlivePeriodInSeconds=0"
    if run.parameters.get("use_spot"):
        assert job["EnableManagedSpotTraining"] is True
        runtime = run.parameters["max_runtime_seconds"]
        assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": runtime, "MaxWaitTimeInSeconds": 2 * runtime}
        checkpoints = f"{run_prefix(job['InputDataConfig'])}/checkpoints"
        assert job["CheckpointConfig"] == {"S3Uri": checkpoints, "LocalPath": "/opt/ml/checkpoints"}
        assert "KeepAlivePeriodInSeconds" not in job["ResourceConfig"]
        assert "update_training_job" not in run.output, "a release call printed without a warm pool"
    else:
        assert job["ResourceConfig"]["KeepAlivePeriodInSeconds"] == run.parameters["keep_alive_seconds"]
        assert "EnableManagedSpotTraining" not in job
        assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
        assert "CheckpointConfig" not in job
        assert release in run.output, "the notebook did not print how to release the warm pool"
        calls = re.findall(r"update_training_job\(\*\*(\{.*\})\)", run.output)
        assert [ast.literal_eval(call) for call in calls] == [
            {"TrainingJobName": job["TrainingJobName"], "ResourceConfig": {"KeepAlivePeriodInSeconds": 0}}
        ]


def test_channels_hold_the_sample_data(run):
    job = run.only("CreateTrainingJob")
    for channel in data_channels(job["InputDataConfig"]).values():
        uploaded = channel_objects(run, channel)
        local = run.reference / "input" / "data" / channel["ChannelName"]
        expected = {path.relative_to(local).as_posix(): path.read_bytes() for path in local.rglob("*.csv")}
        assert uploaded == expected, f"channel {channel['ChannelName']}: S3 holds {sorted(uploaded)}"


def channel_objects(run: Run, channel: dict[str, Any]) -> dict[str, bytes]:
    """What the bucket holds under a channel's S3 prefix, by path inside the channel."""
    prefix = channel["DataSource"]["S3DataSource"]["S3Uri"].rstrip("/") + "/"
    return {uri[len(prefix) :]: body for uri, body in run.objects.items() if uri.startswith(prefix)}


def local_code(run: Run) -> bool:
    return bool(run.parameters.get("use_local_code"))


def test_training_job_runs_the_image_or_the_uploaded_code(run):
    job = run.only("CreateTrainingJob")
    algorithm = job["AlgorithmSpecification"]
    channels = {channel["ChannelName"]: channel for channel in job["InputDataConfig"]}
    if not local_code(run):
        assert SDK_CHANNELS.isdisjoint(channels), "the image's own code runs, yet the job got a code channel"
        assert "ContainerEntrypoint" not in algorithm and "ContainerArguments" not in algorithm
        return
    assert set(channels) >= SDK_CHANNELS, f"channels: {sorted(channels)}"
    # The SDK's start-up script runs instead of the image's entrypoint; the hyperparameters go as with the image.
    assert algorithm["ContainerEntrypoint"] == SDK_ENTRYPOINT
    assert algorithm["ContainerArguments"] == SDK_ARGUMENTS
    assert algorithm["TrainingImage"] == run.image_uri
    assert job["HyperParameters"] == run.expected_hyperparameters
    for name in SDK_CHANNELS:
        source = channels[name]["DataSource"]["S3DataSource"]
        assert source["S3DataType"] == "S3Prefix" and source["S3DataDistributionType"] == "FullyReplicated"
        assert source["S3Uri"].startswith(f"s3://{BUCKET}/")
    # The code channel holds the project's code exactly as the image holds it: the package, and for extend-prebuilt
    # images the toolkit's entry script and handlers beside it.
    package = package_name(run.project)
    kept = {package: run.project / "src" / package}
    if run.answers["base_image"] == "extend-prebuilt":
        kept[""] = run.project / "toolkit"
    expected = {
        f"{folder}/{path.relative_to(root).as_posix()}".lstrip("/"): path.read_bytes()
        for folder, root in kept.items()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert f"{package}/model.py" in expected and f"{package}/__main__.py" in expected
    assert channel_objects(run, channels["code"]) == expected
    # The start-up script changes into the code channel and runs the package's training there.
    extends = run.answers["base_image"] == "extend-prebuilt"
    command = "python train_entry.py" if extends else f"python -m {package} train"
    drivers = channel_objects(run, channels["sm_drivers"])
    assert json.loads(drivers["sourcecode.json"])["command"] == command
    script = drivers["sm_train.sh"].decode()
    assert "cd /opt/ml/input/data/code" in script and command in script, script
    assert "scripts/environment.py" in drivers
    # The SDK's warning that a command gets no hyperparameters as arguments does not apply: the package reads them.
    assert "SM_HPS" not in run.output, run.output[-3000:]


def test_training_cell_shows_status_changes_and_metrics(run):
    """The status and metric lines the training cell printed are what DescribeTrainingJob reported, in order."""
    job = run.training_job
    lines = re.findall(r"^ *\d+ s  (\S.*)$", run.output, flags=re.MULTILINE)
    transitions = [f"{t['Status']}: {t.get('StatusMessage', '')}" for t in job["SecondaryStatusTransitions"]]
    metrics = [f"{m['MetricName']} = {m['Value']:g}" for m in job["FinalMetricDataList"]]
    assert transitions and metrics, f"moto's job reports nothing to show: {job}"
    assert lines == [*transitions, *metrics, f"{job['TrainingJobName']}: Completed"], run.output[-3000:]


def test_training_cell_streams_the_job_log(run):
    """Every line each host logged is printed once, in order, though the log appears only after the job started and
    grows while it runs (notebook_kernel_startup.py: no log group on the first look, then two parts)."""
    hosts = run.training_job["ResourceConfig"]["InstanceCount"]
    looks = [call.json() for call in run.calls if call.service == "logs" and call.operation == "DescribeLogStreams"]
    assert len(looks) >= 3, f"the training cell looked at the job's log {len(looks)} times"
    for host in range(1, hosts + 1):
        expected = [line.replace("host=algo-1", f"host=algo-{host}") for line in job_log(run)]
        shown = [f"[algo-{host}] {line}" if hosts > 1 else line for line in expected]
        printed = [line for line in run.output.splitlines() if line in shown]
        assert printed == shown, run.output[-3000:]


def test_metric_definitions_match_what_training_prints(run):
    assert_metric_definitions(run, run.only("CreateTrainingJob")["AlgorithmSpecification"]["MetricDefinitions"])


def assert_metric_definitions(run: Run, definitions: list[dict[str, str]]) -> None:
    """Each `name=value` line training prints has its definition, which reads that value alone; the others (the
    progress lines') read numbers from lines training printed."""
    printed = dict(re.findall(r"^([\w:./-]+)=([0-9.eE+-]+)$", run.training_log, flags=re.MULTILINE))
    assert printed, f"training printed no metric lines:\n{run.training_log}"
    assert set(printed) <= {definition["Name"] for definition in definitions}
    for definition in definitions:
        matches = re.findall(definition["Regex"], run.training_log)
        if definition["Name"] in printed:
            assert [float(value) for value in matches] == [float(printed[definition["Name"]])], definition
        else:
            assert matches, f"{definition['Name']} reads nothing training printed:\n{run.training_log}"
            assert all(math.isfinite(float(value)) for value in matches), definition


def test_model_endpoint_and_invocations(run):
    if not serves(run):
        assert not [call for call in run.calls if "Endpoint" in call.operation or "Model" in call.operation]
        return
    model = assert_model(run)
    config = run.only("CreateEndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == model["ModelName"]
    assert variant["InstanceType"] == run.answers["inference_instance_type"]
    assert variant["InitialInstanceCount"] == 1
    endpoint = run.only("CreateEndpoint")
    assert endpoint["EndpointConfigName"] == config["EndpointConfigName"]
    assert_sample_requests(run, endpoint["EndpointName"])
    order = [call.operation for call in run.calls if call.service.startswith("sagemaker")]
    assert order.index("CreateTrainingJob") < order.index("CreateModel") < order.index("CreateEndpoint")
    assert order.index("CreateEndpoint") < order.index("InvokeEndpoint") < order.index("DeleteEndpoint")


def assert_sample_requests(run: Run, endpoint_name: str) -> None:
    """The sample CSV and JSON requests, each answered in its format, and the JSON answer printed."""
    invocations = [call for call in run.calls if call.operation == "InvokeEndpoint"]
    samples = run.reference / "sample-requests"
    path = f"/endpoints/{endpoint_name}/invocations"
    sent = [(call.path, call.headers["content-type"], call.headers["accept"], call.body) for call in invocations]
    assert sent == [
        (path, "text/csv", "text/csv", (samples / "payload.csv").read_bytes()),
        (path, "application/json", "application/json", (samples / "payload.json").read_bytes()),
    ]
    assert str(JSON_ANSWER) in run.output, "the notebook did not print the endpoint's JSON answer"


def serving_image(run: Run) -> str:
    if run.answers["base_image"] == "extend-prebuilt":
        # AWS's prebuilt inference image for the region serves, with the handlers from the artifact's code/.
        prebuilt = json.loads((run.project / "prebuilt-images.json").read_text())
        region = run.answers["aws_region"]
        account = prebuilt["inference_accounts"][region]
        return f"{account}.dkr.ecr.{region}.amazonaws.com/{prebuilt['inference_image']}"
    return run.image_uri


# The container's environment each mode adds: the project's own server reads SageMaker's variables; AWS's prebuilt
# image reads the timeout only (its toolkit has no SAGEMAKER_MAX_PAYLOAD_IN_MB).
MODE_ENVIRONMENT = {
    "from-scratch": {
        "async": {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "900", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"},
        "serverless": {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "4"},
    },
    "extend-prebuilt": {"async": {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "900"}},
}
PREBUILT_ENVIRONMENT = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}


def assert_model(run: Run, mode: str = "realtime") -> dict[str, Any]:
    """The one model, serving the training job's artifact with the serving image; returns the CreateModel request."""
    model = run.only("CreateModel")
    base_image = run.answers["base_image"]
    expected = {**(PREBUILT_ENVIRONMENT if base_image == "extend-prebuilt" else {})}
    expected.update(MODE_ENVIRONMENT[base_image].get(mode, {}))
    if mode != "realtime":
        assert model["PrimaryContainer"].get("Environment", {}) == expected
    elif base_image == "extend-prebuilt":
        assert model["PrimaryContainer"]["Environment"].items() >= expected.items()
    assert model["PrimaryContainer"]["Image"] == serving_image(run)
    assert model["PrimaryContainer"]["ModelDataUrl"] == run.training_job["ModelArtifacts"]["S3ModelArtifacts"]
    assert model["ExecutionRoleArn"] == ROLE_ARN
    return model


def assert_all_deleted(run: Run) -> None:
    created = {
        "Endpoint": run.only("CreateEndpoint")["EndpointName"],
        "EndpointConfig": run.only("CreateEndpointConfig")["EndpointConfigName"],
        "Model": run.only("CreateModel")["ModelName"],
    }
    for kind, name in created.items():
        deleted = [call.json()[f"{kind}Name"] for call in run.sagemaker(f"Delete{kind}")]
        assert deleted == [name], f"Delete{kind}: {deleted}, created {name}"
    assert run.left_over == {"Endpoint": [], "EndpointConfig": [], "Model": []}


def test_everything_deployed_is_deleted(run):
    if not serves(run):
        assert not run.sagemaker("CreateEndpoint")
        return
    assert_all_deleted(run)


def test_clean_up_runs_when_a_request_fails(runs):
    assert "failed-request" in runs, "no supported combination serves"
    run = runs["failed-request"].result()
    assert run.returncode != 0, "the injected failure did not fail the notebook"
    assert "failure injected by the notebook test" in run.log
    assert [call.operation for call in run.calls if call.operation == "InvokeEndpoint"] == []
    assert_all_deleted(run)


# ---------------------------------------------------------------------------------------------------------
# The other hosting modes, on the covering set


def notebook_hosting_modes(bake_once) -> list[str]:
    """HOSTING_MODES as the rendered notebook's set-up cell declares it."""
    combination = next(c for c in SUPPORTED if c.scope == "train+serve")
    project = bake_once(**combination.answers()).project_path
    cells = json.loads((project / "notebooks" / "launch.ipynb").read_text())["cells"]
    source = "".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    found = re.search(r"^HOSTING_MODES = (\(.*\))$", source, flags=re.MULTILINE)
    assert found, "the notebook declares no HOSTING_MODES"
    return list(ast.literal_eval(found.group(1)))


def test_hosting_cover_spans_every_mode_and_base_image(bake_once):
    modes = notebook_hosting_modes(bake_once)
    assert modes[0] == "realtime"  # the default, which every combination's run uses
    assert set(HOSTING_COVER) == set(HOSTING_FAILURES) == set(modes) - {"realtime"}
    frameworks = set()
    for mode, keys in HOSTING_COVER.items():
        assert set(keys) <= set(BY_ID), f"{mode}: {sorted(set(keys) - set(BY_ID))} are not supported combinations"
        combinations = [BY_ID[key] for key in keys]
        assert all(c.scope == "train+serve" for c in combinations), mode
        assert sorted(c.base_image for c in combinations) == sorted(BASE_IMAGES), mode
        if mode in {"serverless", "multi-model"}:
            assert all(c.processor == "cpu" for c in combinations), f"{mode} is CPU only"
        frameworks |= {c.framework for c in combinations}
    assert frameworks == set(FRAMEWORKS)
    for mode, (key, operation) in HOSTING_FAILURES.items():
        assert BY_ID[key].scope == "train+serve" and BY_ID[key].processor == "cpu", mode
        assert operation == ASYNC_ERROR or re.fullmatch(r"sagemaker(-runtime)?\.[A-Z]\w+", operation), operation


def test_hosting_notebook_runs_to_the_end(hosting_run):
    run = hosting_run
    assert run.returncode == 0, run.failure()
    assert run.network_attempts == "", f"the kernel tried to reach other hosts:\n{run.network_attempts}"
    print(f"{run.hosting_mode} {run.combination.id}: notebook {run.seconds:.1f} s")


def validation_rows(run: Run) -> int:
    """Rows of the sample validation channel (each CSV file has a header)."""
    files = sorted((run.reference / "input" / "data" / "validation").rglob("*.csv"))
    return sum(len([line for line in path.read_text().splitlines() if line.strip()]) - 1 for path in files)


def assert_batch_requests(run: Run) -> None:
    model = assert_model(run)
    assert not run.sagemaker("CreateEndpointConfig") and not run.sagemaker("CreateEndpoint")
    prefix = run.prefix()
    records_uri = f"{prefix}/batch/input/payload.csv"
    job = run.only("CreateTransformJob")
    assert job["ModelName"] == model["ModelName"] == job["TransformJobName"]
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": records_uri}},
        "ContentType": "text/csv",
        "SplitType": "Line",
    }
    assert job["TransformOutput"] == {
        "S3OutputPath": f"{prefix}/batch/output",
        "AssembleWith": "Line",
        "Accept": "text/csv",
    }
    assert job["TransformResources"] == {"InstanceType": run.answers["inference_instance_type"], "InstanceCount": 1}
    assert job["BatchStrategy"] == "MultiRecord"
    # The input: every validation row, features only, in the format of the sample requests (their first rows).
    records = run.objects[records_uri].decode().splitlines()
    assert len(records) == validation_rows(run)
    assert records[:5] == (run.reference / "sample-requests" / "payload.csv").read_text().splitlines()
    answers = run.objects[f"{prefix}/batch/output/payload.csv.out"].decode().splitlines()
    assert len(answers) == len(records)  # the emulator's, one a record; the notebook checks and prints the count
    assert f"{len(records)} records -> {len(answers)} answers" in run.output
    described = {call.json()["TransformJobName"] for call in run.sagemaker("DescribeTransformJob")}
    assert described == {job["TransformJobName"]}  # waited for, and looked at again by the clean-up
    assert not [call for call in run.calls if call.service == "sagemaker-runtime"]


def assert_async_requests(run: Run) -> None:
    assert_model(run, "async")
    prefix = run.prefix()
    config = run.only("CreateEndpointConfig")
    output = f"{prefix}/async/output"
    assert config["AsyncInferenceConfig"]["OutputConfig"] == {
        "S3OutputPath": output,
        "S3FailurePath": f"{prefix}/async/failures",
    }
    (variant,) = config["ProductionVariants"]
    assert variant["InstanceType"] == run.answers["inference_instance_type"] and variant["InitialInstanceCount"] == 1
    endpoint = run.only("CreateEndpoint")
    (call,) = [call for call in run.calls if call.operation == "InvokeEndpointAsync"]
    assert call.path == f"/endpoints/{endpoint['EndpointName']}/async-invocations"
    assert call.headers["x-amzn-sagemaker-content-type"] == "text/csv"
    assert call.headers["x-amzn-sagemaker-accept"] == "text/csv"
    request = call.headers["x-amzn-sagemaker-inputlocation"]
    assert request == f"{prefix}/async/input/payload.csv"
    assert run.objects[request] == (run.reference / "sample-requests" / "payload.csv").read_bytes()
    assert not [call for call in run.calls if call.operation == "InvokeEndpoint"]
    # The answer, where the emulator wrote it as SageMaker does, fetched by the notebook and printed.
    answers = [uri for uri in run.objects if uri.startswith(f"{output}/")]
    assert len(answers) == 1 and answers[0].endswith(".out"), answers
    assert run.objects[answers[0]].decode() == CSV_ANSWER
    bucket, key = answers[0].removeprefix("s3://").split("/", 1)
    assert [c for c in run.calls if c.operation == "GetObject" and c.path == f"/{bucket}/{key}"]
    assert f"text/csv -> {CSV_ANSWER}" in run.output


def assert_serverless_requests(run: Run) -> None:
    assert_model(run, "serverless")
    config = run.only("CreateEndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {
        "MemorySizeInMB": SERVERLESS["serverless_memory_mb"],
        "MaxConcurrency": SERVERLESS["serverless_max_concurrency"],
    }
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    assert "AsyncInferenceConfig" not in config
    assert_sample_requests(run, run.only("CreateEndpoint")["EndpointName"])


def assert_multi_model_requests(run: Run) -> None:
    prefix = run.prefix()
    models = f"{prefix}/multi-model/"
    model = run.only("CreateModel")
    container = model["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    assert container["ModelDataUrl"] == models
    assert container["Image"] == serving_image(run)
    # The server switches to SageMaker's multi-model API (the project's, or AWS's toolkit); each artifact has its code/.
    expected_environment = {"SAGEMAKER_MULTI_MODEL": "true"}
    if run.answers["base_image"] == "extend-prebuilt":
        expected_environment["SAGEMAKER_PROGRAM"] = "inference.py"
    assert container["Environment"] == expected_environment
    assert model["ExecutionRoleArn"] == ROLE_ARN
    # Two copies of the training job's artifact (the project's own trained model, packed by the test), made in S3.
    artifact = run.training_job["ModelArtifacts"]["S3ModelArtifacts"]
    copies = [call for call in run.calls if call.operation == "CopyObject"]
    source = unquote(artifact.removeprefix("s3://"))
    assert [(call.path, unquote(call.headers["x-amz-copy-source"]).lstrip("/")) for call in copies] == [
        (f"/{(models + target).removeprefix('s3://')}", source) for target in MULTI_MODEL_TARGETS
    ]
    assert all(run.objects[models + target] == run.objects[artifact] for target in MULTI_MODEL_TARGETS)
    with tarfile.open(fileobj=io.BytesIO(run.objects[artifact])) as packed:
        assert packed.getnames(), "the artifact is empty"
    config = run.only("CreateEndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == model["ModelName"]
    assert variant["InstanceType"] == run.answers["inference_instance_type"] and variant["InitialInstanceCount"] == 1
    endpoint = run.only("CreateEndpoint")
    assert endpoint["EndpointConfigName"] == config["EndpointConfigName"]
    invocations = [call for call in run.calls if call.operation == "InvokeEndpoint"]
    payload = (run.reference / "sample-requests" / "payload.csv").read_bytes()
    path = f"/endpoints/{endpoint['EndpointName']}/invocations"
    assert [(call.path, call.headers.get("x-amzn-sagemaker-target-model"), call.body) for call in invocations] == [
        (path, target, payload) for target in MULTI_MODEL_TARGETS
    ]
    for target in MULTI_MODEL_TARGETS:
        assert f"{target}: text/csv -> {CSV_ANSWER}" in run.output


HOSTING_REQUESTS = {
    "batch": assert_batch_requests,
    "async": assert_async_requests,
    "serverless": assert_serverless_requests,
    "multi-model": assert_multi_model_requests,
}


def test_hosting_requests(hosting_run):
    assert hosting_run.returncode == 0, hosting_run.failure()
    HOSTING_REQUESTS[hosting_run.hosting_mode](hosting_run)
    order = [call.operation for call in hosting_run.calls if call.service.startswith("sagemaker")]
    assert order.index("CreateTrainingJob") < order.index("CreateModel") < order.index("DeleteModel")


def assert_hosting_deleted(run: Run) -> None:
    if run.hosting_mode != "batch":
        assert_all_deleted(run)
        return
    # A transform job has no delete; the notebook stops one that still runs (moto's are done at once).
    name = run.only("CreateModel")["ModelName"]
    assert [call.json()["ModelName"] for call in run.sagemaker("DeleteModel")] == [name]
    assert not run.sagemaker("StopTransformJob")
    assert run.left_over == {"Endpoint": [], "EndpointConfig": [], "Model": []}


def test_hosting_deletes_what_it_created(hosting_run):
    assert hosting_run.returncode == 0, hosting_run.failure()
    assert_hosting_deleted(hosting_run)


def test_hosting_clean_up_runs_when_a_request_fails(hosting_failure):
    run = hosting_failure
    assert run.returncode != 0, "the injected failure did not fail the notebook"
    failure = HOSTING_FAILURES[run.hosting_mode][1]
    if failure == ASYNC_ERROR:
        # Sent, and failed where SageMaker writes an async request's error; the notebook read it there and stopped.
        assert len([call for call in run.calls if call.operation == "InvokeEndpointAsync"]) == 1
        errors = [uri for uri in run.objects if uri.startswith(f"{run.prefix()}/async/failures/")]
        assert len(errors) == 1 and errors[0].endswith("-error.out"), errors
        assert run.objects[errors[0]].decode() == ASYNC_ERROR_BODY
        assert f"the asynchronous request failed: {ASYNC_ERROR_BODY}" in run.log
    else:
        assert "failure injected by the notebook test" in run.log
        operation = failure.split(".", 1)[1]
        assert not [call for call in run.calls if call.operation == operation], f"{operation} reached the emulator"
    assert_hosting_deleted(run)
    if run.hosting_mode == "batch":
        name = run.only("CreateModel")["ModelName"]
        assert [call.json()["TransformJobName"] for call in run.sagemaker("DescribeTransformJob")] == [name]
        assert f"no TransformJob {name} to stop" in run.output


def test_hosting_stops_on_a_wrong_answer_and_cleans_up(check_failure):
    run = check_failure
    assert run.returncode != 0, "the short answer did not fail the notebook"
    rows = len(CSV_ANSWER.splitlines())
    assert f"{rows} rows sent, but the answer has {rows - 1} lines" in run.log
    assert_hosting_deleted(run)


def test_iam_policy_allows_every_hosting_call(hosting_run):
    assert_policy_allows_every_call(hosting_run)


# ---------------------------------------------------------------------------------------------------------
# A tuning job instead of a training job


def test_tuning_notebook_runs_to_the_end(tuning_run):
    assert tuning_run.returncode == 0, tuning_run.failure()
    print(f"{tuning_run.combination.id} tuning: notebook {tuning_run.seconds:.1f} s")


def test_tuning_job_request(tuning_run):
    run = tuning_run
    assert not run.sagemaker("CreateTrainingJob"), "the tuning job starts the training jobs, not the notebook"
    request = run.only("CreateHyperParameterTuningJob")
    name = request["HyperParameterTuningJobName"]
    assert name.startswith(f"{run.answers['project_slug'][:16]}-") and len(name) <= 32
    config = request["HyperParameterTuningJobConfig"]
    # The default projects classify; training prints the objective's metric for the validation channel.
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert re.search(r"^validation:accuracy=", run.training_log, flags=re.MULTILINE)
    assert config["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": TUNING_SETTINGS["tuning_jobs"],
        "MaxParallelTrainingJobs": TUNING_SETTINGS["tuning_parallel_jobs"],
    }
    ranges = {kind: found for kind, found in config["ParameterRanges"].items() if found}
    assert ranges == {kind: found for kind, found in run.expected_ranges.items() if found}
    searched = {found["Name"]: found for kinds in ranges.values() for found in kinds}
    for name, narrowed in run.parameters["tuning_ranges"].items():
        if "Values" in searched[name]:
            assert searched[name]["Values"] == [as_sagemaker_string(value) for value in narrowed]
        else:
            assert [float(searched[name]["MinValue"]), float(searched[name]["MaxValue"])] == narrowed
    definition = request["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"] == run.expected_static
    assert set(searched) | set(definition["StaticHyperParameters"]) == set(run.expected_hyperparameters)
    assert definition["AlgorithmSpecification"]["TrainingImage"] == run.image_uri
    assert_metric_definitions(run, definition["AlgorithmSpecification"]["MetricDefinitions"])
    assert definition["RoleArn"] == ROLE_ARN
    settings = launch_settings(run.answers["framework"])
    assert definition["ResourceConfig"] == {
        "InstanceType": run.answers["training_instance_type"],
        "InstanceCount": settings["instance_count"],
        "VolumeSizeInGB": 30,
    }
    assert definition["OutputDataConfig"]["S3OutputPath"].startswith(f"s3://{BUCKET}/")
    assert definition["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert not definition.get("EnableManagedSpotTraining") and "CheckpointConfig" not in definition
    assert_channels(run, definition["InputDataConfig"])


def test_tuning_deploys_the_best_training_job_and_deletes_it(tuning_run):
    run = tuning_run
    described = [call.json()["TrainingJobName"] for call in run.sagemaker("DescribeTrainingJob")]
    assert BEST_JOB in described
    assert run.only("CreateModel")["PrimaryContainer"]["ModelDataUrl"] == run.best_artifact
    # moto's answer for the best job: its name, tuned hyperparameters and objective value, as the notebook prints them
    assert f"best of {TUNING_SETTINGS['tuning_jobs']}: {BEST_JOB}, Accuracy = 1" in run.output
    assert '"string": "TunedHyperParameters"' in run.output
    assert_all_deleted(run)


# ---------------------------------------------------------------------------------------------------------
# Launch options that cannot work are refused before any AWS call: no emulator needed

# boto3 and the SDK's Session as stand-ins that raise ReachedAws: a set-up cell that gets that far reached for AWS.
AWS_STAND_INS = """
import json, sys, types

class ReachedAws(Exception):
    pass

def reach(*args, **kwargs):
    raise ReachedAws("the set-up cell reached for AWS")

for name in ("boto3", "sagemaker", "sagemaker.core", "sagemaker.core.helper", "sagemaker.core.helper.session_helper"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["boto3"].Session = reach
sys.modules["sagemaker.core.helper.session_helper"].Session = reach
"""

# The parameters cell, then the set-up cell, of the rendered notebook, run as papermill would, with boto3 and the
# SDK's Session replaced by stand-ins that fail the case if the set-up gets as far as reaching for AWS. The bad
# tuning ranges come from the project's own schema. Prints each case's outcome as JSON.
REFUSAL_HARNESS = (
    AWS_STAND_INS
    + """
from {package}.model import HYPERPARAMETERS

numbers = [h for h in HYPERPARAMETERS if h.type in (int, float) and not h.choices]
bounded = next(h for h in numbers if h.minimum is not None and h.maximum is not None)
chosen = next(h for h in HYPERPARAMETERS if h.choices)
cases = {{
    "spot with a warm pool": ({{"use_spot": True, "keep_alive_seconds": 600}}, ["use_spot", "keep_alive_seconds"]),
    "max wait below the runtime": (
        {{"use_spot": True, "max_runtime_seconds": 3600, "max_wait_seconds": 1800}},
        ["max_wait_seconds", "max_runtime_seconds"],
    ),
    "a warm pool with tuning": ({{"tuning_jobs": 2, "keep_alive_seconds": 600}}, ["tuning_jobs", "keep_alive_seconds"]),
    "local code with tuning": ({{"use_local_code": True, "tuning_jobs": 2}}, ["use_local_code", "tuning_jobs"]),
    "an unknown hyperparameter": (
        {{"tuning_jobs": 2, "tuning_ranges": {{"no_such_hyperparameter": [1, 2]}}}},
        ["no_such_hyperparameter", *(h.name for h in HYPERPARAMETERS)],
    ),
    "a range outside the schema": (
        {{"tuning_jobs": 2, "tuning_ranges": {{bounded.name: [bounded.minimum, bounded.maximum + 1]}}}},
        [bounded.name, "outside", str(bounded.maximum)],
    ),
    "low not below high": (
        {{"tuning_jobs": 2, "tuning_ranges": {{bounded.name: [bounded.maximum, bounded.minimum]}}}},
        [bounded.name, "low >= high"],
    ),
    "an undeclared choice": (
        {{"tuning_jobs": 2, "tuning_ranges": {{chosen.name: ["not-declared"]}}}},
        [chosen.name, *map(str, chosen.choices)],
    ),
    "accepted": ({{"use_spot": True, "tuning_jobs": 2}}, []),
}}
notebook = json.load(open(sys.argv[1]))
cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
parameters = next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))
set_up = next("".join(c["source"]) for c in cells if "check_job_options(" in "".join(c["source"]))
outcomes = {{}}
for case, (options, mentions) in cases.items():
    namespace = {{}}
    exec(parameters, namespace)
    namespace.update({{"role_arn": "arn:aws:iam::123456789012:role/r", "image_uri": "image", **options}})
    try:
        exec(set_up, namespace)
        outcome = ("ran to the end", "")
    except Exception as error:
        outcome = (type(error).__name__, str(error))
    outcomes[case] = {{"error": outcome[0], "message": outcome[1], "mentions": mentions}}
print(json.dumps(outcomes))
"""
)
REFUSALS = [
    "spot with a warm pool",
    "max wait below the runtime",
    "a warm pool with tuning",
    "local code with tuning",
    "an unknown hyperparameter",
    "a range outside the schema",
    "low not below high",
    "an undeclared choice",
]


@pytest.fixture(scope="module")
def refusals(bake_once) -> dict[str, dict[str, Any]]:
    """Each case's outcome, from the first train+serve project (scikit-learn: the quickest to import)."""
    combination = next(c for c in SUPPORTED if c.scope == "train+serve")
    result = bake_once(**combination.answers())
    assert result.exit_code == 0, f"{combination.id} did not render: {result.exception}"
    project = result.project_path
    harness = REFUSAL_HARNESS.format(package=package_name(project))
    return json.loads(in_project(project, "-c", harness, str(project / "notebooks" / "launch.ipynb")).stdout)


@pytest.mark.parametrize("case", REFUSALS)
def test_launch_options_that_cannot_work_are_refused_before_any_aws_call(refusals, case):
    outcome = refusals[case]
    assert outcome["error"] in {"ValueError", "TuningError"}, outcome
    for mention in outcome["mentions"]:
        assert mention in outcome["message"], f"{case}: the refusal does not name {mention!r}: {outcome['message']}"


def test_launch_options_that_work_get_as_far_as_aws(refusals):
    assert refusals["accepted"]["error"] == "ReachedAws", refusals["accepted"]


# The same way for HOSTING_MODE and the serverless settings: {case: [parameters, what the refusal names]} in argv[2];
# an empty list of mentions marks settings that must get as far as AWS.
HOSTING_HARNESS = (
    AWS_STAND_INS
    + """
notebook = json.load(open(sys.argv[1]))
cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
parameters = next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))
set_up = next("".join(c["source"]) for c in cells if "check_job_options(" in "".join(c["source"]))
outcomes = {}
for case, (options, mentions) in json.loads(sys.argv[2]).items():
    namespace = {}
    exec(parameters, namespace)
    namespace.update({"role_arn": "arn:aws:iam::123456789012:role/r", "image_uri": "image", **options})
    try:
        exec(set_up, namespace)
        outcome = ("ran to the end", "")
    except Exception as error:
        outcome = (type(error).__name__, str(error))
    outcomes[case] = {"error": outcome[0], "message": outcome[1], "mentions": mentions}
print(json.dumps(outcomes))
"""
)
SERVERLESS_MODE = {"HOSTING_MODE": "serverless"}
HOSTING_CASES = {
    "cpu": {
        "an unknown hosting mode": (
            {"HOSTING_MODE": "streaming"},
            ["HOSTING_MODE", "'streaming'", "realtime", "batch", "async", "serverless", "multi-model"],
        ),
        "serverless memory not in whole GB": (
            {**SERVERLESS_MODE, "serverless_memory_mb": 1536},
            ["serverless_memory_mb", "1536", "1024", "6144"],
        ),
        "serverless memory above 6 GB": (
            {**SERVERLESS_MODE, "serverless_memory_mb": 7168},
            ["serverless_memory_mb", "7168", "6144"],
        ),
        "serverless memory as text": (
            {**SERVERLESS_MODE, "serverless_memory_mb": "2048"},
            ["serverless_memory_mb", "'2048'"],
        ),
        "serverless concurrency 0": (
            {**SERVERLESS_MODE, "serverless_max_concurrency": 0},
            ["serverless_max_concurrency", "1 to 200", "not 0"],
        ),
        "serverless concurrency above 200": (
            {**SERVERLESS_MODE, "serverless_max_concurrency": 201},
            ["serverless_max_concurrency", "1 to 200", "201"],
        ),
        "multi-model on a GPU instance": (
            {"HOSTING_MODE": "multi-model", "inference_instance_type": "ml.g5.xlarge"},
            ["multi-model", "ml.g5.xlarge", "CPU"],
        ),
        "serverless at its limits": (
            {**SERVERLESS_MODE, "serverless_memory_mb": 6144, "serverless_max_concurrency": 200},
            [],
        ),
        "serverless at its lower limits": (
            {**SERVERLESS_MODE, "serverless_memory_mb": 1024, "serverless_max_concurrency": 1},
            [],
        ),
        **{
            f"{mode} as it comes": ({"HOSTING_MODE": mode}, [])
            for mode in ("realtime", "batch", "async", "multi-model")
        },
    },
    "gpu": {
        "serverless in a GPU project": (SERVERLESS_MODE, ["serverless", "CPU only", "GPU"]),
        # The GPU image does not declare the multi-model capability, whatever the instance.
        "multi-model on the GPU default instance": (
            {"HOSTING_MODE": "multi-model"},
            ["multi-model", "GPU image", "realtime, batch or async"],
        ),
        "multi-model in a GPU project on a CPU instance": (
            {"HOSTING_MODE": "multi-model", "inference_instance_type": "ml.m5.large"},
            ["multi-model", "GPU image", "realtime, batch or async"],
        ),
        **{f"{mode} as it comes": ({"HOSTING_MODE": mode}, []) for mode in ("realtime", "batch", "async")},
    },
}
HOSTING_PROJECTS = {  # the quickest kernel of each kind
    "cpu": Combination("sklearn", "train+serve", "from-scratch", "cpu"),
    "gpu": Combination("pytorch", "train+serve", "from-scratch", "gpu"),
}


@pytest.fixture(scope="module")
def hosting_refusals(bake_once) -> dict[str, dict[str, dict[str, Any]]]:
    outcomes = {}
    for kind, combination in HOSTING_PROJECTS.items():
        result = bake_once(**combination.answers())
        assert result.exit_code == 0, f"{combination.id} did not render: {result.exception}"
        project = result.project_path
        notebook = str(project / "notebooks" / "launch.ipynb")
        finished = in_project(project, "-c", HOSTING_HARNESS, notebook, json.dumps(HOSTING_CASES[kind]))
        outcomes[kind] = json.loads(finished.stdout)
    return outcomes


@pytest.mark.parametrize(
    ("kind", "case"),
    [pytest.param(kind, case, id=f"{kind}: {case}") for kind, cases in HOSTING_CASES.items() for case in cases],
)
def test_hosting_settings_are_checked_before_any_aws_call(hosting_refusals, kind, case):
    outcome = hosting_refusals[kind][case]
    if not outcome["mentions"]:
        assert outcome["error"] == "ReachedAws", outcome
        return
    assert outcome["error"] == "ValueError", outcome
    for mention in outcome["mentions"]:
        assert mention in outcome["message"], f"{case}: the refusal does not name {mention!r}: {outcome['message']}"


# The serverless helper, run on its own with stand-ins for the deploy and invoke helpers: a request above serverless
# endpoints' 4 MB is refused before anything is created; one of exactly 4 MB is deployed. Prints JSON per size.
SERVERLESS_PAYLOAD_HARNESS = """
import json, sys, tempfile, types
from pathlib import Path

for name in ("sagemaker", "sagemaker.core", "sagemaker.core.inference_config"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["sagemaker.core.inference_config"].ServerlessInferenceConfig = lambda **settings: settings
notebook = json.load(open(sys.argv[1]))
cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
helper = next(source for source in cells if "def serve_serverless(" in source)
outcomes = {}
for size in json.loads(sys.argv[2]):
    created = []
    local_tree = Path(tempfile.mkdtemp())
    samples = local_tree / "sample-requests"
    samples.mkdir()
    (samples / "payload.csv").write_bytes(b"1" * size)
    (samples / "payload.json").write_text("{}")
    namespace = {
        "local_tree": local_tree,
        "serverless_memory_mb": 2048,
        "serverless_max_concurrency": 5,
        "deploy_model": lambda name, config, environment=None: created.append([config, environment]),
        "invoke": lambda endpoint: None,
    }
    exec(helper, namespace)
    try:
        namespace["serve_serverless"]("a-name")
        outcomes[size] = {"error": "", "message": "", "created": created}
    except Exception as error:
        outcomes[size] = {"error": type(error).__name__, "message": str(error), "created": created}
print(json.dumps(outcomes))
"""
SERVERLESS_PAYLOAD_LIMIT = 4 * 1024 * 1024


def test_serverless_refuses_requests_over_4_mb_before_creating_anything(bake_once, tmp_path):
    combination = HOSTING_PROJECTS["cpu"]
    project = bake_once(**combination.answers()).project_path
    sizes = [SERVERLESS_PAYLOAD_LIMIT, SERVERLESS_PAYLOAD_LIMIT + 1]
    finished = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVERLESS_PAYLOAD_HARNESS,
            str(project / "notebooks" / "launch.ipynb"),
            json.dumps(sizes),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    outcomes = json.loads(finished.stdout)
    at_limit, above = outcomes[str(sizes[0])], outcomes[str(sizes[1])]
    deployed = [{"memory_size_in_mb": 2048, "max_concurrency": 5}, {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "4"}]
    assert at_limit == {"error": "", "message": "", "created": [deployed]}
    assert above["error"] == "ValueError" and above["created"] == [], above
    assert "4 MB" in above["message"] and "payload.csv" in above["message"], above["message"]


# ---------------------------------------------------------------------------------------------------------
# The notebook's install instruction is the README's and the Makefile's

# The set-up cell, run as papermill would, in a kernel without the SDK: the error it raises is what a user reads.
MISSING_SDK_HARNESS = """
import json, sys, types

sys.modules["boto3"] = types.ModuleType("boto3")
sys.modules["sagemaker"] = None  # import sagemaker... raises ModuleNotFoundError, as where it is not installed
notebook = json.load(open(sys.argv[1]))
cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
set_up = next("".join(c["source"]) for c in cells if "check_job_options(" in "".join(c["source"]))
try:
    exec(set_up, {})
    print(json.dumps({"error": "", "message": ""}))
except Exception as error:
    print(json.dumps({"error": type(error).__name__, "message": str(error)}))
"""


def makefile_recipe(makefile: str, target: str) -> str:
    """The recipe lines of a Makefile target, joined; empty where the target is not defined."""
    found = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    return found.group(1) if found else ""


@pytest.mark.parametrize("scope", ["train+serve", "train-only"])
def test_install_instruction_is_the_readme_and_makefile_s(bake_once, scope):
    combination = next(c for c in SUPPORTED if c.scope == scope)
    result = bake_once(**combination.answers())
    assert result.exit_code == 0, f"{combination.id} did not render: {result.exception}"
    project = result.project_path
    notebook = project / "notebooks" / "launch.ipynb"
    introduction = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    raised = json.loads(in_project(project, "-c", MISSING_SDK_HARNESS, str(notebook)).stdout)
    assert raised["error"] == "ModuleNotFoundError", raised
    makefile = (project / "Makefile").read_text()
    readme = (project / "README.md").read_text()
    sdk_pins = set(re.findall(r"sagemaker==([\w.]+)", makefile_recipe(makefile, "launch-env")))
    assert len(sdk_pins) == 1, f"make launch-env installs sagemaker at {sdk_pins or 'no pin'}"
    for where, text in (("the first cell", introduction), ("the missing-SDK error", raised["message"])):
        assert "pip install" not in text, f"{where} still tells users to pip install: {text}"
        targets = re.findall(r"make ([\w-]+)", text)
        assert "launch-env" in targets, f"{where} does not name make launch-env: {text}"
        assert all(makefile_recipe(makefile, target) for target in targets), f"{where} names {targets}"
        assert set(re.findall(r"sagemaker==([\w.]+)", text)) == sdk_pins, f"{where}: {text}"
        assert ".venv-launch" in text and re.search(r"^LAUNCH_VENV \?= \.venv-launch$", makefile, re.M), where
    assert "`make launch-env`" in readme
    assert set(re.findall(r"sagemaker==([\w.]+)", readme)) <= sdk_pins
    # The emulator runs the notebook on the SDK the project pins.
    requirements = (TEMPLATE_DIR / "tests" / "requirements-notebook.txt").read_text()
    assert set(re.findall(r"^sagemaker==([\w.]+)$", requirements, flags=re.MULTILINE)) == sdk_pins


# ---------------------------------------------------------------------------------------------------------
# The IAM policy shipped with the project allows every call the notebook made


def required_permissions(call: Call, region: str, aws_names: dict[str, str]) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) pairs a request needs; empty for calls that need no permission.

    aws_names: the names AWS would give what moto names otherwise (a tuning job's best training job)."""
    sagemaker_arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}"
    if call.service == "sagemaker":
        body = {
            key: aws_names.get(value, value) if isinstance(value, str) else value for key, value in call.json().items()
        }
        kinds = {
            "TransformJobName": "transform-job",
            "HyperParameterTuningJobName": "hyper-parameter-tuning-job",
            "TrainingJobName": "training-job",
            "EndpointConfigName": "endpoint-config",
            "EndpointName": "endpoint",
            "ModelName": "model",
        }
        name_key = next(key for key in kinds if key in body and call.operation.endswith(key[: -len("Name")]))
        needed = [(f"sagemaker:{call.operation}", f"{sagemaker_arn}:{kinds[name_key]}/{body[name_key].lower()}")]
        if body.get("Tags"):
            needed.append(("sagemaker:AddTags", needed[0][1]))
        needed += [("iam:PassRole", body[key]) for key in ("RoleArn", "ExecutionRoleArn") if key in body]
        if "TrainingJobDefinition" in body:
            needed.append(("iam:PassRole", body["TrainingJobDefinition"]["RoleArn"]))
        return needed
    if call.service == "sagemaker-runtime":
        name = call.path.split("/")[2]
        return [(f"sagemaker:{call.operation}", f"{sagemaker_arn}:endpoint/{name.lower()}")]
    if call.service == "s3":
        if call.operation == "ListBuckets":
            return [("s3:ListAllMyBuckets", "*")]
        bucket, _, key = call.path.lstrip("/").partition("/")
        if call.operation == "CopyObject":
            source = unquote(call.headers["x-amz-copy-source"]).lstrip("/")
            return [("s3:GetObject", f"arn:aws:s3:::{source}"), ("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")]
        action = {
            "CreateBucket": "s3:CreateBucket",
            "HeadBucket": "s3:ListBucket",
            "ListObjectsV2": "s3:ListBucket",
            "GetBucketLocation": "s3:GetBucketLocation",
            "PutObject": "s3:PutObject",
            "GetObject": "s3:GetObject",
            "HeadObject": "s3:GetObject",
        }[call.operation]
        return [(action, f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else ""))]
    if call.service == "logs":
        group = call.json()["logGroupName"]
        return [(f"logs:{call.operation}", f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{group}:*")]
    if call.service == "sts" and call.operation == "GetCallerIdentity":
        return []  # allowed to everyone
    if call.service == "iam" and call.operation == "SimulatePrincipalPolicy":
        # With source code, the SDK asks whether the role may write to the default bucket; refused, or unanswered,
        # it stages the code there or in the output path's bucket, both the notebook's: no permission is needed.
        return []
    raise AssertionError(f"the test does not know which permission {call.service} {call.operation} needs")


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    def listed(value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value

    return any(
        statement["Effect"] == "Allow"
        and any(fnmatchcase(action, pattern) for pattern in listed(statement["Action"]))
        and any(fnmatchcase(resource, pattern) for pattern in listed(statement["Resource"]))
        for statement in policy["Statement"]
    )


def test_iam_policy_allows_every_call(run):
    assert_policy_allows_every_call(run)


def test_iam_policy_allows_every_tuning_call(tuning_run):
    assert_policy_allows_every_call(tuning_run)


def assert_policy_allows_every_call(run: Run) -> None:
    policy = json.loads((run.project / "iam-policy.json").read_text())
    aws_names = {}
    if tuning(run):
        # AWS names a tuning job's training jobs <tuning job>-<number>-<8 hex digits>.
        tuning_job = run.only("CreateHyperParameterTuningJob")["HyperParameterTuningJobName"]
        aws_names[BEST_JOB] = f"{tuning_job}-002-1a2b3c4d"
    missing = {
        pair
        for call in run.calls
        for pair in required_permissions(call, run.answers["aws_region"], aws_names)
        if not allowed(policy, *pair)
    }
    assert not missing, f"iam-policy.json does not allow: {sorted(missing)}"
