"""Helpers the tests share: SageMaker trees on disk and the package run as a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from {{ cookiecutter.package_name }}.__main__ import write_sample_data
from {{ cookiecutter.package_name }}._runtime.environment import SageMakerEnvironment
from {{ cookiecutter.package_name }}._runtime.sample_tree import sample_split, schema
from {{ cookiecutter.package_name }}._runtime.tables import Dataset, Schema, read_channel
from {{ cookiecutter.package_name }}.model import TASK

PROJECT_DIR = Path(__file__).resolve().parents[1]
PACKAGE = "{{ cookiecutter.package_name }}"
# The columns and task of this project's model.py and data.py: the tests hold for whatever they declare.
SCHEMA = schema()
FEATURES = SCHEMA.feature_names
CLASSIFICATION = TASK == "classification"
# A small schema of its own, for tests of how tables are read whatever data.py declares.
TWO = Schema(features=(("a", "float"), ("b", "int")), label="y", task="classification")


def write(path: Path, text: str) -> Path:
    """A text file, its folders made as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_tree(base_dir: Path) -> Path:
    """What `python -m <package> sample-data DIR` writes."""
    write_sample_data(base_dir)
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


def channel(tree: Path, name: str = "validation") -> Dataset:
    """A channel of a tree as training reads it."""
    return read_channel(name, tree / "input" / "data" / name, SCHEMA)


def sample_rows(count: int | None = None) -> np.ndarray:
    """Feature rows of the sample data's validation part, in the schema's order."""
    return sample_split()[1].features[:count]


def csv_body(rows: np.ndarray) -> bytes:
    """Rows as a headerless CSV request body, written as a client would (shortest exact form)."""
    return "".join(",".join(repr(float(value)) for value in row) + "\n" for row in rows).encode()


def good_enough(predicted: np.ndarray, labels: np.ndarray, train_labels: np.ndarray) -> bool:
    """Clearly better than the best constant answer: the commonest class, or the mean of the train labels.

    Classification: at least a third of the way from the commonest class's share to every row right.
    """
    if CLASSIFICATION:
        baseline = float(np.mean(labels == np.bincount(train_labels).argmax()))
        return float(np.mean(predicted == labels)) >= baseline + (1 - baseline) / 3
    baseline = np.sqrt(np.mean((labels - train_labels.mean()) ** 2))
    return float(np.sqrt(np.mean((np.asarray(predicted).reshape(-1) - labels) ** 2))) < 0.95 * baseline
