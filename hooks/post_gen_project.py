"""Shape the rendered project to the answers: move the chosen variants in, drop the rest.

Variant folders (their names start with '_') hold one tree per option; the chosen tree is
laid over the project root and every variant folder is removed, so the project holds only
the files its answers use. A project rendered by plain cookiecutter also gets the `.cruft.json`
cruft would have written (template source, commit, answers), so `cruft update` works on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VARIANT_FOLDERS = ("_frameworks", "_scopes", "_base_images", "_combinations", "_licenses", "_fragments", "_locks")


def overlay(source: Path, target: Path) -> None:
    """Move every file under source to the same relative place under target."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.unlink(missing_ok=True)  # a more specific variant replaces a general one
            shutil.move(path, destination)


def matching_combinations(folder: Path, answers: Mapping[str, str]) -> list[Path]:
    """Sub-folders named `key=value,key=value` whose every condition holds, least specific first."""
    matches = []
    for candidate in sorted(folder.iterdir()):
        conditions = dict(part.split("=", 1) for part in candidate.name.split(","))
        if all(answers.get(key) == value for key, value in conditions.items()):
            matches.append((len(conditions), candidate))
    return [candidate for _, candidate in sorted(matches)]


def apply_variants(root: Path, answers: Mapping[str, str]) -> None:
    overlay(root / "_frameworks" / answers["framework"] / "project", root)
    overlay(root / "_scopes" / answers["scope"], root)
    overlay(root / "_base_images" / answers["base_image"], root)
    for folder in matching_combinations(root / "_combinations", answers):
        overlay(folder, root)
    # requirements.txt: one per framework, processor and scope (tools/lock_projects.py makes them).
    locks = matching_combinations(root / "_locks", answers)
    if len(locks) != 1:
        raise RuntimeError(f"the template holds {len(locks)} dependency locks for these answers, not one: {locks}")
    overlay(locks[0], root)
    shutil.move(root / "_licenses" / f"{answers['license']}.txt", root / "LICENSE")


def remove_variant_folders(root: Path) -> None:
    for folder in VARIANT_FOLDERS:
        shutil.rmtree(root / folder, ignore_errors=True)


def remove_ci_files(root: Path) -> None:
    shutil.rmtree(root / ".github")


# Keys cookiecutter adds to the context for one run only (local paths, the --checkout option); cruft
# records none of them and adds _template and _commit instead.
RUN_KEYS = ("_template", "_output_dir", "_repo_dir", "_checkout", "_commit")


def rendered_by_cruft(answers: Mapping[str, Any]) -> bool:
    """cruft (create, update, diff) puts _commit in the context and writes .cruft.json itself."""
    return "_commit" in answers


def locate_template_dir(answers: Mapping[str, Any], environ: Mapping[str, str]) -> Path | None:
    """The template directory as an absolute path. The hook runs in the project, so a relative
    _repo_dir (`cookiecutter ../template`) is resolved against the directory cookiecutter ran in."""
    if not answers.get("_repo_dir"):
        return None
    repo_dir = Path(answers["_repo_dir"])
    if repo_dir.is_absolute():
        return repo_dir
    for base in (environ.get("PWD"), answers.get("_output_dir")):
        if base and (Path(base) / repo_dir / "cookiecutter.json").is_file():
            return (Path(base) / repo_dir).resolve()
    return None


def git(directory: Path, *args: str) -> str | None:
    """git's output in directory, stripped; None if git is missing or fails."""
    try:
        finished = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return finished.stdout.strip() if finished.returncode == 0 else None


def template_revision(template_dir: Path) -> dict[str, str | None] | None:
    """The git repository holding the template: its top folder, HEAD commit, the template's folder
    within it and the clone's origin; None unless cookiecutter.json is tracked there."""
    if git(template_dir, "ls-files", "--error-unmatch", "cookiecutter.json") is None:
        return None
    top = git(template_dir, "rev-parse", "--show-toplevel")
    commit = git(template_dir, "rev-parse", "--verify", "HEAD^{commit}")
    if not top or not commit:
        return None
    return {
        "top": top,
        "commit": commit,
        "directory": (git(template_dir, "rev-parse", "--show-prefix") or "").rstrip("/") or None,
        "origin": git(template_dir, "remote", "get-url", "origin"),
        "dirty": git(template_dir, "status", "--porcelain", "--", "."),
    }


def template_source(answers: Mapping[str, Any], revision: Mapping[str, str | None]) -> str:
    """What cruft clones later: the URL cookiecutter cloned (its clone's origin, so abbreviations
    such as gh: come out expanded), or the local checkout's absolute path."""
    cloned = not Path(str(answers["_repo_dir"])).is_relative_to(str(answers["_template"]))
    return str(revision["origin"] if cloned and revision["origin"] else revision["top"])


def cruft_state(answers: Mapping[str, Any], source: str, commit: str, directory: str | None) -> dict[str, Any]:
    """.cruft.json as `cruft create` writes it for the same template, commit and answers."""
    context = {key: value for key, value in answers.items() if key not in RUN_KEYS}
    context |= {"_template": source, "_commit": commit}
    return {
        "template": source,
        "commit": commit,
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": context},
        "directory": directory,
    }


def record_template(root: Path, answers: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """Write .cruft.json when the template's commit is known; return a note for the user, if any.

    Without a commit no file is written: cruft would read a missing commit as "up to date", and
    `cruft link` refuses a project that already has a .cruft.json.
    """
    if rendered_by_cruft(answers):
        return None
    template_dir = locate_template_dir(answers, environ)
    revision = template_revision(template_dir) if template_dir else None
    if revision is None:
        return (
            "The template is not a git checkout, so its commit is not recorded. To use `make update`, link "
            "the project: see 'Update from the template' in README.md."
        )
    source = template_source(answers, revision)
    state = cruft_state(answers, source, str(revision["commit"]), revision["directory"])
    text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    (root / ".cruft.json").write_text(text, encoding="utf-8")
    if revision["dirty"]:
        return (
            f"The template has uncommitted changes: .cruft.json records commit {revision['commit'][:12]}, "
            "which lacks them; `make update` will treat them as your edits."
        )
    return None


def next_steps(answers: Mapping[str, str]) -> str:
    serve = answers["scope"] == "train+serve"
    lines = [
        f"Created {answers['project_slug']}. Next steps:",
        f"  cd {answers['project_slug']}",
        "  make install        # virtual environment with the pinned dependencies",
        "  make test lint      # the project's own tests and linters, no Docker or AWS needed",
        "  make local-train    # train on the sample data in ./local",
    ]
    if serve:
        lines += [
            "  make local-serve    # serve the trained model on http://127.0.0.1:8080",
            "  make predict        # in another shell: send a sample request",
        ]
    lines += [
        "  make build push     # build the image and push it to Amazon ECR",
        "  then open notebooks/launch.ipynb to train" + (", deploy and predict" if serve else "") + " on SageMaker.",
    ]
    return "\n".join(lines)


def main(root: Path, answers: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> int:
    apply_variants(root, answers)
    remove_variant_folders(root)
    if answers["ci"] == "none":
        remove_ci_files(root)
    note = record_template(root, answers, environ)
    print(next_steps(answers))
    if note:
        print(f"Note: {note}")
    return 0


if __name__ == "__main__":
    # tojson escapes ' and \\, so no answer can close the ''' literal early.
    sys.exit(main(Path.cwd(), json.loads(r'''{{ cookiecutter | tojson }}''')))  # fmt: skip
