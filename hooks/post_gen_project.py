"""Shape the rendered project to the answers: move the chosen variants in, drop the rest.

Variant folders (their names start with '_') hold one tree per option; the chosen tree is
laid over the project root and every variant folder is removed, so the project holds only
the files its answers use.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

VARIANT_FOLDERS = ("_frameworks", "_scopes", "_base_images", "_combinations", "_licenses", "_fragments")


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
    shutil.move(root / "_licenses" / f"{answers['license']}.txt", root / "LICENSE")


def remove_variant_folders(root: Path) -> None:
    for folder in VARIANT_FOLDERS:
        shutil.rmtree(root / folder, ignore_errors=True)


def remove_ci_files(root: Path) -> None:
    shutil.rmtree(root / ".github")


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


def main(root: Path, answers: Mapping[str, str]) -> int:
    apply_variants(root, answers)
    remove_variant_folders(root)
    if answers["ci"] == "none":
        remove_ci_files(root)
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    # tojson escapes ' and \\, so no answer can close the ''' literal early.
    sys.exit(main(Path.cwd(), json.loads(r'''{{ cookiecutter | tojson }}''')))  # fmt: skip
