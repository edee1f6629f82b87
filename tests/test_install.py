"""A rendered project's `make install`: a virtual environment of exactly its lock, hashes checked."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pytest

from .conftest import locked_versions, run


@pytest.fixture(scope="module")
def project(bake_once, tmp_path_factory):
    """The default combination, copied, so its .venv stays out of the bake other tests share."""
    copy = tmp_path_factory.mktemp("install") / "iris-classifier"
    shutil.copytree(bake_once().project_path, copy)
    return copy


def test_make_install_holds_the_locked_versions_and_the_dev_tools(project):
    finished = run(["make", "install", f"PYTHON={sys.executable}"], cwd=project, timeout=900)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    listing = run([str(project / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format", "json"], cwd=project)
    installed = {re.sub(r"[-_.]+", "-", item["name"]).lower(): item["version"] for item in json.loads(listing.stdout)}
    lock = locked_versions(project)
    off = {name: version for name, version in installed.items() if name in lock and version not in lock[name]}
    assert off == {}, f"installed versions other than requirements.txt's: {off}"
    assert all(name in installed for name in ("numpy", "scikit-learn", "gunicorn")), sorted(installed)
    assert (project / ".venv" / "bin" / "uv").exists(), "make lock needs uv from the dev tools"


def test_make_install_refuses_a_file_whose_hash_is_not_the_locks(project, tmp_path):
    tampered = tmp_path / "iris-classifier"
    shutil.copytree(project, tampered, ignore=shutil.ignore_patterns(".venv"))
    lock = tampered / "requirements.txt"
    # Every hash of one package replaced: whichever of its files pip picks cannot match.
    text = lock.read_text()
    entry = re.search(r"^click==\S+ \\\n((?:    --hash=sha256:\w+(?: \\)?\n)+)", text, re.M)
    hashes = re.sub(r"sha256:\w+", "sha256:" + "0" * 64, entry.group(1))
    lock.write_text(text[: entry.start(1)] + hashes + text[entry.end(1) :])
    finished = run(["make", "install", f"PYTHON={sys.executable}"], cwd=tampered, timeout=900)
    assert finished.returncode != 0
    assert "DO NOT MATCH THE HASHES" in finished.stdout + finished.stderr
    assert "click" in finished.stdout + finished.stderr
