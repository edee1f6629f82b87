"""scripts/doctor.sh (`make doctor`) against the recording stand-ins of tests/fake_cli.py: every check's
line when all is well, and for each failure a user meets the problem line with its fix and the exit
status; the checks of common.sh that every script runs on its input before any AWS call.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .fake_cli import ACCOUNT, PASSWORD
from .support import PROJECT_DIR
from .test_scripts import REGION, argvs, run, workspace  # noqa: F401

# The slow tier, like the other script tests: each run starts the doctor and Python stand-ins.
pytestmark = pytest.mark.slow

IMAGE = "{{ cookiecutter.ecr_repository }}"
PACKAGE = "{{ cookiecutter.package_name }}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/SageMakerExecution"
# The SDK version `make launch-env` pins, which the doctor holds .venv-launch to.
SDK = re.search(r'"sagemaker==([^"]+)"', (PROJECT_DIR / "Makefile").read_text()).group(1)
{%- if cookiecutter.base_image == "extend-prebuilt" %}
PREBUILT = json.loads((PROJECT_DIR / "prebuilt-images.json").read_text())
BASE_REGISTRY = f"{PREBUILT['training_accounts'][REGION]}.dkr.ecr.{REGION}.amazonaws.com"
{%- endif %}


def python_standin(path: Path, site: Path) -> None:
    """An environment's bin/python: this interpreter, seeing only `site` besides the standard library."""
    path.parent.mkdir(parents=True)
    path.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" -S "$@"\n')
    path.chmod(0o755)


