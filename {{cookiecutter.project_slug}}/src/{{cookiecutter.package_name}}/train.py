"""The training job: contract -> data -> model -> artifacts.

`main` is the one top-level handler: whatever goes wrong, the reason lands in the failure
file (SageMaker shows its first 1024 characters as the job's FailureReason) and the process
exits non-zero.
"""

from __future__ import annotations

import json
import logging
import signal
import traceback
from types import FrameType
from typing import Any

import numpy as np

from . import data, hyperparameters
from .environment import FULLY_REPLICATED, SageMakerEnvironment
from .model import HYPERPARAMETERS, Model

logger = logging.getLogger(__name__)

FAILURE_REASON_LIMIT = 1024


class TrainingStopped(Exception):
    """SageMaker asked the job to stop (StopTrainingJob sends SIGTERM)."""


def accuracy(model: Model, dataset: data.Dataset) -> float:
    return float(np.mean(model.predict(dataset.features) == dataset.labels))


def run(env: SageMakerEnvironment) -> dict[str, float]:
    """Train once; returns the metrics it printed."""
    params = hyperparameters.parse(HYPERPARAMETERS, env.hyperparameters())
    cluster = env.cluster()
    channels = env.channels()
    if "train" not in channels:
        raise data.DataError(f"the job has no 'train' channel (channels given: {', '.join(channels) or 'none'})")
    train_set = data.read_channel("train", env.channel_dir("train"))
    logger.info(
        "training on %d rows, %d features, hyperparameters %s, host %s of %s",
        len(train_set.labels),
        train_set.num_features,
        params,
        cluster.current_host,
        ", ".join(cluster.hosts),
    )
    model = Model.fit(
        train_set.features,
        train_set.labels,
        params,
        num_gpus=env.num_gpus,
        checkpoint_dir=env.checkpoint_dir_if_enabled,
        cluster=cluster,
        sharded=env.distribution("train") != FULLY_REPLICATED,
    )
    if not cluster.is_master:
        # Every host holds the same trained weights; the master alone reports and writes them.
        logger.info("training finished on %s; the master %s writes the model", cluster.current_host, cluster.master)
        return {}

    metrics = {"train:accuracy": accuracy(model, train_set)}
    if "validation" in channels:
        validation_set = data.read_channel("validation", env.channel_dir("validation"))
        if validation_set.num_features != train_set.num_features:
            raise data.DataError(
                f"channel 'validation' has {validation_set.num_features} features, "
                f"channel 'train' has {train_set.num_features}"
            )
        metrics["validation:accuracy"] = accuracy(model, validation_set)
    for name, value in metrics.items():
        # One line per metric, in the form the launcher's metric definitions match.
        print(f"{name}={value:.6f}", flush=True)

    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    (env.output_data_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    saved = model.save(env.model_dir)
    logger.info("model written to %s", saved)
    return metrics


def failure_reason(error: BaseException) -> str:
    """The most useful part first, cut to what SageMaker keeps."""
    reason = f"{type(error).__name__}: {error}"
    if len(reason) > FAILURE_REASON_LIMIT:
        reason = reason[: FAILURE_REASON_LIMIT - 3] + "..."
    return reason


def _stop(signum: int, frame: FrameType | None) -> Any:
    raise TrainingStopped(f"stopped by signal {signal.Signals(signum).name} before training finished")


def main(env: SageMakerEnvironment | None = None) -> int:
    env = env or SageMakerEnvironment.from_environ()
    env.failure_file.unlink(missing_ok=True)  # a retry in the same tree must not inherit an old reason
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        run(env)
    except Exception as error:
        traceback.print_exc()
        reason = failure_reason(error)
        env.output_dir.mkdir(parents=True, exist_ok=True)
        env.failure_file.write_text(reason, encoding="utf-8")
        logger.error("training failed: %s", reason)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
