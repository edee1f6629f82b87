"""What it costs a user to make a rendered project theirs, proven on every framework.

Each test renders a project, commits it, applies one real change a team makes on its first day,
counts the files the change touched (only the user's model.py and data.py may be among them), and
runs the project's own suite on the result:
(a) another estimator or network: model.py only; the whole suite, multi-host tests included;
(b) another data set with named columns in another order (scikit-learn's wine data): data.py only;
(c) a regression task on scikit-learn's diabetes data: model.py and data.py.
The summary at the end of pytest's output lists each swap's files and test counts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import FRAMEWORKS, run

USER_FILES = {"src/iris_classifier/model.py", "src/iris_classifier/data.py"}

WINE_DATA = '''"""Yours: the columns your model learns from, and the sample data set."""

import numpy as np

from ._runtime import Table

FEATURES = {
    "alcohol": float,
    "malic_acid": float,
    "ash": float,
    "alcalinity_of_ash": float,
    "magnesium": int,
    "total_phenols": float,
    "flavanoids": float,
    "nonflavanoid_phenols": float,
    "proanthocyanins": float,
    "color_intensity": float,
    "hue": float,
    "od280/od315_of_diluted_wines": float,
    "proline": int,
}
LABEL = "cultivar"


def sample_data() -> Table:
    """scikit-learn's wine data: 178 wines, 3 cultivars; the label first, then the columns reversed."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    return Table((LABEL, *reversed(wine.feature_names)), np.column_stack([wine.target, wine.data[:, ::-1]]))
'''

DIABETES_DATA = '''"""Yours: the columns your model learns from, and the sample data set."""

import numpy as np

from ._runtime import Table

