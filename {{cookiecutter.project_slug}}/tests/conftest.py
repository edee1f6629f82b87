"""Fixtures: a SageMaker directory tree on disk, and a model trained into one."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}._runtime import training

from .support import environment_for, make_tree


@pytest.fixture
def sagemaker_tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "ml")


@pytest.fixture(scope="session")
def trained_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base_dir = make_tree(tmp_path_factory.mktemp("trained") / "ml")
    assert training.main(environment_for(base_dir)) == 0
    return base_dir
