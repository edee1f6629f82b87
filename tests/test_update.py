"""The update path, for real: cruft renders a template kept in a git repository of its own.

A project is rendered at template commit A (by `cruft create`, or by plain `cookiecutter` from a
path or a git URL, when the post-gen hook records the commit), committed and edited; the template
then changes in commit B; `cruft update` must bring B's change and keep the user's edits. Offline:
every template source is a local path or a file:// URL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import TEMPLATE_DIR

BIN = Path(sys.executable).parent
PACKAGE = "iris_classifier"
USER_FILE = f"src/{PACKAGE}/model.py"
ADDED_FILE = f"src/{PACKAGE}/features.py"
TEMPLATE_PROJECT = "{{cookiecutter.project_slug}}"
TEMPLATE_SCRIPT = f"{TEMPLATE_PROJECT}/scripts/common.sh"
# What neither the template's copy nor a run of its tests needs (bench/results: the benchmark's output).
NOT_COPIED = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}

CONFLICT_MARKER = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)

Renderer = Callable[[Path, Path], list[str]]
RENDERERS: dict[str, Renderer] = {
    "cruft-create": lambda template, out: [
        str(BIN / "cruft"),
        "create",
        "--no-input",
        "--output-dir",
        str(out),
        str(template),
    ],
    "cookiecutter-path": lambda template, out: [str(BIN / "cookiecutter"), "--no-input", "-o", str(out), str(template)],
    "cookiecutter-git-url": lambda template, out: [
        str(BIN / "cookiecutter"),
        "--no-input",
        "-o",
        str(out),
        f"git+{template.as_uri()}",
    ],
}


@pytest.fixture(scope="module")
def environ(tmp_path_factory) -> dict[str, str]:
    """Git with a known identity and no user configuration; cookiecutter's clones and replays in a tmp folder."""
    folder = tmp_path_factory.mktemp("cookiecutter")
    config = folder / "config.yaml"
    config.write_text(f"cookiecutters_dir: {folder / 'clones'}\nreplay_dir: {folder / 'replay'}\n")
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "Template Tests",
        "GIT_AUTHOR_EMAIL": "tests@example.com",
        "GIT_COMMITTER_NAME": "Template Tests",
        "GIT_COMMITTER_EMAIL": "tests@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "COOKIECUTTER_CONFIG": str(config),
    }


def run(command: list[str], cwd: Path, environ: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    finished = subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert finished.returncode == 0, f"{' '.join(command)} failed:\n{finished.stdout}\n{finished.stderr}"
    return finished


def commit_all(repository: Path, message: str, environ: dict[str, str]) -> str:
    run(["git", "add", "-A"], repository, environ)
    run(["git", "commit", "-q", "-m", message], repository, environ)
    return run(["git", "rev-parse", "HEAD"], repository, environ).stdout.strip()


def init_repository(directory: Path, message: str, environ: dict[str, str]) -> str:
    run(["git", "init", "-q", "-b", "main"], directory, environ)
    return commit_all(directory, message, environ)


def not_copied(folder: str, names: list[str]) -> set[str]:
    skipped = {name for name in names if name in NOT_COPIED or name.startswith(".venv")}
    if Path(folder).resolve() == TEMPLATE_DIR / "bench":
        skipped.add("results")
    return skipped


@pytest.fixture(scope="module")
def template_at_a(tmp_path_factory, environ) -> Path:
    """The template's working tree, copied once into a git repository of its own and committed (commit A)."""
    repository = tmp_path_factory.mktemp("template-a") / "template"
    shutil.copytree(TEMPLATE_DIR, repository, ignore=not_copied)
    init_repository(repository, "A", environ)
    return repository


@pytest.fixture
def template(template_at_a, tmp_path, environ) -> tuple[Path, str]:
    """A clone of the template at commit A that this test may commit to: (its path, commit A)."""
    repository = tmp_path / "template"
    run(["git", "clone", "-q", str(template_at_a), str(repository)], tmp_path, environ)
    return repository, run(["git", "rev-parse", "HEAD"], repository, environ).stdout.strip()


def render(renderer: str, template: Path, out: Path, environ: dict[str, str]) -> Path:
    """Render the defaults into out, then make the project a git repository, as a user would."""
    out.mkdir(parents=True)
    run(RENDERERS[renderer](template, out), out, environ)
    project = out / "iris-classifier"
    init_repository(project, "Rendered from the template", environ)
    return project


def cruft_state(project: Path) -> dict:
    return json.loads((project / ".cruft.json").read_text(encoding="utf-8"))


def changed_paths(project: Path, environ: dict[str, str]) -> dict[str, str]:
    """git status --porcelain as {path: two-letter status}."""
    lines = run(["git", "status", "--porcelain"], project, environ).stdout.splitlines()
    return {line[3:]: line[:2] for line in lines}


def project_text_files(project: Path) -> dict[str, str]:
    return {
        path.relative_to(project).as_posix(): path.read_text(encoding="utf-8", errors="replace")
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def cruft(project: Path, environ: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "cruft"), *args], project, environ, check=False)


def change_template(template: Path, line: str, environ: dict[str, str]) -> str:
    """Commit a template-owned change: a line at the end of scripts/common.sh. Returns the commit."""
    with (template / TEMPLATE_SCRIPT).open("a", encoding="utf-8") as script:
        script.write(f"{line}\n")
    return commit_all(template, line, environ)


