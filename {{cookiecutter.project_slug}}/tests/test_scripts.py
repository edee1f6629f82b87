"""scripts/build.sh, scripts/push.sh and the Makefile's docker-* targets, against stand-in `aws` and
`docker` executables that record every call (tests/fake_cli.py): the exact calls, a failing step
stops the script with its message, missing tools and credentials are named, no secret is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
{%- if cookiecutter.scope == "train+serve" and cookiecutter.base_image == "from-scratch" %}
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
{%- endif %}
from pathlib import Path
{%- if cookiecutter.scope == "train+serve" and cookiecutter.base_image == "from-scratch" %}
from typing import ClassVar
{%- endif %}

import pytest

from .fake_cli import ACCOUNT, PASSWORD
from .support import PROJECT_DIR
{%- if cookiecutter.scope == "train+serve" and cookiecutter.base_image == "from-scratch" %}, make_tree{% endif %}

# The slow tier: every test here starts the scripts, make and Python stand-ins for aws and docker.
pytestmark = pytest.mark.slow

IMAGE = "{{ cookiecutter.ecr_repository }}"
DEFAULT_REGION = "{{ cookiecutter.aws_region }}"
REGION = "eu-west-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
TAG = "v1"
{%- if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}
# PyTorch's CPU wheel index, which the lock's torch build needs (any address: the build is a stand-in).
CPU_INDEX = "https://cpu-wheels.example.invalid/simple"
{%- endif %}
# The only real programs the scripts may use; everything else on PATH is a stand-in.
TOOLS = ("bash", "dirname", "git", "make", "curl")


def make_workspace(tmp_path: Path) -> Path:
    """A copy of the scripts and the Makefile, outside any git repository."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT_DIR / "scripts", project / "scripts")
    shutil.copy(PROJECT_DIR / "Makefile", project / "Makefile")
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    shutil.copy(PROJECT_DIR / "prebuilt-images.json", project / "prebuilt-images.json")
{%- else %}
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy(PROJECT_DIR / name, project / name)
{%- endif %}
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to test the scripts"
        (tools / tool).symlink_to(found)
    (tools / "python3").symlink_to(sys.executable)
    return project


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


def install_fakes(directory: Path, *tools: str) -> None:
    directory.mkdir(exist_ok=True)
    fake = Path(__file__).with_name("fake_cli.py")
    for tool in tools:
        path = directory / tool
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" {tool} "$@"\n')
        path.chmod(0o755)


def run(
    project: Path, command: list[str], fakes: tuple[str, ...] = ("aws", "docker"), **variables: str
) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """Run a script or make target with only the stand-ins and TOOLS on PATH; returns the recorded calls."""
    fake_dir = project.parent / "fakes"
    shutil.rmtree(fake_dir, ignore_errors=True)
    install_fakes(fake_dir, *fakes)
    calls = project.parent / "calls.jsonl"
    calls.unlink(missing_ok=True)
    environ = {
        "PATH": f"{fake_dir}{os.pathsep}{project.parent / 'tools'}",
        "HOME": str(project.parent),
        "FAKE_CALLS": str(calls),
        "GIT_CEILING_DIRECTORIES": str(project.parent),
        "IMAGE_TAG": TAG,
        "AWS_REGION": REGION,
{%- if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}
        "PIP_EXTRA_INDEX_URL": CPU_INDEX,
{%- endif %}
        **variables,
    }
    environ = {name: value for name, value in environ.items() if value}
    finished = subprocess.run(
        command, cwd=project, env=environ, capture_output=True, text=True, timeout=120, check=False
    )
    recorded = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return finished, recorded


def argvs(calls: list[dict]) -> list[list[str]]:
    return [call["argv"] for call in calls]


STAGE = re.compile(r"==> \[(\d+)/(\d+)\] (.+) \((\d+:\d\d)\)")


def stages(stderr: str) -> list[str]:
    """The numbered stages a script printed, in order; each numbered one after the other, with its time."""
    found = [STAGE.fullmatch(line) for line in stderr.splitlines() if line.startswith("==> [")]
    assert all(found), f"a stage line is not `==> [n/total] what (m:ss)`:\n{stderr}"
    numbers = [(int(match[1]), int(match[2])) for match in found]
    if numbers:
        assert numbers == [(n, numbers[0][1]) for n in range(1, len(numbers) + 1)], stderr
    return [match[3] for match in found]
{%- if cookiecutter.base_image == "extend-prebuilt" %}


