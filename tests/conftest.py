"""The option matrix, written out, and helpers to bake it.

Every combination of the four axes that change the generated code is listed; `is_supported`
is the one rule that splits them into those that must render and those the pre-gen hook must
refuse. The remaining prompts (Python version, licence, CI) are varied on the default
combination only, since they change single files.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
DEFAULTS = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))

FRAMEWORKS = DEFAULTS["framework"]
SCOPES = DEFAULTS["scope"]
BASE_IMAGES = DEFAULTS["base_image"]
PROCESSORS = DEFAULTS["processor"]


@dataclass(frozen=True)
class Combination:
    framework: str
    scope: str
    base_image: str
    processor: str

    @property
    def id(self) -> str:
        return f"{self.framework}-{self.scope}-{self.base_image}-{self.processor}"

    def answers(self) -> dict[str, str]:
        return {
            "framework": self.framework,
            "scope": self.scope,
            "base_image": self.base_image,
            "processor": self.processor,
        }


ALL_COMBINATIONS = [Combination(*values) for values in itertools.product(FRAMEWORKS, SCOPES, BASE_IMAGES, PROCESSORS)]


def refusal_reason(combination: Combination) -> str | None:
    """What the pre-gen hook must say for a combination it refuses; None if it must render."""
    if combination.framework == "sklearn" and combination.processor == "gpu":
        return "scikit-learn does not use GPUs"
    return None


def is_supported(combination: Combination) -> bool:
    return refusal_reason(combination) is None


SUPPORTED = [c for c in ALL_COMBINATIONS if is_supported(c)]
REFUSED = [c for c in ALL_COMBINATIONS if not is_supported(c)]


# The template's part of every project's package (`src/<package>/_runtime/`); model.py and data.py are the user's.
RUNTIME_MODULES = (
    "__init__.py",
    "channels.py",
    "contract.py",
    "environment.py",
    "framework.py",
    "hyperparameters.py",
    "messages.py",
    "metrics.py",
    "sample_tree.py",
    "tables.py",
    "training.py",
    "tuning.py",
)
FRAMEWORK_RUNTIME_MODULES = {
    "sklearn": (),
    "pytorch": ("distributed.py",),
    "tensorflow": ("batches.py", "checkpoints.py", "distributed.py", "network.py"),
}
SERVING_MODULES = (
    "custom_attributes.py",
    "http_connection.py",
    "inference.py",
    "multi_model.py",
    "npy.py",
    "payloads.py",
    "server.py",
    "server_settings.py",
)


def expected_files(answers: dict[str, str]) -> set[str]:
    """Every file a rendered project must hold, and nothing else."""
    package = answers.get("package_name", "iris_classifier")
    src = f"src/{package}"
    files = {
        ".cookiecutter.json",
        ".cruft.json",
        ".dockerignore",
        ".gitignore",
        "Dockerfile",
        "LICENSE",
        "buildspec.yml",
        "codebuild-policy.json",
        "Makefile",
        "README.md",
        "iam-policy.json",
        "pyproject.toml",
        "requirements.txt",
        "notebooks/launch.ipynb",
        "scripts/build.sh",
        "scripts/build_remote.sh",
        "scripts/check_lock.py",
        "scripts/common.sh",
        "scripts/doctor.sh",
        "scripts/pack_context.py",
        "scripts/push.sh",
        f"{src}/__init__.py",
        f"{src}/__main__.py",
        f"{src}/data.py",
        f"{src}/model.py",
        *(f"{src}/_runtime/{name}" for name in RUNTIME_MODULES),
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/support.py",
        "tests/cluster.py",
        "tests/test_cli.py",
        "tests/test_contract.py",
        "tests/test_channels.py",
        "tests/test_data.py",
        "tests/test_environment.py",
        "tests/test_hyperparameters.py",
        "tests/test_lock.py",
        "tests/fake_cli.py",
        "tests/test_build_remote.py",
        "tests/test_doctor.py",
        "tests/test_framework.py",
        "tests/test_scripts.py",
        "tests/test_train.py",
        "tests/test_train_code.py",
        "tests/test_tuning.py",
    }
    if answers.get("base_image", "from-scratch") == "extend-prebuilt":
        files |= {"prebuilt-images.json", "toolkit/train_entry.py", "tests/test_toolkit_training.py"}
        if answers.get("scope", "train+serve") == "train+serve":
            files |= {"toolkit/inference.py", "tests/test_toolkit_inference.py"}
    framework = answers.get("framework", "sklearn")
    files |= {f"{src}/_runtime/{name}" for name in FRAMEWORK_RUNTIME_MODULES[framework]}
    if framework in ("pytorch", "tensorflow"):
        files |= {"tests/test_stop_and_resume.py", "tests/test_multi_host.py"}
    if answers.get("scope", "train+serve") == "train+serve":
        files |= {f"{src}/_runtime/{name}" for name in SERVING_MODULES}
        files |= {
            "tests/batch_transform.py",
            "tests/test_batch_transform.py",
            "tests/test_inference.py",
            "tests/test_multi_model.py",
            "tests/test_server.py",
            "tests/test_server_protocol.py",
        }
    if answers.get("ci", "github-actions") == "github-actions":
        files |= {".github/workflows/ci.yml", ".github/workflows/release.yml", ".github/dependabot.yml"}
    return files


def package_name(project: Path) -> str:
    """The rendered project's Python package, as its .cookiecutter.json records the answers."""
    return json.loads((project / ".cookiecutter.json").read_text())["package_name"]


def locked_versions(project: Path) -> dict[str, set[str]]:
    """requirements.txt's versions of each package, by normalised name (one per Python or platform it forks on)."""
    text = (project / "requirements.txt").read_text()
    versions: dict[str, set[str]] = {}
    for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text, re.M):
        versions.setdefault(re.sub(r"[-_.]+", "-", name).lower(), set()).add(version)
    return versions


def project_files(project: Path) -> set[str]:
    # Caches a run of the project's own tools leaves (the tests share bakes), not rendered files.
    ignored = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and not ignored.intersection(path.relative_to(project).parts)
    }


# CI has two cores and runs projects' suites side by side with other work: one math thread per
# process avoids OpenMP threads spinning against each other (it changes no result).
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(command: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **SINGLE_THREADED}
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def bake_once(cookies_session):
    """Bake each distinct set of answers once per session; later asks reuse the project."""
    baked: dict[str, object] = {}

    def bake(**answers: str):
        key = json.dumps(answers, sort_keys=True)
        if key not in baked:
            baked[key] = cookies_session.bake(extra_context=answers)
        return baked[key]

    return bake


def pytest_terminal_summary(terminalreporter) -> None:
    """List what each swap of tests/test_make_it_yours.py touched, and every container image built and run."""
    from .image_report import image_summary
    from .test_make_it_yours import swap_summary

    for title, lines in (
        ("make it yours: files each swap touched, then the project's suite", swap_summary(terminalreporter.stats)),
        ("container images", image_summary(terminalreporter.stats)),
    ):
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)