@pytest.mark.parametrize("renderer", RENDERERS)
def test_a_new_project_records_the_template_and_commit_and_is_up_to_date(renderer, template, tmp_path, environ):
    source, commit_a = template
    project = render(renderer, source, tmp_path / "out", environ)
    state = cruft_state(project)
    assert state["commit"] == commit_a
    assert state["context"]["cookiecutter"]["_commit"] == commit_a
    assert Path(state["template"].removeprefix("file://")) == source
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert {key: state["context"]["cookiecutter"][key] for key in answers} == answers
    checked = cruft(project, environ, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    diffed = cruft(project, environ, "diff", "--exit-code")
    assert diffed.returncode == 0, f"a fresh project differs from its template:\n{diffed.stdout}"


def test_plain_cookiecutter_records_the_same_cruft_json_as_cruft_create(template, tmp_path, environ):
    source, _ = template
    by_cruft = render("cruft-create", source, tmp_path / "cruft", environ)
    by_cookiecutter = render("cookiecutter-path", source, tmp_path / "cookiecutter", environ)
    assert cruft_state(by_cookiecutter) == cruft_state(by_cruft)


@pytest.mark.parametrize("renderer", RENDERERS)
def test_update_brings_the_templates_change_and_keeps_the_users_edits(renderer, template, tmp_path, environ):
    source, _ = template
    project = render(renderer, source, tmp_path / "out", environ)
    with (project / USER_FILE).open("a", encoding="utf-8") as model:
        model.write("# The user's own tuning notes.\n")
    (project / ADDED_FILE).write_text('"""A module the user added."""\n', encoding="utf-8")
    commit_all(project, "The user's edits", environ)
    users_files = {name: (project / name).read_text(encoding="utf-8") for name in (USER_FILE, ADDED_FILE)}

    # Commit B changes a template-owned file, and the template's model.py too: the project's is the user's.
    template_models = [
        path
        for path in (source / TEMPLATE_PROJECT).rglob("model.py")
        if path.parent.name == "{{cookiecutter.package_name}}"
    ]
    assert template_models, "no template file renders to model.py"
    for path in template_models:
        with path.open("a", encoding="utf-8") as model:
            model.write("# Template commit B's change to model.py.\n")
    commit_b = change_template(source, "# Template commit B's change.", environ)

    assert cruft(project, environ, "check").returncode != 0, "cruft check passes although commit B is newer"
    updated = cruft(project, environ, "update", "-y")
    assert updated.returncode == 0, updated.stdout + updated.stderr

    assert (project / "scripts/common.sh").read_text(encoding="utf-8").endswith("# Template commit B's change.\n")
    assert {name: (project / name).read_text(encoding="utf-8") for name in users_files} == users_files
    files = project_text_files(project)
    assert [name for name in files if name.endswith(".rej")] == []
    assert [name for name, text in files.items() if CONFLICT_MARKER.search(text)] == []
    changed = changed_paths(project, environ)
    assert set(changed) == {".cruft.json", "scripts/common.sh"}, changed
    assert not any("U" in status for status in changed.values()), changed
    assert cruft_state(project)["commit"] == commit_b
    assert cruft_state(project)["context"]["cookiecutter"]["_commit"] == commit_b

    commit_all(project, "Update from the template", environ)
    assert changed_paths(project, environ) == {}
    checked = cruft(project, environ, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_update_meeting_a_user_edit_leaves_conflict_markers_and_records_the_new_commit(template, tmp_path, environ):
    source, _ = template
    project = render("cruft-create", source, tmp_path / "out", environ)
    with (project / "scripts/common.sh").open("a", encoding="utf-8") as script:
        script.write("# The user's line.\n")
    commit_all(project, "The user's edit of a template file", environ)
    commit_b = change_template(source, "# The template's line.", environ)

    updated = cruft(project, environ, "update", "-y")
    assert updated.returncode == 0, "cruft reports success even when it leaves conflicts"
    script = (project / "scripts/common.sh").read_text(encoding="utf-8")
    assert "<<<<<<< ours\n# The user's line.\n=======\n# The template's line.\n>>>>>>> theirs\n" in script
    assert changed_paths(project, environ)["scripts/common.sh"] == "UU"
    assert [name for name in project_text_files(project) if name.endswith(".rej")] == []
    assert cruft_state(project)["commit"] == commit_b


def test_an_update_outside_git_writes_what_it_cannot_apply_to_a_rej_file(template, tmp_path, environ):
    source, _ = template
    project = render("cruft-create", source, tmp_path / "out", environ)
    shutil.rmtree(project / ".git")
    with (project / "scripts/common.sh").open("a", encoding="utf-8") as script:
        script.write("# The user's line.\n")
    commit_b = change_template(source, "# The template's line.", environ)

    updated = cruft(project, environ, "update", "-y")
    assert updated.returncode == 0
    assert (project / "scripts/common.sh").read_text(encoding="utf-8").endswith("# The user's line.\n")
    assert "+# The template's line." in (project / "scripts/common.sh.rej").read_text(encoding="utf-8")
    assert cruft_state(project)["commit"] == commit_b
