"""The sagemaker-training toolkit's own `train` command runs this project's code, as in the prebuilt image."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from {{ cookiecutter.package_name }}.model import Model

from .support import PACKAGE, PROJECT_DIR, make_tree

TOOLKIT_TRAIN = Path(sys.executable).with_name("train")


def toolkit_tree(base_dir: Path) -> Path:
    """A SageMaker tree with the code where the Dockerfile's COPY lines put it (<base>/code)."""
    tree = make_tree(base_dir)
    code_dir = tree / "code"
    shutil.copytree(PROJECT_DIR / "src" / PACKAGE, code_dir / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (PROJECT_DIR / "toolkit").glob("*.py"):
        shutil.copy2(path, code_dir / path.name)
    # The toolkit waits until every host in resourceconfig.json resolves: name this machine.
    host = socket.gethostname()
    resources = {"current_host": host, "hosts": [host], "network_interface_name": "lo"}
    (tree / "input" / "config" / "resourceconfig.json").write_text(json.dumps(resources))
    return tree


def run_toolkit(tree: Path) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # code comes from <base>/code
    environ |= {"SAGEMAKER_BASE_DIR": str(tree), "SAGEMAKER_PROGRAM": "train_entry.py"}
    return subprocess.run(
        [str(TOOLKIT_TRAIN)], env=environ, cwd=tree, capture_output=True, text=True, timeout=600, check=False
    )


def test_toolkit_trains_the_model(tmp_path):
    tree = toolkit_tree(tmp_path / "ml")
    finished = run_toolkit(tree)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert Model.load(tree / "model").num_features == 4
    assert (tree / "output" / "success").exists()
    assert not (tree / "output" / "failure").exists()
    assert "validation:accuracy=" in finished.stdout + finished.stderr


def test_toolkit_reports_a_failing_job(tmp_path):
    tree = toolkit_tree(tmp_path / "ml")
    (tree / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"no_such_knob": "1"}))
    finished = run_toolkit(tree)
    assert finished.returncode != 0
    assert "unknown hyperparameter(s) no_such_knob" in (tree / "output" / "failure").read_text()
    assert not any(path.is_file() for path in (tree / "model").rglob("*"))
