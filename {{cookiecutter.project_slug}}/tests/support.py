"""Helpers the tests share: SageMaker trees on disk and the package run as a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from {{ cookiecutter.package_name }}.data import write_sample_tree
from {{ cookiecutter.package_name }}.environment import SageMakerEnvironment
from {{ cookiecutter.package_name }}.hyperparameters import as_strings, defaults
from {{ cookiecutter.package_name }}.model import HYPERPARAMETERS

PROJECT_DIR = Path(__file__).resolve().parents[1]
PACKAGE = "{{ cookiecutter.package_name }}"


def make_tree(base_dir: Path) -> Path:
    write_sample_tree(base_dir, as_strings(defaults(HYPERPARAMETERS)))
    return base_dir


def set_hyperparameters(tree: Path, **values: object) -> None:
    """Change some of a tree's hyperparameters, as strings (what SageMaker passes); the others stay."""
    path = tree / "input" / "config" / "hyperparameters.json"
    current = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**current, **{key: str(value) for key, value in values.items()}}), encoding="utf-8")


def environment_for(base_dir: Path, **variables: str) -> SageMakerEnvironment:
    return SageMakerEnvironment.from_environ({"SAGEMAKER_BASE_DIR": str(base_dir), **variables})


def run_cli(*args: str, base_dir: Path | None = None, **variables: str) -> subprocess.CompletedProcess[str]:
    """`python -m <package> ARGS` in a child process, as the container runs it."""
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *args],
        env=child_environment(base_dir, **variables),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def child_environment(base_dir: Path | None = None, **variables: str) -> dict[str, str]:
    environ = dict(os.environ, **variables)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR / "src"), environ.get("PYTHONPATH")]))
    if base_dir is not None:
        environ["SAGEMAKER_BASE_DIR"] = str(base_dir)
    return environ
