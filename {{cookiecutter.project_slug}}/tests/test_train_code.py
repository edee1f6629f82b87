"""`make train-code`: the launcher notebook with use_local_code, run by the launch environment's papermill.

A stand-in papermill in a stand-in launch environment records its command line; nothing reaches AWS.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
# In another region than the project's default: the job must run in the image's.
IMAGE_URI = "123456789012.dkr.ecr.ap-south-1.amazonaws.com/{{ cookiecutter.ecr_repository }}:v1"
ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-training"
WITHOUT_REGISTRY = "{{ cookiecutter.ecr_repository }}:v1"
# Writes its arguments, one a line, beside itself.
RECORDING_PAPERMILL = '#!/bin/sh\nprintf "%s\\n" "$@" > "$0.argv"\n'


@pytest.fixture
def launch_venv(tmp_path: Path) -> Path:
    papermill = tmp_path / "venv-launch" / "bin" / "papermill"
    papermill.parent.mkdir(parents=True)
    papermill.write_text(RECORDING_PAPERMILL)
    papermill.chmod(0o755)
    return papermill.parent.parent


def make_train_code(tmp_path: Path, launch_venv: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    settings = {"LAUNCH_VENV": str(launch_venv), "LOCAL_DIR": str(tmp_path / "local"), **variables}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT_DIR), "train-code"]
        + [f"{name}={value}" for name, value in settings.items()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def recorded(launch_venv: Path) -> list[str] | None:
    argv = launch_venv / "bin" / "papermill.argv"
    return argv.read_text().splitlines() if argv.exists() else None


def test_runs_the_notebook_with_local_code(tmp_path: Path, launch_venv: Path):
    result = make_train_code(tmp_path, launch_venv, IMAGE_URI=IMAGE_URI, ROLE_ARN=ROLE_ARN)
    assert result.returncode == 0, result.stderr
    parameters = ["-p", "image_uri", IMAGE_URI, "-p", "role_arn", ROLE_ARN, "-p", "region", "ap-south-1"]
    parameters += ["-p", "use_local_code", "True"]
{%- if cookiecutter.scope == "train+serve" %}
    parameters += ["-p", "deploy", "False"]  # a code change is tested by training; deploying stays a choice
{%- endif %}
    output = str(tmp_path / "local" / "train-code.ipynb")
    options = ["--cwd", "notebooks", "--log-output", "--no-progress-bar"]
    assert recorded(launch_venv) == ["notebooks/launch.ipynb", output, *options, *parameters]
    # Every parameter it sets is one the notebook's parameters cell declares.
    notebook = json.loads((PROJECT_DIR / "notebooks" / "launch.ipynb").read_text())
    cell = next(cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", []))
    declared = {line.split(" = ")[0] for line in "".join(cell["source"]).splitlines()}
    assert set(parameters[1::3]) <= declared


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"ROLE_ARN": ROLE_ARN}, ["IMAGE_URI", "make push"]),
        ({"IMAGE_URI": IMAGE_URI}, ["ROLE_ARN", "arn:aws:iam::<account>:role/<name>"]),
        ({"IMAGE_URI": WITHOUT_REGISTRY, "ROLE_ARN": ROLE_ARN}, [f"Malformed ECR image URI '{WITHOUT_REGISTRY}'"]),
        ({"IMAGE_URI": IMAGE_URI, "ROLE_ARN": "sagemaker-training"}, ["Malformed IAM role ARN 'sagemaker-training'"]),
    ],
    ids=["no image URI", "no role", "image URI without a registry", "role name, not an ARN"],
)
def test_refuses_a_missing_variable(tmp_path: Path, launch_venv: Path, variables: dict[str, str], named: list[str]):
    result = make_train_code(tmp_path, launch_venv, **variables)
    assert result.returncode != 0
    for mention in named:
        assert mention in result.stderr
    assert recorded(launch_venv) is None


def test_refuses_without_the_launch_environment(tmp_path: Path):
    result = make_train_code(tmp_path, tmp_path / "no-venv", IMAGE_URI=IMAGE_URI, ROLE_ARN=ROLE_ARN)
    assert result.returncode != 0
    assert "make launch-env" in result.stderr
