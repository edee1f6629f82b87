"""What training reports, by task, in the lines SageMaker's metric definitions match.

Classification: accuracy. Regression: RMSE and MAE. Each on the train channel and, where the job
has one, the validation channel: `validation:rmse=12.345678`, one line per metric.
"""

from __future__ import annotations

import numpy as np

METRICS_BY_TASK = {"classification": ("accuracy",), "regression": ("rmse", "mae")}
CHANNELS = ("train", "validation")
# A number as training prints it (fixed-point, six decimals), for the metric definitions' regexes.
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def evaluate(task: str, predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if task == "classification":
        return {"accuracy": float(np.mean(predicted == labels))}
    errors = np.asarray(predicted, dtype=np.float64).reshape(-1) - labels
    return {"rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.mean(np.abs(errors)))}


def metric_line(channel: str, name: str, value: float) -> str:
    return f"{channel}:{name}={value:.6f}"


def metric_definitions(task: str) -> list[dict[str, str]]:
    """Name and Regex of every metric training prints for this task, as CreateTrainingJob takes them."""
    return [
        {"Name": f"{channel}:{name}", "Regex": f"{channel}:{name}={NUMBER}"}
        for channel in CHANNELS
        for name in METRICS_BY_TASK[task]
    ]


# What a tuning job optimises, by task: a validation metric training prints, and which way is better.
TUNING_OBJECTIVES = {"classification": ("Maximize", "accuracy"), "regression": ("Minimize", "rmse")}


def tuning_objective(task: str) -> dict[str, str]:
    """Type and MetricName of the tuning job's objective, as CreateHyperParameterTuningJob takes them."""
    direction, name = TUNING_OBJECTIVES[task]
    return {"Type": direction, "MetricName": f"validation:{name}"}
