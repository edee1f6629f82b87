"""The sagemaker-training toolkit's own `train` command runs this project's code, as in the prebuilt image."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

{% if cookiecutter.framework != "sklearn" %}import pytest

{% endif %}from {{ cookiecutter.package_name }}._runtime.framework import FrameworkModel
from {{ cookiecutter.package_name }}._runtime.metrics import metric_definitions
from {{ cookiecutter.package_name }}._runtime.tables import Schema
from {{ cookiecutter.package_name }}.model import TASK

{% if cookiecutter.framework != "sklearn" %}from .cluster import free_ports, host_trees, log_of, wait_all
{% endif %}from .support import PACKAGE, PROJECT_DIR, SCHEMA, make_tree

TOOLKIT_TRAIN = Path(sys.executable).with_name("train")


def add_code(tree: Path) -> Path:
    """The code where the Dockerfile's COPY lines put it (<base>/code)."""
    code_dir = tree / "code"
    shutil.copytree(PROJECT_DIR / "src" / PACKAGE, code_dir / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (PROJECT_DIR / "toolkit").glob("*.py"):
        shutil.copy2(path, code_dir / path.name)
    return tree


def toolkit_tree(base_dir: Path) -> Path:
    """A SageMaker tree with the code in it, on this machine as the job's only host."""
    tree = add_code(make_tree(base_dir))
    # The toolkit waits until every host in resourceconfig.json resolves: name this machine.
    host = socket.gethostname()
    resources = {"current_host": host, "hosts": [host], "network_interface_name": "lo"}
    (tree / "input" / "config" / "resourceconfig.json").write_text(json.dumps(resources))
    return tree


def toolkit_environment(tree: Path, **variables: str) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # code comes from <base>/code
    return environ | {"SAGEMAKER_BASE_DIR": str(tree), "SAGEMAKER_PROGRAM": "train_entry.py", **variables}


def run_toolkit(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOOLKIT_TRAIN)],
        env=toolkit_environment(tree),
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_toolkit_trains_the_model(tmp_path):
    tree = toolkit_tree(tmp_path / "ml")
    finished = run_toolkit(tree)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    FrameworkModel.load(tree / "model")
    assert Schema.load(tree / "model") == SCHEMA
    assert (tree / "output" / "success").exists()
    assert not (tree / "output" / "failure").exists()
    # The toolkit passes the job's output on: every metric the launcher's definitions read, progress included.
    for definition in metric_definitions(TASK):
        assert re.search(definition["Regex"], finished.stdout + finished.stderr), definition


def test_toolkit_reports_a_failing_job(tmp_path):
    tree = toolkit_tree(tmp_path / "ml")
    (tree / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"no_such_knob": "1"}))
    finished = run_toolkit(tree)
    assert finished.returncode != 0
    assert "unknown hyperparameter(s) no_such_knob" in (tree / "output" / "failure").read_text()
    assert not any(path.is_file() for path in (tree / "model").rglob("*"))

{%- if cookiecutter.framework != "sklearn" %}


# Slow, but not marked multi_host: the template's suite runs it in every extend-prebuilt combination.
@pytest.mark.slow
def test_toolkit_trains_across_two_hosts_and_only_the_master_keeps_the_model(tmp_path):
    trees = [add_code(tree) for tree in host_trees(tmp_path)]
    port = str(free_ports(len(trees)))
    hosts = []
    for tree in trees:
        environ = toolkit_environment(tree, DISTRIBUTED_PORT=port, DISTRIBUTED_TIMEOUT_SECONDS="60")
        with (tree / "output" / "train.log").open("wb") as log:
            hosts.append(subprocess.Popen([str(TOOLKIT_TRAIN)], env=environ, cwd=tree, stdout=log, stderr=log))
    assert wait_all(hosts) == [0, 0], log_of(trees[0])[-3000:] + log_of(trees[1])[-3000:]
    master, worker = trees
    assert Schema.load(master / "model") == SCHEMA
    assert not any(path.is_file() for path in (worker / "model").rglob("*")), "only the master writes the model"
    assert all((tree / "output" / "success").exists() for tree in trees)
{%- endif %}
