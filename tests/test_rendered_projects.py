"""Each supported combination passes its own linters and its own test suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import SUPPORTED, Combination, package_name, run

BIN = Path(sys.executable).parent


def check(command: list[str], project: Path, label: str) -> str:
    finished = run(command, cwd=project)
    assert finished.returncode == 0, (
        f"{label} failed in {project.name}:\n{finished.stdout[-6000:]}\n{finished.stderr[-3000:]}"
    )
    return finished.stdout


@pytest.fixture(scope="module", params=SUPPORTED, ids=lambda c: c.id)
def project(request, bake_once) -> Path:
    combination: Combination = request.param
    result = bake_once(**combination.answers())
    assert result.exit_code == 0, f"{combination.id} did not render: {result.exception}"
    return result.project_path


def test_ruff(project):
    check([str(BIN / "ruff"), "check", "."], project, "ruff check")
    check([str(BIN / "ruff"), "format", "--check", "."], project, "ruff format --check")


def test_shellcheck(project):
    scripts = sorted(str(path) for path in (project / "scripts").glob("*.sh"))
    check([str(BIN / "shellcheck"), "--external-sources", *scripts], project, "shellcheck")


def test_hadolint(project):
    check([str(BIN / "hadolint"), "Dockerfile"], project, "hadolint")


def test_notebook_is_valid(project):
    check(
        [sys.executable, "-c", "import nbformat; nbformat.validate(nbformat.read('notebooks/launch.ipynb', 4))"],
        project,
        "nbformat",
    )


# Tests whose code is the framework's alone: the package's non-serving modules and these files. Where every one
# of them is byte-identical to the copy in the first combination of the same framework, running them again would
# repeat the same runs (multi-host and stop-and-resume take a minute or more each); the tests of the command line,
# serving, the toolkit and the scripts differ by combination and always run.
PER_FRAMEWORK_FILES = (
    "test_channels.py",
    "test_contract.py",
    "test_data.py",
    "test_environment.py",
    "test_framework.py",
    "test_hyperparameters.py",
    "test_stop_and_resume.py",
    "test_train.py",
    "test_tuning.py",
)
MULTI_HOST_TESTS = ("cluster.py", "support.py", "conftest.py", "test_multi_host.py", *PER_FRAMEWORK_FILES)
SERVING_ONLY = {"inference.py", "payloads.py", "server.py", "__main__.py"}


def multi_host_code(project: Path) -> dict[str, bytes]:
    package = project / "src" / package_name(project)
    files = [path for path in package.rglob("*.py") if path.name not in SERVING_ONLY]
    files += [project / "tests" / name for name in MULTI_HOST_TESTS]
    return {path.relative_to(project).as_posix(): path.read_bytes() for path in files if path.exists()}


def test_project_suite_passes(request, project, bake_once):
    combination: Combination = request.node.callspec.params["project"]
    first = next(each for each in SUPPORTED if each.framework == combination.framework)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if combination != first and multi_host_code(project) == multi_host_code(bake_once(**first.answers()).project_path):
        # Run in full in the first combination of this framework.
        command += ["-m", "not multi_host", *(f"--ignore=tests/{name}" for name in PER_FRAMEWORK_FILES)]
    output = check(command, project, "the project's own pytest")
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