@pytest.fixture
def project(workspace: Path) -> Path:  # noqa: F811 (test_scripts' fixture, built on here)
    """The script tests' copy, plus the notebook, sleep (the doctor's timeouts) and both environments:
    .venv with the package, .venv-launch with the sagemaker SDK's metadata at the Makefile's pin."""
    project = workspace
    (project / "notebooks").mkdir()
    shutil.copy(PROJECT_DIR / "notebooks" / "launch.ipynb", project / "notebooks" / "launch.ipynb")
    sleep = project.parent / "tools" / "sleep"
    if not sleep.exists():
        sleep.symlink_to(shutil.which("sleep"))
    python_standin(project / ".venv" / "bin" / "python", PROJECT_DIR / "src")
    sdk = project.parent / "launch-site" / f"sagemaker-{SDK}.dist-info"
    sdk.mkdir(parents=True)
    (sdk / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sagemaker\nVersion: {SDK}\n")
    python_standin(project / ".venv-launch" / "bin" / "python", sdk.parent)
    # This suite may run on an older Python than the project asks for: the doctor's copy asks for this one.
    require_python(project, f"{sys.version_info[0]}.{sys.version_info[1]}")
    return project


def require_python(project: Path, version: str) -> None:
    script = project / "scripts" / "doctor.sh"
    text, found = re.subn(r'^MINIMUM_PYTHON="[0-9.]+"$', f'MINIMUM_PYTHON="{version}"', script.read_text(), flags=re.M)
    assert found == 1, "the doctor's minimum Python was not found"
    script.write_text(text)


def doctor(project: Path, **variables: str) -> tuple[subprocess.CompletedProcess[str], list[str], list[list[str]]]:
    finished, calls = run(project, ["scripts/doctor.sh"], ("aws", "docker", "uname"), **{"ROLE_ARN": ROLE, **variables})
    assert PASSWORD not in finished.stdout + finished.stderr
    return finished, finished.stdout.splitlines(), argvs(calls)


PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"
# Every check's line when all is well, in the doctor's order.
ALL_OK = {
    "python": f"ok       Python {PYTHON_VERSION}",
    "venv": f"ok       .venv has {PACKAGE}",
    "docker": "ok       Docker engine answers",
    "buildx": "ok       Docker Buildx supports --provenance=false",
    "architecture": "ok       host architecture x86_64 builds linux/amd64 natively",
    "credentials": f"ok       AWS credentials: account {ACCOUNT}",
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    "region": f"ok       region {REGION}: AWS publishes the prebuilt training image there",
    "ecr": f"ok       ECR repository {IMAGE} does not exist yet in {REGION}: 'make push' creates it",
    "login": f"ok       Docker logs in to {BASE_REGISTRY} (AWS's prebuilt images)",
{%- else %}
    "region": f"ok       region {REGION}",
    "ecr": f"ok       ECR repository {IMAGE} does not exist yet in {REGION}: 'make push' creates it",
{%- endif %}
    "role": f"ok       execution role {ROLE} exists and trusts sagemaker.amazonaws.com",
    "notebook": f"ok       .venv-launch has sagemaker {SDK}",
}
BLOCKED = "fix what blocks and run make doctor again."


def expected(summary: str, **lines: str) -> list[str]:
    assert set(lines) <= set(ALL_OK), set(lines) - set(ALL_OK)
    return [*{**ALL_OK, **lines}.values(), summary]


def test_make_doctor_when_all_is_well(project):
    command = ["make", "--no-print-directory", "doctor", f"ROLE_ARN={ROLE}"]
    finished, calls = run(project, command, ("aws", "docker", "uname"))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.stdout.splitlines() == expected(f"{len(ALL_OK)} ok, 0 warnings, 0 problems: nothing blocks.")
    role_lookup = ["aws", "iam", "get-role", "--role-name", "SageMakerExecution"]
    assert [*role_lookup, "--query", "Role.AssumeRolePolicyDocument", "--output", "json"] in argvs(calls)
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    login = next(call for call in calls if call["argv"][:2] == ["docker", "login"])
    assert login["stdin"] == PASSWORD, "the password must reach docker login on stdin"
{%- endif %}


# Failures that do not depend on each other share a run (each run starts some fifteen processes).
SCENARIOS = [
    pytest.param(
        {
            "FAKE_FAIL": "provenance,describe{% if cookiecutter.base_image == "extend-prebuilt" %},login{% endif %}",
            "FAKE_ARCH": "arm64",
            "FAKE_ROLE_TRUST": "ec2.amazonaws.com",
        },
        {
            "buildx": "problem  Docker Buildx has no --provenance option, and SageMaker refuses images with provenance"
            " attestations: update Buildx to 0.10 or later (Docker Desktop 4.17 or later)",
            "architecture": "warning  host architecture arm64: Docker builds linux/amd64 under emulation (slow), or"
            " 'make build-remote' builds on amd64 in CodeBuild",
            "ecr": f"problem  ECR repository {IMAGE} cannot be looked up (An error occurred (AccessDeniedException)"
            " when calling DescribeRepositories): the caller needs ecr:DescribeRepositories (iam-policy.json)",
{%- if cookiecutter.base_image == "extend-prebuilt" %}
            "login": f"problem  Docker cannot log in to {BASE_REGISTRY}, where the base image is: the caller needs"
            " ecr:GetAuthorizationToken (iam-policy.json)",
{%- endif %}
            "role": f"problem  execution role {ROLE} does not trust sagemaker.amazonaws.com: add a statement allowing"
            " sts:AssumeRole to the service principal sagemaker.amazonaws.com to its trust policy",
        },
        f"{len(ALL_OK) - {{ 5 if cookiecutter.base_image == "extend-prebuilt" else 4 }}} ok, 1 warning, {{ 4 if cookiecutter.base_image == "extend-prebuilt" else 3 }} problems: {BLOCKED}",
        SDK,
        id="no-provenance,arm64,ecr-refused,role-not-trusting-sagemaker",
    ),
    pytest.param(
        {"FAKE_FAIL": "engine,credentials", "ROLE_ARN": "arn:aws:iam::1234:role/SageMaker"},
        {
            "docker": "problem  Docker's engine does not answer (within 20s), and 'make build-remote' needs AWS"
            " credentials: start Docker (or install it), or configure AWS credentials",
            "credentials": "problem  AWS credentials: missing or expired (Unable to locate credentials. Configure"
            " them with aws configure.): run 'aws configure' or 'aws sso login'",
            "ecr": f"skip     ECR repository {IMAGE}: needs AWS credentials and a valid region",
{%- if cookiecutter.base_image == "extend-prebuilt" %}
            "login": "skip     login to AWS's prebuilt registry: needs AWS credentials and a valid region",
{%- endif %}
            "role": "problem  execution role (ROLE_ARN): Malformed IAM role ARN 'arn:aws:iam::1234:role/SageMaker':"
            " expected arn:aws:iam::<12-digit account>:role/<name> (arn:aws-cn or arn:aws-us-gov in those partitions).",
        },
        f"{len(ALL_OK) - {{ 5 if cookiecutter.base_image == "extend-prebuilt" else 4 }}} ok, 0 warnings, 3 problems: {BLOCKED}",
        SDK,
        id="docker-stopped,no-credentials,role-arn-shape",
    ),
    pytest.param(
        {"FAKE_HANG": "engine", "DOCTOR_TIMEOUT": "1", "FAKE_FAIL": "role", "FAKE_REPOSITORY_EXISTS": "1"},
        {
            "docker": "warning  Docker's engine does not answer (within 1s): 'make build-remote' builds in AWS"
            " CodeBuild instead, or start Docker for 'make build'",
            "ecr": f"ok       ECR repository {IMAGE} exists in {REGION}",
{%- if cookiecutter.base_image == "extend-prebuilt" %}
            "login": "skip     login to AWS's prebuilt registry: needs Docker's engine ('make build-remote' logs in"
            " inside CodeBuild)",
{%- endif %}
            "role": f"problem  execution role {ROLE} does not exist: create it with iam-policy.json's permissions"
            " (README, IAM)",
            "notebook": f"problem  .venv-launch has sagemaker 2.232.0, the notebook needs {SDK}: run 'make launch-env'",
        },
        f"{len(ALL_OK) - {{ 4 if cookiecutter.base_image == "extend-prebuilt" else 3 }}} ok, 1 warning, 2 problems: {BLOCKED}",
        "2.232.0",
        id="docker-hangs-build-remote,ecr-exists,role-missing,other-sdk",
    ),
    pytest.param(
        {"AWS_REGION": "Frankfurt", "ROLE_ARN": ""},
        {
            "credentials": "skip     AWS credentials: not checked with a malformed region (see the region line)",
            "region": "problem  region: Unknown AWS region 'Frankfurt': expected a region name such as us-east-1,"
            " eu-west-2, cn-north-1 or us-gov-west-1 (set AWS_REGION).",
            "ecr": f"skip     ECR repository {IMAGE}: needs AWS credentials and a valid region",
{%- if cookiecutter.base_image == "extend-prebuilt" %}
            "login": "skip     login to AWS's prebuilt registry: needs AWS credentials and a valid region",
{%- endif %}
            "role": "problem  execution role: none set: run 'make doctor ROLE_ARN=arn:aws:iam::<account>:role/<name>'"
            " with the role you pass the notebook as role_arn",
        },
        f"{len(ALL_OK) - {{ 5 if cookiecutter.base_image == "extend-prebuilt" else 4 }}} ok, 0 warnings, 2 problems: {BLOCKED}",
        SDK,
        id="malformed-region,role-unset",
    ),
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    pytest.param(
        {"AWS_REGION": "xx-nowhere-1"},
        {
            "region": "problem  region: AWS publishes no prebuilt training image in region xx-nowhere-1 (see"
            " prebuilt-images.json): choose a region listed there.",
            "ecr": f"skip     ECR repository {IMAGE}: needs AWS credentials and a valid region",
            "login": "skip     login to AWS's prebuilt registry: needs AWS credentials and a valid region",
        },
        f"{len(ALL_OK) - 3} ok, 0 warnings, 1 problem: {BLOCKED}",
        SDK,
        id="region-without-awss-images",
    ),
{%- endif %}
]


@pytest.mark.parametrize(("variables", "lines", "summary", "installed_sdk"), SCENARIOS)
def test_doctor_names_each_problem_and_its_fix(project, variables, lines, summary, installed_sdk):
    if installed_sdk != SDK:
        (project.parent / "launch-site" / f"sagemaker-{SDK}.dist-info" / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: sagemaker\nVersion: {installed_sdk}\n"
        )
    started = time.monotonic()
    finished, output, calls = doctor(project, **variables)
    assert output == expected(summary, **lines), finished.stderr
    assert finished.returncode == (0 if summary.endswith("nothing blocks.") else 1)
    assert time.monotonic() - started < 15, "a tool that hangs must not hang the doctor"
    if "AWS_REGION" in variables:
        # A region that is refused is refused before any call to AWS.
        assert [call for call in calls if call[:2] == ["aws", "ecr"]] == []


def test_doctor_without_docker_skips_buildx_and_finds_the_notebooks_role(project):
    """No docker CLI, a Python too old, no environments, the role from the notebook's parameters, and
    iam:GetRole refused."""
    require_python(project, "3.99")
    notebook_path = project / "notebooks" / "launch.ipynb"
    notebook = json.loads(notebook_path.read_text())
    cell = next(cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", []))
    cell["source"] = [line.replace('role_arn = ""', f'role_arn = "{ROLE}"') for line in cell["source"]]
    notebook_path.write_text(json.dumps(notebook))
    shutil.rmtree(project / ".venv")
    shutil.rmtree(project / ".venv-launch")
    finished, calls = run(project, ["scripts/doctor.sh"], ("aws", "uname"), FAKE_FAIL="iam-denied")
    assert finished.stdout.splitlines() == expected(
        f"{len(ALL_OK) - {{ 7 if cookiecutter.base_image == "extend-prebuilt" else 6 }}} ok, 2 warnings, 3 problems: {BLOCKED}",
        python=f"problem  Python {PYTHON_VERSION} (python3): this project needs 3.99 or later: install it and set"
        " PYTHON",
        venv="problem  no .venv: run 'make install'",
        docker="warning  no docker CLI: 'make build-remote' builds in AWS CodeBuild instead, or start Docker for"
        " 'make build'",
        buildx="skip     Docker Buildx: no docker CLI",
{%- if cookiecutter.base_image == "extend-prebuilt" %}
        login="skip     login to AWS's prebuilt registry: needs Docker's engine ('make build-remote' logs in inside"
        " CodeBuild)",
{%- endif %}
        role=f"warning  execution role {ROLE}: not checked, iam:GetRole was refused (An error occurred"
        " (AccessDenied) when calling the GetRole operation)",
        notebook="problem  no .venv-launch for the notebook: run 'make launch-env'",
    )
    assert finished.returncode == 1
    assert ["aws", "iam", "get-role"] in [call[:3] for call in argvs(calls)], "the notebook's role is the one checked"


# Each check of common.sh with values it must take and values it must refuse, with the refusal's words.
REGION_HINT = "expected a region name such as us-east-1, eu-west-2, cn-north-1 or us-gov-west-1 (set AWS_REGION)."
ROLE_HINT = "expected arn:aws:iam::<12-digit account>:role/<name> (arn:aws-cn or arn:aws-us-gov in those partitions)."
URI_HINT = (
    "expected <12-digit account>.dkr.ecr.<region>.amazonaws.com/<repository>[:<tag> or @sha256:<digest>]"
    " (amazonaws.com.cn in China regions)."
)
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DIGEST = "sha256:" + "0123456789abcdef" * 4
REFUSALS = {
    "check_region": "Unknown AWS region '{}': " + REGION_HINT,
    "check_role_arn": "Malformed IAM role ARN '{}': " + ROLE_HINT,
    "check_image_uri": "Malformed ECR image URI '{}': " + URI_HINT,
    "require_variable": "{} is not set.",
}
# (check, value, True: taken | False: refused with REFUSALS' message | the message it is refused with)
CHECKS = [
    ("check_region", REGION, True),
    ("check_region", "cn-north-1", True),
    ("check_region", "us-gov-west-1", True),
    ("check_region", "", False),
    ("check_region", "EU-WEST-1", False),
    ("check_region", "eu-west", False),
    ("check_region", "eu-west-1 ", False),
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    (
        "check_region",
        "xx-nowhere-1",
        "AWS publishes no prebuilt training image in region xx-nowhere-1 (see prebuilt-images.json): choose a"
        " region listed there.",
    ),
{%- else %}
    ("check_region", "xx-nowhere-1", True),
{%- endif %}
    ("check_role_arn", ROLE, True),
    ("check_role_arn", f"arn:aws-cn:iam::{ACCOUNT}:role/SageMaker", True),
    ("check_role_arn", f"arn:aws-us-gov:iam::{ACCOUNT}:role/a/b/SageMaker", True),
    ("check_role_arn", "", False),
    ("check_role_arn", "SageMakerRole", False),
    ("check_role_arn", f"arn:aws:iam::{ACCOUNT}:user/me", False),
    ("check_role_arn", "arn:aws:iam::12345678901:role/x", False),
    ("check_role_arn", f"arn:aws:iam::{ACCOUNT}:role/", False),
    ("check_role_arn", f"arn:aws:sts::{ACCOUNT}:assumed-role/SageMaker/session", False),
    ("check_image_uri", f"{REGISTRY}/{IMAGE}:v1", True),
    ("check_image_uri", f"{REGISTRY}/team/{IMAGE}", True),
    ("check_image_uri", f"{REGISTRY}/{IMAGE}@{DIGEST}", True),
    ("check_image_uri", f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/{IMAGE}:v1", True),
    ("check_image_uri", f"{IMAGE}:latest", False),
    ("check_image_uri", f"{REGISTRY}/{IMAGE}:", False),
    ("check_image_uri", f"{REGISTRY}/Upper:v1", False),
    ("check_image_uri", f"{REGISTRY}/{IMAGE}@sha256:abc", False),
    ("check_image_uri", f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com/{IMAGE}", False),
    ("check_image_uri", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com.cn/{IMAGE}", False),
    ("require_variable", "SET_VARIABLE", True),
    ("require_variable", "UNSET_VARIABLE", False),
    ("require_variable", "EMPTY_VARIABLE", False),
    ("require_variable", "no-name", "'no-name' is not a variable name."),
]

# One bash for all the cases: each runs in a subshell (the checks exit), its status and message printed.
CHECK_ALL = """
source scripts/common.sh
while IFS=$'\\t' read -r check value; do
  message="$( ("$check" "$value") 2>&1)" && status=0 || status=$?
  printf '%s\\t%s\\n' "$status" "${message//$'\\n'/ }"
done
"""


def test_the_doctor_asks_for_the_projects_python():
    assert 'MINIMUM_PYTHON="{{ cookiecutter.python_version }}"' in (PROJECT_DIR / "scripts" / "doctor.sh").read_text()


def test_checks_take_good_values_and_refuse_bad_ones_naming_them(project):
    cases = "".join(f"{check}\t{value}\n" for check, value, _ in CHECKS)
    finished = subprocess.run(
        ["bash", "-c", CHECK_ALL],
        cwd=project,
        input=cases,
        env={"PATH": str(project.parent / "tools"), "SET_VARIABLE": "x", "EMPTY_VARIABLE": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    results = [line.split("\t", 1) for line in finished.stdout.splitlines()]
    expected = [
        ["0", ""] if taken is True else ["1", "ERROR: " + (REFUSALS[check].format(value) if taken is False else taken)]
        for check, value, taken in CHECKS
    ]
    assert results == expected


def test_push_refuses_a_malformed_region_before_any_aws_call(project):
    finished, calls = run(project, ["scripts/push.sh"], FAKE_FAIL="", AWS_REGION="eu_west_1")
    assert finished.returncode == 1
    assert f"ERROR: Unknown AWS region 'eu_west_1': {REGION_HINT}" in finished.stderr
    assert [call for call in argvs(calls) if call[0] == "aws"] == []