PREBUILT = json.loads((PROJECT_DIR / "prebuilt-images.json").read_text())
BASE_REGISTRY = f"{PREBUILT['training_accounts'][REGION]}.dkr.ecr.{REGION}.amazonaws.com"
BASE_IMAGE = f"{BASE_REGISTRY}/{PREBUILT['training_image']}"
{%- endif %}


BUILD_STAGES = [
{%- if cookiecutter.base_image == "from-scratch" %}
    "Checking requirements.txt against pyproject.toml",
{%- endif %}
    "Checking Docker and Buildx",
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    f"Logging Docker in to {BASE_REGISTRY} to pull {BASE_IMAGE}",
{%- endif %}
    f"Building {IMAGE}:{TAG} for linux/amd64",
]
PUSH_STAGES = [
    f"Looking up the AWS account (region {REGION})",
    f"Making sure ECR repository {IMAGE} exists",
    f"Logging Docker in to {REGISTRY}",
    f"Pushing {TAG} latest to {REGISTRY}/{IMAGE}",
]


BUILD_CALLS = [
    ["docker", "info"],
    ["docker", "buildx", "version"],
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    ["aws", "ecr", "get-login-password", "--region", REGION],
    ["docker", "login", "--username", "AWS", "--password-stdin", BASE_REGISTRY],
{%- endif %}
    [
        "docker",
        "buildx",
        "build",
        "--platform",
        "linux/amd64",
        "--provenance=false",
        "--load",
{%- if cookiecutter.base_image == "extend-prebuilt" %}
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
{%- elif cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}
        "--build-arg",
        "PIP_EXTRA_INDEX_URL",
{%- endif %}
        "--tag",
        f"{IMAGE}:{TAG}",
        "--tag",
        f"{IMAGE}:latest",
        ".",
    ],
]


def push_calls(
    region: str = REGION, registry: str = REGISTRY, create: bool = True, tags: tuple[str, ...] = (TAG, "latest")
) -> list[list[str]]:
    calls = [
        ["docker", "info"],
        ["docker", "image", "inspect", f"{IMAGE}:{TAG}"],
        ["aws", "sts", "get-caller-identity", "--region", region, "--query", "Account", "--output", "text"],
        ["aws", "ecr", "describe-repositories", "--repository-names", IMAGE, "--region", region],
    ]
    if create:
        calls.append(
            [
                "aws",
                "ecr",
                "create-repository",
                "--repository-name",
                IMAGE,
                "--region",
                region,
                "--image-scanning-configuration",
                "scanOnPush=true",
            ]
        )
    calls += [
        ["aws", "ecr", "get-login-password", "--region", region],
        ["docker", "login", "--username", "AWS", "--password-stdin", registry],
    ]
    for pushed in tags:
        calls += [["docker", "tag", f"{IMAGE}:{TAG}", f"{registry}/{IMAGE}:{pushed}"]]
        calls += [["docker", "push", f"{registry}/{IMAGE}:{pushed}"]]
    return calls


def test_scripts_are_strict():
    for script in ("build.sh", "push.sh", "build_remote.sh"):
        lines = (PROJECT_DIR / "scripts" / script).read_text().splitlines()
        assert "set -euo pipefail" in lines, f"{script} must stop on the first failing step"


def test_build_makes_exactly_the_sagemaker_build_call(workspace):
    finished, calls = run(workspace, ["scripts/build.sh"])
    assert finished.returncode == 0, finished.stderr
    assert argvs(calls) == BUILD_CALLS
    assert stages(finished.stderr) == BUILD_STAGES
    assert re.search(rf"^==> Built {IMAGE}, tagged {TAG} latest \(\d+:\d\d\)$", finished.stderr, re.MULTILINE)


