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
SERVING_ONLY = {
    "custom_attributes.py",
    "http_connection.py",
    "inference.py",
    "npy.py",
    "payloads.py",
    "server.py",
    "server_settings.py",
    "__main__.py",
}


# The serving tests and what they exercise: the whole package (serving runs the model through it) and the tests'
# helpers. A train+serve project whose copies of all of them are byte-identical to the first train+serve
# combination's of its framework (the package is the same for both base images; the toolkit's handlers and the
# image differ, and their tests run) would repeat that combination's servers, so it leaves these files out.
SERVING_TESTS = (
    "test_batch_transform.py",
    "test_inference.py",
    "test_multi_model.py",
    "test_server.py",
    "test_server_protocol.py",
)


def serving_code(project: Path) -> dict[str, bytes]:
    files = sorted((project / "src").rglob("*.py"))
    files += [path for path in (project / "tests").glob("*.py") if not is_test_file(f"tests/{path.name}")]
    files += [project / "tests" / name for name in SERVING_TESTS]
    return {path.relative_to(project).as_posix(): path.read_bytes() for path in files if path.exists()}


def multi_host_code(project: Path) -> dict[str, bytes]:
    package = project / "src" / package_name(project)
    files = [path for path in package.rglob("*.py") if path.name not in SERVING_ONLY]
    files += [project / "tests" / name for name in MULTI_HOST_TESTS]
    return {path.relative_to(project).as_posix(): path.read_bytes() for path in files if path.exists()}


# A GPU combination whose code (the package, toolkit/, the tests' shared helpers) is byte-identical to its CPU
# twin's (same framework, scope and base) differs from it only in other files (Dockerfile, lock, README,
# notebook, image names, scripts): running its whole suite would repeat the twin's runs. Only the test files that
# differ themselves or name one of the files that differ run again.
RECORDS = {".cookiecutter.json", ".cruft.json"}


def files_of(project: Path) -> dict[str, bytes]:
    return {
        path.relative_to(project).as_posix(): path.read_bytes()
        for path in sorted(project.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".pytest")
    }


def is_test_file(name: str) -> bool:
    return name.startswith("tests/test_") and name.endswith(".py")


def gpu_twin_tests(project: Path, twin: Path) -> list[str] | None:
    """The test files to run for a GPU project whose code is its CPU twin's; None when the code differs."""
    mine, theirs = files_of(project), files_of(twin)
    differing = {name for name in mine.keys() | theirs.keys() if mine.get(name) != theirs.get(name)} - RECORDS
    code = {name for name in differing if name.split("/", 1)[0] in ("src", "toolkit", "tests")}
    if any(not is_test_file(name) for name in code):
        return None
    names = {Path(name).name.encode() for name in differing}
    tests = sorted(name for name in mine if is_test_file(name))
    return [name for name in tests if name in differing or any(other in mine[name] for other in names)]


def test_project_suite_passes(request, project, bake_once):
    combination: Combination = request.node.callspec.params["project"]
    first = next(each for each in SUPPORTED if each.framework == combination.framework)
    first_serving = next(
        each for each in SUPPORTED if (each.framework, each.scope) == (combination.framework, "train+serve")
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    twin = Combination(combination.framework, combination.scope, combination.base_image, "cpu")
    twin_path = bake_once(**twin.answers()).project_path if combination.processor == "gpu" else None
    selected = gpu_twin_tests(project, twin_path) if twin_path else None
    first_path = bake_once(**first.answers()).project_path
    if selected is not None:
        # Its CPU twin runs everything else (see above); the lock's test names pyproject.toml, so one always runs.
        assert selected, f"{combination.id}: no test reads the files it differs from its CPU twin in"
        command += selected
    elif combination != first and multi_host_code(project) == multi_host_code(first_path):
        # Run in full in the first combination of this framework.
        command += ["-m", "not multi_host", *(f"--ignore=tests/{name}" for name in PER_FRAMEWORK_FILES)]
    if selected is None and combination.scope == "train+serve" and combination != first_serving:
        first_serving_path = bake_once(**first_serving.answers()).project_path
        if serving_code(project) == serving_code(first_serving_path):
            command += [f"--ignore=tests/{name}" for name in SERVING_TESTS]
    output = check(command, project, "the project's own pytest")
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
