"""Render every combination: supported ones give exactly their files, refused ones leave nothing."""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from .conftest import (
    BASE_IMAGES,
    FRAMEWORKS,
    REFUSED,
    SUPPORTED,
    Combination,
    expected_files,
    project_files,
    refusal_reason,
    run,
)

RUFF = Path(sys.executable).with_name("ruff")

LEFTOVER_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#|\bcookiecutter\.(?!json)")


def leftovers(tmp_path):
    """Whatever a refused bake left in the `cookies` fixture's output folders (which share tmp_path)."""
    return [path for path in (tmp_path / "cookies").rglob("*") if not path.name.startswith("bake")]


def assert_renders_cleanly(result, answers):
    assert result.exit_code == 0, f"render failed for {answers}: {result.exception}"
    project = result.project_path
    files = project_files(project)
    expected = expected_files(answers)
    assert files == expected, f"missing: {sorted(expected - files)}; unexpected: {sorted(files - expected)}"
    for name in files:
        text = (project / name).read_text(encoding="utf-8")
        if name == ".github/workflows/ci.yml":
            continue  # GitHub's own ${{ }} expressions are copied verbatim
        match = LEFTOVER_TEMPLATE_SYNTAX.search(text)
        assert match is None, f"{name} holds template syntax: {text[max(0, match.start() - 40) : match.end() + 40]!r}"
        if name.endswith(".py"):
            ast.parse(text, filename=name)
    tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    nbformat.validate(nbformat.read(project / "notebooks" / "launch.ipynb", as_version=4))
    assert all((project / "scripts" / name).stat().st_mode & 0o111 for name in ("build.sh", "push.sh"))
    return project


@pytest.mark.parametrize("combination", SUPPORTED, ids=lambda c: c.id)
def test_supported_combination_renders(bake_once, combination: Combination):
    answers = combination.answers()
    project = assert_renders_cleanly(bake_once(**answers), answers)
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert {key: recorded[key] for key in answers} == answers


@pytest.mark.parametrize("combination", REFUSED, ids=lambda c: c.id)
def test_refused_combination_says_why_and_leaves_nothing(cookies, tmp_path, combination: Combination, capfd):
    answers = combination.answers()
    if combination.processor == "gpu":
        answers |= {"training_instance_type": "ml.g5.xlarge", "inference_instance_type": "ml.g5.xlarge"}
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    assert refusal_reason(combination) in capfd.readouterr().err
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "answers",
    [
        {"python_version": "3.12"},
        {"ci": "none"},
        {"license": "Apache-2.0"},
        {"license": "BSD-3-Clause"},
        {"license": "Proprietary"},
        {"scope": "train-only", "ci": "none", "license": "Proprietary"},
    ],
    ids=lambda answers: "-".join(f"{k}={v}" for k, v in answers.items()),
)
def test_single_file_options_render(bake_once, answers):
    project = assert_renders_cleanly(bake_once(**answers), answers)
    if "python_version" in answers:
        assert f"FROM python:{answers['python_version']}." in (project / "Dockerfile").read_text()
        assert 'target-version = "py312"' in (project / "pyproject.toml").read_text()
    if "license" in answers:
        pyproject = tomllib.loads((project / "pyproject.toml").read_text())
        assert pyproject["project"]["license"] in (answers["license"], "LicenseRef-Proprietary")


def test_bad_answer_is_refused_with_its_field_and_leaves_nothing(cookies, tmp_path, capfd):
    result = cookies.bake(extra_context={"aws_region": "moon-base-1x"})
    assert result.exit_code != 0
    assert "aws_region 'moon-base-1x' is not an AWS region name" in capfd.readouterr().err
    assert leftovers(tmp_path) == []


EDGE_CASE_ANSWERS = {
    "project_name": "Ïris « v2 » 'q' \\ \"x\" $(rm -rf ~) `id`",
    "description": 'It\'s a "model"; with \\backslashes\\, ünïcödé — ✓ & <html>',
    "author_name": 'O\'Brien "Bob" \\ Ørsted',
    "author_email": "o'brien+ml@example.com",
}


def test_edge_case_answers_render_valid_files(bake_once):
    result = bake_once(**EDGE_CASE_ANSWERS)
    project = assert_renders_cleanly(result, {"package_name": "iris_v2_q_x_rm_rf_id"})
    assert project.name == "iris-v2-q-x-rm-rf-id"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == EDGE_CASE_ANSWERS["description"]
    assert pyproject["project"]["authors"] == [
        {"name": EDGE_CASE_ANSWERS["author_name"], "email": EDGE_CASE_ANSWERS["author_email"]}
    ]
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert recorded["project_name"] == EDGE_CASE_ANSWERS["project_name"]
    assert EDGE_CASE_ANSWERS["author_name"] in (project / "LICENSE").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "answers",
    [{"framework": framework, "base_image": base_image} for framework in FRAMEWORKS for base_image in BASE_IMAGES],
    ids=lambda answers: f"{answers['framework']}-{answers['base_image']}",
)
def test_longest_and_shortest_names_keep_the_code_formatted(cookies, answers):
    """Generated lines hold the names: the longest and shortest allowed must still pass ruff."""
    for slug, package in (("a" * 40, "b" * 30), ("ab", "c")):
        result = cookies.bake(extra_context={**answers, "project_slug": slug, "package_name": package})
        assert result.exit_code == 0, result.exception
        for command in (["check", "."], ["format", "--check", "."]):
            finished = run([str(RUFF), *command], cwd=result.project_path)
            assert finished.returncode == 0, f"ruff {command[0]} with {package!r}:\n{finished.stdout}"
