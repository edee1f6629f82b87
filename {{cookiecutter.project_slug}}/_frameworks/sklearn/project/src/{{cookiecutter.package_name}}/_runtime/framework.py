"""scikit-learn under the contract: fits model.py's estimator, saves it with joblib, answers with it.

This is the only runtime module that fits or loads an estimator. A scikit-learn estimator trains on one
host, in one call, on the CPU: it has nothing to checkpoint and no GPU to use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import BaseEstimator, is_classifier, is_regressor

from .. import model
from .contract import DefinitionError, TrainingJob
from .metrics import FitProgress

ARTIFACT_NAME = "model.joblib"
BUILDERS = ("build_estimator",)
# Hyperparameters the runtime itself reads: none, the estimator takes them all.
RUNTIME_HYPERPARAMETERS: tuple[str, ...] = ()


class MultipleHostsUnsupported(ValueError):
    """The job asked for more than one instance."""


class NoProbabilities(ValueError):
    """The estimator cannot give class probabilities (it has no predict_proba)."""


def build(params: Mapping[str, Any]) -> BaseEstimator:
    estimator = model.build_estimator(dict(params))
    matches = is_classifier(estimator) if model.TASK == "classification" else is_regressor(estimator)
    if not matches:
        raise DefinitionError(
            f"model.py's TASK is {model.TASK!r}, but build_estimator returned {type(estimator).__name__}, "
            f"which is not a {'classifier' if model.TASK == 'classification' else 'regressor'}"
        )
    return estimator


class FrameworkModel:
    def __init__(self, estimator: BaseEstimator) -> None:
        self.estimator = estimator

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, params: Mapping[str, Any], job: TrainingJob
    ) -> FrameworkModel:
        if job.cluster.size > 1:
            # scikit-learn has no cross-host training: N hosts would each fit their own copy.
            raise MultipleHostsUnsupported(
                f"scikit-learn trains on one host, but this job has {job.cluster.size} "
                f"({', '.join(job.cluster.hosts)}); run it with instance_count=1 and, for more data, a larger "
                "instance type"
            )
        estimator = build(params)
        progress = FitProgress(type(estimator).__name__, len(features))
        estimator.fit(features, labels)
        progress.done()
        return cls(estimator)

    @property
    def classes(self) -> np.ndarray | None:
        return getattr(self.estimator, "classes_", None) if model.TASK == "classification" else None

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.estimator.predict(features)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        if not hasattr(self.estimator, "predict_proba"):
            raise NoProbabilities(f"{type(self.estimator).__name__} gives no class probabilities")
        return self.estimator.predict_proba(features)

    def save(self, model_dir: Path) -> Path:
        """Write the artifact atomically: a reader never sees half a model."""
        model_dir.mkdir(parents=True, exist_ok=True)
        target = model_dir / ARTIFACT_NAME
        partial = model_dir / f".{ARTIFACT_NAME}.partial"
        joblib.dump(self.estimator, partial)
        os.replace(partial, target)
        return target

    @classmethod
    def load(cls, model_dir: Path) -> FrameworkModel:
        # joblib unpickles: only ever load artifacts this project wrote itself.
        return cls(joblib.load(model_dir / ARTIFACT_NAME))
