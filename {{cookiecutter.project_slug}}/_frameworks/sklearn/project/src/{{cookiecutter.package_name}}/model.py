"""The scikit-learn part of the project: a decision tree classifier.

This is the only module that knows the framework. Everything else talks to `Model` and
`HYPERPARAMETERS`, so changing the algorithm means changing this file (and its tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.tree import DecisionTreeClassifier

from .environment import Cluster
from .hyperparameters import Hyperparameter

ARTIFACT_NAME = "model.joblib"

HYPERPARAMETERS = (
    Hyperparameter("max_depth", int, 5, "Deepest level of the tree; 0 means no limit.", minimum=0),
    Hyperparameter("min_samples_leaf", int, 1, "Fewest training rows a leaf may hold.", minimum=1),
    Hyperparameter("criterion", str, "gini", "How a split is scored.", choices=("gini", "entropy", "log_loss")),
    Hyperparameter("random_state", int, 0, "Seed, for repeatable trees.", minimum=0),
)


class MultipleHostsUnsupported(ValueError):
    """The job asked for more than one instance."""


class Model:
    def __init__(self, estimator: DecisionTreeClassifier) -> None:
        self.estimator = estimator

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        params: dict[str, Any],
        *,
        num_gpus: int = 0,
        checkpoint_dir: Path | None = None,
        cluster: Cluster | None = None,
        sharded: bool = False,
    ) -> Model:
        # A tree trains in one short call: it uses no GPU and has nothing worth checkpointing.
        if cluster is not None and cluster.size > 1:
            # scikit-learn has no cross-host training: N hosts would each fit their own copy.
            raise MultipleHostsUnsupported(
                f"scikit-learn trains on one host, but this job has {cluster.size} ({', '.join(cluster.hosts)}); "
                "run it with instance_count=1 and, for more data, a larger instance type"
            )
        estimator = DecisionTreeClassifier(
            max_depth=params["max_depth"] or None,
            min_samples_leaf=params["min_samples_leaf"],
            criterion=params["criterion"],
            random_state=params["random_state"],
        )
        return cls(estimator.fit(features, labels))

    @property
    def num_features(self) -> int:
        return int(self.estimator.n_features_in_)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.estimator.predict(features)

    def save(self, model_dir: Path) -> Path:
        """Write the artifact atomically: a reader never sees half a model."""
        model_dir.mkdir(parents=True, exist_ok=True)
        target = model_dir / ARTIFACT_NAME
        partial = model_dir / f".{ARTIFACT_NAME}.partial"
        joblib.dump(self.estimator, partial)
        os.replace(partial, target)
        return target

    @classmethod
    def load(cls, model_dir: Path) -> Model:
        # joblib unpickles: only ever load artifacts this project wrote itself.
        return cls(joblib.load(model_dir / ARTIFACT_NAME))
