"""What training reports, by task, in the lines SageMaker's metric definitions match.

Classification: accuracy. Regression: RMSE and MAE. Each on the train channel and, where the job
has one, the validation channel: `validation:rmse=12.345678`, one line per metric, printed once
training is done.
{%- if cookiecutter.framework == "sklearn" %}

While it runs, one line before the estimator's fit and one after it, with the rows and the time:
`fitted RandomForestClassifier on 120 rows: rows/s=1500 elapsed=0:00 fit_seconds=0.080000`.
{%- else %}

While it runs, one line per epoch, logged by every host with the loss over all hosts' rows:
`epoch 3/30 train:loss=0.412345 rows/s=5234 elapsed=0:02 eta=0:18 host=algo-1`, where rows/s counts
every host's rows and the time since the previous line (checkpointing included), and eta is this
job's mean epoch time so far times the epochs left.
{%- endif %}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

METRICS_BY_TASK = {"classification": ("accuracy",), "regression": ("rmse", "mae")}
CHANNELS = ("train", "validation")
# A number as training prints it (fixed-point, six decimals), for the metric definitions' regexes.
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
{%- if cookiecutter.framework == "sklearn" %}
# The progress metrics worth charting, and the regex of each over the line after the fit.
PROGRESS_DEFINITIONS = {
    "train:rows_per_second": rf"fitted \S+ on [0-9]+ rows: rows/s={NUMBER}",
    "train:fit_seconds": rf"fitted \S+ on [0-9]+ rows: rows/s=\S+ elapsed=\S+ fit_seconds={NUMBER}",
}
{%- else %}
# The progress metrics worth charting, and the regex of each over the epoch lines.
PROGRESS_DEFINITIONS = {
    "train:loss": rf"epoch [0-9]+/[0-9]+ train:loss={NUMBER}",
    "train:rows_per_second": rf"epoch [0-9]+/[0-9]+ train:loss=\S+ rows/s={NUMBER}",
}
{%- endif %}

logger = logging.getLogger(__name__)


def evaluate(task: str, predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if task == "classification":
        return {"accuracy": float(np.mean(predicted == labels))}
    errors = np.asarray(predicted, dtype=np.float64).reshape(-1) - labels
    return {"rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.mean(np.abs(errors)))}


def metric_line(channel: str, name: str, value: float) -> str:
    return f"{channel}:{name}={value:.6f}"


def metric_definitions(task: str) -> list[dict[str, str]]:
    """Name and Regex of every metric training prints for this task, as CreateTrainingJob takes them:
    the progress metrics, then the task's metrics of each channel."""
    progress = [{"Name": name, "Regex": regex} for name, regex in PROGRESS_DEFINITIONS.items()]
    return progress + [
        {"Name": f"{channel}:{name}", "Regex": f"{channel}:{name}={NUMBER}"}
        for channel in CHANNELS
        for name in METRICS_BY_TASK[task]
    ]


def clock(seconds: float) -> str:
    """A duration as a progress line shows it: 0:07, 12:34, 1:02:03."""
    minutes, whole_seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{whole_seconds:02d}" if hours else f"{minutes}:{whole_seconds:02d}"
{%- if cookiecutter.framework == "sklearn" %}


class FitProgress:
    """Logs a line as the estimator's fit starts and one when it ends, with the rows and the time."""

    def __init__(self, estimator: str, rows: int, timer: Callable[[], float] = time.perf_counter) -> None:
        self.estimator, self.rows, self._timer = estimator, rows, timer
        logger.info("fitting %s on %d rows", estimator, rows)
        self._started = timer()

    def done(self) -> dict[str, float]:
        """Log the end line; returns the figures it shows."""
        seconds = self._timer() - self._started
        # A fit too quick for the timer to see has no meaningful rate: 0 rather than a division by zero.
        rate = self.rows / seconds if seconds > 0 else 0.0
        logger.info(
            "fitted %s on %d rows: rows/s=%.0f elapsed=%s fit_seconds=%.6f",
            self.estimator,
            self.rows,
            rate,
            clock(seconds),
            seconds,
        )
        return {"train:rows_per_second": rate, "train:fit_seconds": seconds}
{%- else %}


class EpochProgress:
    """Logs one progress line per epoch: the epoch's loss, the rows per second, the time so far and left.

    Made as the first epoch of this job starts (`first_epoch` finished ones resumed from a checkpoint);
    the estimate of the time left averages the epochs this job ran, not the resumed ones.
    """

    def __init__(
        self, first_epoch: int, epochs: int, host: str, timer: Callable[[], float] = time.perf_counter
    ) -> None:
        self.first_epoch, self.epochs, self.host, self._timer = first_epoch, epochs, host, timer
        self._started = self._previous = timer()

    def epoch_done(self, epoch: int, loss: float, rows: int) -> dict[str, float]:
        """Log the line of epoch number `epoch` (1 to epochs), whose `rows` over all hosts had mean
        loss `loss`; returns the figures it shows."""
        now = self._timer()
        seconds, elapsed = now - self._previous, now - self._started
        self._previous = now
        rate = rows / seconds if seconds > 0 else 0.0
        eta = elapsed / (epoch - self.first_epoch) * (self.epochs - epoch)
        logger.info(
            "epoch %d/%d train:loss=%.6f rows/s=%.0f elapsed=%s eta=%s host=%s",
            epoch,
            self.epochs,
            loss,
            rate,
            clock(elapsed),
            clock(eta),
            self.host,
        )
        return {"train:loss": loss, "train:rows_per_second": rate}
{%- endif %}


# What a tuning job optimises, by task: a validation metric training prints, and which way is better.
TUNING_OBJECTIVES = {"classification": ("Maximize", "accuracy"), "regression": ("Minimize", "rmse")}


def tuning_objective(task: str) -> dict[str, str]:
    """Type and MetricName of the tuning job's objective, as CreateHyperParameterTuningJob takes them."""
    direction, name = TUNING_OBJECTIVES[task]
    return {"Type": direction, "MetricName": f"validation:{name}"}