def test_build_adds_extra_tags_between_the_primary_tag_and_latest(workspace):
    finished, calls = run(workspace, ["scripts/build.sh"], EXTRA_TAGS=f" 1a2b3c4\n{TAG} release-1.2  latest ")
    assert finished.returncode == 0, finished.stderr
    tags = [f"{IMAGE}:{tag}" for tag in (TAG, "1a2b3c4", "release-1.2", "latest")]
    assert argvs(calls)[-1] == [*BUILD_CALLS[-1][:-5], *(part for tag in tags for part in ("--tag", tag)), "."]


def test_build_tags_with_the_git_revision(workspace):
    git = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t"}
    git["GIT_COMMITTER_EMAIL"] = "t@example.com"
    for command in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "first"]):
        subprocess.run(command, cwd=workspace, env={**os.environ, **git}, check=True, capture_output=True)
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout.strip()
    _, calls = run(workspace, ["scripts/build.sh"], IMAGE_TAG="")
    assert f"{IMAGE}:{revision}" in argvs(calls)[-1]
    (workspace / "Makefile").write_text("changed\n")
    _, calls = run(workspace, ["scripts/build.sh"], IMAGE_TAG="")
    assert f"{IMAGE}:{revision}-dirty" in argvs(calls)[-1]


def test_build_outside_git_is_tagged_dev(workspace):
    _, calls = run(workspace, ["scripts/build.sh"], IMAGE_TAG="")
    assert f"{IMAGE}:dev" in argvs(calls)[-1]


@pytest.mark.parametrize(
    ("fail", "message", "calls_made"),
    [
        ("engine", "Docker is installed but its engine does not answer", 1),
        ("buildx", "Docker Buildx is missing", 2),
        ("build", "docker build failed", len(BUILD_CALLS)),
    ],
)
def test_build_stops_at_a_failing_step_with_its_message(workspace, fail, message, calls_made):
    finished, calls = run(workspace, ["scripts/build.sh"], FAKE_FAIL=fail)
    assert finished.returncode != 0
    assert f"ERROR: {message}" in finished.stderr
    assert argvs(calls) == BUILD_CALLS[:calls_made]
    assert "Built " not in finished.stderr
    reached = len(BUILD_STAGES) if fail == "build" else BUILD_STAGES.index("Checking Docker and Buildx") + 1
    assert stages(finished.stderr) == BUILD_STAGES[:reached]


def test_build_hands_a_pip_index_to_the_build_without_printing_it(workspace):
    index = "https://user:token@example.invalid/simple"
    finished, calls = run(workspace, ["scripts/build.sh"], PIP_EXTRA_INDEX_URL=index)
    assert finished.returncode == 0, finished.stderr
    build = argvs(calls)[-1]
    assert build[build.index("PIP_EXTRA_INDEX_URL") - 1] == "--build-arg", "the build must get the variable by name"
    assert index not in finished.stdout + finished.stderr + json.dumps(calls)
{%- if cookiecutter.base_image == "extend-prebuilt" %}


def test_build_logs_in_to_the_prebuilt_registry_without_printing_the_password(workspace):
    finished, calls = run(workspace, ["scripts/build.sh"])
    login = next(call for call in calls if call["argv"][1] == "login")
    assert login["stdin"] == PASSWORD
    assert PASSWORD not in finished.stdout + finished.stderr


def test_build_stops_when_the_prebuilt_registry_refuses_the_login(workspace):
    finished, calls = run(workspace, ["scripts/build.sh"], FAKE_FAIL="login")
    assert finished.returncode != 0
    assert f"ERROR: Docker login to {BASE_REGISTRY} failed" in finished.stderr
    assert argvs(calls)[-1][:2] == ["docker", "login"]


def test_build_refuses_a_region_without_a_prebuilt_image(workspace):
    finished, calls = run(workspace, ["scripts/build.sh"], AWS_REGION="xx-nowhere-1")
    assert finished.returncode != 0
    assert "ERROR: AWS publishes no prebuilt training image in region xx-nowhere-1" in finished.stderr
    assert ["docker", "buildx", "build"] not in [call[:3] for call in argvs(calls)]
{%- endif %}
{%- if cookiecutter.base_image == "from-scratch" %}


