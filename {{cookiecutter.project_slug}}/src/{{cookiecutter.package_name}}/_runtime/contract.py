"""The contract between your two files and the template's runtime, written down.

`model.py` and `data.py` are yours: they say what is learnt and from which columns. Everything in
`_runtime/` is the template's: it reads SageMaker's contract, trains, checkpoints, spreads training
over hosts, writes artifacts and answers with the model. The runtime only ever uses what these Protocols name, so
anything else in your files is yours to arrange; `check_definitions` refuses a file that misses a
part, naming it, before a job starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, Self, runtime_checkable

import numpy as np

from .environment import Cluster
from .hyperparameters import Hyperparameter

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
# The types a feature column may declare; values of `int` columns must be whole numbers.
FEATURE_TYPES: tuple[type, ...] = (float, int)


class DefinitionError(TypeError):
    """model.py or data.py lacks something the runtime needs, or declares it wrongly."""


class ModelDefinition(Protocol):
    """What `model.py` provides, in every framework.

    TASK: "classification" (labels are class indices, integers from 0; training prints accuracy;
        predictions are class labels, or class probabilities on request) or "regression" (labels
        are numbers; training prints RMSE and MAE; predictions are numbers).
    HYPERPARAMETERS: every hyperparameter a job may set, typed, with its default and bounds.
        Jobs that name any other fail at once. The notebook and `python -m <package> hyperparameters`
        read them from here.

    Each framework adds the builders its runtime calls (`_runtime/framework.py` lists them in BUILDERS,
    and the hyperparameters it reads itself in RUNTIME_HYPERPARAMETERS): scikit-learn
    `build_estimator(params)`; PyTorch `build_network(num_features, num_outputs, params)` and
    `build_optimizer(parameters, params)`; TensorFlow `build_network(num_features, num_outputs, params)`
    and `build_optimizer(params)`, with epochs, batch_size and seed declared. `params` maps every
    hyperparameter to its typed value. Features reach the model as float64 rows in FEATURES order.
    """

    TASK: Task
    HYPERPARAMETERS: Sequence[Hyperparameter]


class DataDefinition(Protocol):
    """What `data.py` provides.

    FEATURES: the feature columns in order, name -> type (`float` or `int`). CSV files with a header
        are matched to them by name; without a header, a row is the label, then these in this order.
    LABEL: the name of the label column (its type follows from the model's TASK).
    sample_data(): the sample data set as a table with a header: the tests, `sample-data` and the
        launcher notebook use it. Its columns may come in any order.
    """

    FEATURES: Mapping[str, type]
    LABEL: str

    def sample_data(self) -> Table: ...


@dataclass(frozen=True)
class Table:
    """Named columns of numbers: `rows[:, i]` is the column `columns[i]`."""

    columns: tuple[str, ...]
    rows: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.rows[:, self.columns.index(name)]


@dataclass(frozen=True)
class TrainingJob:
    """Where and how a framework trains, besides the data and hyperparameters.

    cluster: the job's hosts; one host is a cluster of one. A framework that cannot train across
        hosts refuses a larger cluster with a reason.
    checkpoint_dir: where to keep checkpoints a stopped job resumes from, or None when the job was
        given no checkpoint folder (SageMaker creates it only for jobs with a CheckpointConfig).
    num_gpus: GPUs SageMaker gave the job (SM_NUM_GPUS); 0 on CPU instances.
    sharded: True when each host holds only its share of the train channel (ShardedByS3Key).
    tuning: True for the training jobs of a tuning job, whose checkpoints are told apart by every
        hyperparameter (see hyperparameters.checkpoint_key).
    """

    cluster: Cluster
    checkpoint_dir: Path | None = None
    num_gpus: int = 0
    sharded: bool = False
    tuning: bool = False

    @classmethod
    def single_host(cls) -> TrainingJob:
        return cls(Cluster.single_host())


@runtime_checkable
class TrainedModel(Protocol):
    """What each framework's runtime (`_runtime/framework.py`, class `FrameworkModel`) implements."""

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, params: Mapping[str, Any], job: TrainingJob) -> Self:
        """Train on rows of standard-ordered features; every host of `job.cluster` returns the same model."""
        ...

    @property
    def classes(self) -> np.ndarray | None:
        """The class labels `probabilities` columns stand for, in order; None for regression."""
        ...

    def predict(self, features: np.ndarray) -> np.ndarray:
        """One answer per row: a class label (classification) or a number (regression)."""
        ...

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """One row of class probabilities per row, columns in `classes` order.

        Raises ValueError where there are none (regression; an estimator without predict_proba):
        serving then answers 406 with the reason.
        """
        ...

    def save(self, model_dir: Path) -> Path:
        """Write the artifact into `model_dir` whole or not at all; returns what was written."""
        ...

    @classmethod
    def load(cls, model_dir: Path) -> Self:
        """Read back what `save` wrote."""
        ...


def _is_column_name(name: object) -> bool:
    """A name a CSV header can carry and the readers can match: no separators, quotes or padding, not a number."""
    if not isinstance(name, str) or not name or name != name.strip() or any(mark in name for mark in ',"'):
        return False
    try:
        float(name)
    except ValueError:
        return True
    return False


def check_definitions(
    model: ModuleType, data: ModuleType, builders: Sequence[str] = (), required: Sequence[str] = ()
) -> None:
    """Refuse model.py / data.py if a part of the contract is missing or of the wrong kind.

    `builders` are the functions the framework's runtime calls in model.py; `required` the
    hyperparameters it reads itself (PyTorch and TensorFlow: epochs, batch_size, seed).
    """
    task = getattr(model, "TASK", None)
    if task not in TASKS:
        raise DefinitionError(f"model.py must set TASK to one of {', '.join(map(repr, TASKS))}, not {task!r}")
    parameters = getattr(model, "HYPERPARAMETERS", None)
    if not isinstance(parameters, Sequence) or not all(isinstance(p, Hyperparameter) for p in parameters):
        raise DefinitionError("model.py must declare HYPERPARAMETERS as a tuple of Hyperparameter(...)")
    missing = [name for name in required if name not in {p.name for p in parameters}]
    if missing:
        raise DefinitionError(f"model.py's HYPERPARAMETERS must declare {', '.join(missing)}: the runtime reads them")
    for builder in builders:
        if not callable(getattr(model, builder, None)):
            raise DefinitionError(f"model.py must define {builder}(...), which this framework's runtime calls")
    features = getattr(data, "FEATURES", None)
    if not isinstance(features, Mapping) or not features:
        raise DefinitionError("data.py must declare FEATURES as a non-empty mapping of column name -> type")
    for name, kind in features.items():
        if not _is_column_name(name):
            raise DefinitionError(
                f"data.py: feature name {name!r} must be non-empty text without commas, quotes or surrounding spaces, "
                "and not a number"
            )
        if kind not in FEATURE_TYPES:
            raise DefinitionError(f"data.py: feature {name!r} has type {kind!r}; use float or int")
    label = getattr(data, "LABEL", None)
    if not _is_column_name(label):
        raise DefinitionError(
            f"data.py must name the label column in LABEL (text without commas, quotes or surrounding spaces), "
            f"not {label!r}"
        )
    if label in features:
        raise DefinitionError(f"data.py: the label column {label!r} is also listed among FEATURES")
    if not callable(getattr(data, "sample_data", None)):
        raise DefinitionError("data.py must define sample_data(), returning the sample data set as a Table")