FEATURES = {name: float for name in ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")}
LABEL = "progression"


def sample_data() -> Table:
    """scikit-learn's diabetes data: 442 patients, disease progression a year on; the label in the middle."""
    from sklearn.datasets import load_diabetes

    diabetes = load_diabetes()
    names = list(diabetes.feature_names)
    columns = (*names[5:], LABEL, *names[:5])
    rows = np.column_stack([diabetes.data[:, 5:], diabetes.target, diabetes.data[:, :5]])
    return Table(columns, rows)
'''

# (a): the model a team swaps in, by framework: (text to find in model.py, what replaces it).
OTHER_MODEL = {
    "sklearn": [
        ("from sklearn.tree import DecisionTreeClassifier", "from sklearn.ensemble import RandomForestClassifier"),
        (
            '    Hyperparameter("max_depth"',
            '    Hyperparameter("n_estimators", int, 25, "Trees in the forest.", minimum=1),\n'
            '    Hyperparameter("max_depth"',
        ),
        ("-> DecisionTreeClassifier:", "-> RandomForestClassifier:"),
        (
            "    return DecisionTreeClassifier(\n",
            '    return RandomForestClassifier(\n        n_estimators=params["n_estimators"],\n',
        ),
    ],
    "pytorch": [
        (
            re.compile(r"def build_network\(.*?(?=\n\n\ndef |\Z)", re.S),
            "def build_network(num_features: int, num_outputs: int, params: dict[str, Any]) -> nn.Module:\n"
            '    """Three tanh layers of hidden_units."""\n'
            '    width = params["hidden_units"]\n'
            "    return nn.Sequential(\n"
            "        nn.Linear(num_features, width),\n"
            "        nn.Tanh(),\n"
            "        nn.Linear(width, width),\n"
            "        nn.Tanh(),\n"
            "        nn.Linear(width, width),\n"
            "        nn.Tanh(),\n"
            "        nn.Linear(width, num_outputs),\n"
            "    )",
        ),
    ],
    "tensorflow": [
        (
            re.compile(r"def build_network\(.*?(?=\n\n\ndef |\Z)", re.S),
            "def build_network(num_features: int, num_outputs: int, params: dict[str, Any]) -> keras.Model:\n"
            '    """Three tanh layers of hidden_units."""\n'
            '    width = params["hidden_units"]\n'
            "    return keras.Sequential(\n"
            "        [\n"
            "            keras.Input(shape=(num_features,)),\n"
            '            keras.layers.Dense(width, activation="tanh"),\n'
            '            keras.layers.Dense(width, activation="tanh"),\n'
            '            keras.layers.Dense(width, activation="tanh"),\n'
            "            keras.layers.Dense(num_outputs),\n"
            "        ]\n"
            "    )",
        ),
    ],
}

# (c): the model's side of a regression task.
REGRESSION_MODEL = {
    "sklearn": [
        ('TASK = "classification"', 'TASK = "regression"'),
        ("from sklearn.tree import DecisionTreeClassifier", "from sklearn.tree import DecisionTreeRegressor"),
        (
            '"How a split is scored.", choices=("gini", "entropy", "log_loss")',
            '"Split score.", choices=("squared_error", "absolute_error")',
        ),
        ('Hyperparameter("criterion", str, "gini",', 'Hyperparameter("criterion", str, "squared_error",'),
        ("DecisionTreeClassifier", "DecisionTreeRegressor"),
    ],
    "pytorch": [('TASK = "classification"', 'TASK = "regression"')],
    "tensorflow": [('TASK = "classification"', 'TASK = "regression"')],
}


@dataclass(frozen=True)
class Swap:
    name: str
    model: str | None  # key into OTHER_MODEL / REGRESSION_MODEL, or None
    data: str | None  # the new data.py, or None
    most_files: int
    whole_suite: bool  # False: the everyday tier (`make test`); True: `make test-all`, multi-host included


SWAPS = [
    Swap("a-other-model", "other", None, most_files=1, whole_suite=True),
    Swap("b-wine-named-columns", None, WINE_DATA, most_files=2, whole_suite=False),
    Swap("c-diabetes-regression", "regression", DIABETES_DATA, most_files=2, whole_suite=False),
]


def git(project: Path, *args: str) -> str:
    environ = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    environ |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    finished = subprocess.run(
        ["git", *args], cwd=project, env={**environ, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def edit(path: Path, replacements: list) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        if isinstance(old, re.Pattern):
            text, count = old.subn(new.replace("\\", "\\\\"), text, count=1)
        else:
            count = text.count(old)
            text = text.replace(old, new)
        assert count >= 1, f"{path.name} no longer holds {old!r}: update the swap"
    path.write_text(text, encoding="utf-8")


def apply(swap: Swap, framework: str, project: Path) -> list[str]:
    """The swap, made as a user would; returns the files it changed."""
    package = project / "src" / "iris_classifier"
    if swap.model == "other":
        edit(package / "model.py", OTHER_MODEL[framework])
    elif swap.model == "regression":
        edit(package / "model.py", REGRESSION_MODEL[framework])
    if swap.data is not None:
        (package / "data.py").write_text(swap.data, encoding="utf-8")
    return sorted(line[3:] for line in git(project, "status", "--porcelain").splitlines())


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("swap", SWAPS, ids=lambda swap: swap.name)
def test_a_swap_touches_only_the_users_files_and_the_suite_passes(cookies, framework, swap, record_property):
    result = cookies.bake(extra_context={"framework": framework})
    assert result.exit_code == 0, result.exception
    project = result.project_path
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", "rendered")
    changed = apply(swap, framework, project)
    assert set(changed) <= USER_FILES, f"the swap had to touch template files: {changed}"
    assert 1 <= len(changed) <= swap.most_files, changed
    lint = run([str(Path(sys.executable).with_name("ruff")), "check", "."], cwd=project)
    assert lint.returncode == 0, lint.stdout[-3000:]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if not swap.whole_suite:
        command += ["-m", "not slow"]
    finished = run(command, cwd=project, timeout=1200)
    summary = finished.stdout.strip().splitlines()[-1] if finished.stdout.strip() else ""
    output = f"{finished.stdout[-6000:]}\n{finished.stderr[-2000:]}"
    assert finished.returncode == 0, f"{framework} after {swap.name}:\n{output}"
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
    record_property("swap", json.dumps({"framework": framework, "swap": swap.name, "files": changed, "tests": summary}))


def swap_summary(stats: dict[str, list]) -> list[str]:
    """One line per swap that ran: the files it touched and what the project's suite said."""
    lines = []
    for reports in stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "swap":
                    facts = json.loads(value)
                    files = ", ".join(path.rsplit("/", 1)[-1] for path in facts["files"])
                    lines.append(
                        f"{facts['framework']:<10} {facts['swap']:<22} {len(facts['files'])} file(s): {files:<20}"
                        f" {facts['tests']}"
                    )
    return sorted(lines)