def test_build_refuses_a_stale_lock_before_calling_docker(workspace):
    pyproject = workspace / "pyproject.toml"
    unlocked = 'dependencies = [\n    "no-such-package==1.0",'
    pyproject.write_text(pyproject.read_text().replace("dependencies = [", unlocked, 1))
    finished, calls = run(workspace, ["scripts/build.sh"])
    assert finished.returncode != 0
    assert "no-such-package==1.0 is not in the lock" in finished.stderr
    assert "run 'make lock'" in finished.stderr
    assert calls == []
{%- if cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}


def test_build_without_pytorchs_cpu_index_says_so_before_calling_docker(workspace):
    finished, calls = run(workspace, ["scripts/build.sh"], PIP_EXTRA_INDEX_URL="")
    assert finished.returncode != 0
    assert "export PIP_EXTRA_INDEX_URL=<that index>" in finished.stderr
    assert calls == []
{%- endif %}
{%- endif %}


def test_build_without_docker_says_so(workspace):
    finished, calls = run(workspace, ["scripts/build.sh"], fakes=("aws",))
    assert finished.returncode != 0
    assert "ERROR: 'docker' was not found on PATH. Install Docker" in finished.stderr
    assert calls == []


def test_push_creates_the_repository_logs_in_and_pushes_both_tags(workspace):
    finished, calls = run(workspace, ["scripts/push.sh"])
    assert finished.returncode == 0, finished.stderr
    assert argvs(calls) == push_calls()
    login = next(call for call in calls if call["argv"][1] == "login")
    assert login["stdin"] == PASSWORD, "the password must reach docker login on stdin"
    assert finished.stdout.strip() == f"{REGISTRY}/{IMAGE}:{TAG}"
    assert PASSWORD not in finished.stdout + finished.stderr
    assert stages(finished.stderr) == PUSH_STAGES


def test_push_pushes_extra_tags_and_prints_the_primary_tags_uri_last(workspace):
    finished, calls = run(workspace, ["scripts/push.sh"], FAKE_REPOSITORY_EXISTS="1", EXTRA_TAGS="abc1234 v1.2.3")
    assert finished.returncode == 0, finished.stderr
    assert argvs(calls) == push_calls(create=False, tags=(TAG, "abc1234", "v1.2.3", "latest"))
    assert finished.stdout.splitlines()[-1] == f"{REGISTRY}/{IMAGE}:{TAG}"


@pytest.mark.parametrize(
    ("script", "variables", "message"),
    [
        ("build.sh", {"EXTRA_TAGS": "abc1234 v1/2"}, "EXTRA_TAGS holds 'v1/2', which is not a valid Docker tag"),
        ("push.sh", {"EXTRA_TAGS": "-rc1"}, "EXTRA_TAGS holds '-rc1', which is not a valid Docker tag"),
        ("push.sh", {"IMAGE_TAG": "two words"}, "IMAGE_TAG holds 'two words', which is not a valid Docker tag"),
        ("build.sh", {"IMAGE_NAME": "Team/Model"}, "IMAGE_NAME 'Team/Model' is not a valid ECR repository name"),
    ],
)
def test_scripts_refuse_a_bad_tag_or_name_before_any_call(workspace, script, variables, message):
    finished, calls = run(workspace, [f"scripts/{script}"], **variables)
    assert finished.returncode != 0
    assert f"ERROR: {message}" in finished.stderr
    assert calls == []


def test_push_reuses_an_existing_repository(workspace):
    finished, calls = run(workspace, ["scripts/push.sh"], FAKE_REPOSITORY_EXISTS="1")
    assert finished.returncode == 0, finished.stderr
    assert argvs(calls) == push_calls(create=False)


@pytest.mark.parametrize(
    ("variables", "region"),
    [
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),
        ({"AWS_REGION": "", "FAKE_CONFIGURED_REGION": "ap-south-1"}, "ap-south-1"),
        ({"AWS_REGION": ""}, DEFAULT_REGION),
        ({"AWS_REGION": "cn-north-1"}, "cn-north-1"),
    ],
)
def test_push_finds_the_region(workspace, variables, region):
    finished, calls = run(workspace, ["scripts/push.sh"], **variables)
    assert finished.returncode == 0, finished.stderr
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    expected = push_calls(region, f"{ACCOUNT}.dkr.ecr.{region}.{domain}")
    asked_cli = ["aws", "configure", "get", "region"] in argvs(calls)
    assert asked_cli == ("AWS_DEFAULT_REGION" not in variables and region != "cn-north-1")
    assert [call for call in argvs(calls) if call[1:3] != ["configure", "get"]] == expected


@pytest.mark.parametrize(
    ("fail", "message", "last_call"),
    [
        ("image", f"No local image {IMAGE}:{TAG}: run scripts/build.sh first.", ["docker", "image", "inspect"]),
        ("credentials", "AWS credentials are missing or expired", ["aws", "sts", "get-caller-identity"]),
        ("describe", f"Cannot look up ECR repository {IMAGE}: An error occurred (AccessDenied", ["aws", "ecr"]),
        ("create", f"Cannot create ECR repository {IMAGE}", ["aws", "ecr", "create-repository"]),
        ("login", f"Docker login to {REGISTRY} failed.", ["docker", "login"]),
        ("push", f"docker push of {TAG} failed.", ["docker", "push", f"{REGISTRY}/{IMAGE}:{TAG}"]),
    ],
)
def test_push_stops_at_a_failing_step_with_its_message(workspace, fail, message, last_call):
    finished, calls = run(workspace, ["scripts/push.sh"], FAKE_FAIL=fail)
    assert finished.returncode != 0
    assert f"ERROR: {message}" in finished.stderr
    assert argvs(calls)[-1][: len(last_call)] == last_call, "the script went on after the failing step"
    assert "Pushed in" not in finished.stderr
    assert PASSWORD not in finished.stdout + finished.stderr


@pytest.mark.parametrize(("present", "missing"), [(("docker",), "aws"), (("aws",), "docker")])
def test_push_without_a_tool_says_which(workspace, present, missing):
    finished, calls = run(workspace, ["scripts/push.sh"], fakes=present)
    assert finished.returncode != 0
    assert f"ERROR: '{missing}' was not found on PATH." in finished.stderr
    assert calls == []


def make(workspace: Path, target: str, **variables: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    # The Makefile's python is this interpreter, with the package from the project's src/.
    arguments = [f"BIN={Path(sys.executable).parent}", *(f"{name}={value}" for name, value in variables.items())]
    return run(workspace, ["make", "--no-print-directory", target, *arguments], PYTHONPATH=str(PROJECT_DIR / "src"))


def test_make_docker_train_builds_then_trains_on_the_local_tree(workspace):
    finished, calls = make(workspace, "docker-train")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    mounts = []
    for folder in ("input", "model", "output"):  # a training job's folders, not all of /opt/ml
        mounts += ["--volume", f"{workspace}/local/{folder}:/opt/ml/{folder}"]
    assert (workspace / "local" / "input" / "config" / "hyperparameters.json").exists()
    assert argvs(calls) == [
        *BUILD_CALLS,
        [
            *("docker", "run", "--rm", "--hostname", "algo-1"),
            *mounts,
            f"{IMAGE}:latest",
            "train",
        ],
    ]

{%- if cookiecutter.scope == "train+serve" and cookiecutter.base_image == "from-scratch" %}


def test_make_docker_serve_publishes_the_port_sagemaker_uses(workspace):
    finished, calls = make(workspace, "docker-serve", PORT="9090")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert argvs(calls)[-1] == [
        "docker",
        "run",
        "--rm",
        "--volume",
        f"{workspace}/local/model:/opt/ml/model",
        "--publish",
        "127.0.0.1:9090:8080",
        f"{IMAGE}:latest",
        "serve",
    ]


class Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"predictions": [0]}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_make_docker_predict_posts_the_sample_payload(workspace, endpoint):
    make_tree(workspace / "local")  # what docker-train left there, written in-process to save a child
    finished, calls = make(workspace, "docker-predict", PORT=str(endpoint))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    payload = (workspace / "local" / "sample-requests" / "payload.csv").read_bytes()
    assert Recorder.received[-1] == ("/invocations", "text/csv", payload)
    assert '{"predictions": [0]}' in finished.stdout
    assert calls == []
{%- endif %}
