"""The training job: contract -> data -> model -> artifacts.

`main` is the one top-level handler: whatever goes wrong, the reason lands in the failure
file (SageMaker shows its first 1024 characters as the job's FailureReason) and the process
exits non-zero. The model and its schema are written only once training and evaluation succeeded.
"""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from .. import data, model
from . import hyperparameters, metrics
from .channels import load_channel
from .contract import TrainingJob, check_definitions
from .environment import FULLY_REPLICATED, SageMakerEnvironment
from .framework import BUILDERS, RUNTIME_HYPERPARAMETERS, FrameworkModel
from .tables import DataError, Dataset, Schema, class_limit_for

logger = logging.getLogger(__name__)

FAILURE_REASON_LIMIT = 1024
# Rows answered at once when scoring a channel: bounds the memory the model's activations take.
EVALUATION_ROWS = 65_536


class TrainingStopped(Exception):
    """SageMaker asked the job to stop (StopTrainingJob sends SIGTERM)."""


def evaluate(trained: FrameworkModel, dataset: Dataset, channel: str) -> dict[str, float]:
    starts = range(0, len(dataset), EVALUATION_ROWS)
    # Each block copied into memory (np.array): a memory-mapped channel is read-only, and small blocks are cheap.
    blocks = (np.array(dataset.features[start : start + EVALUATION_ROWS]) for start in starts)
    predicted = np.concatenate([trained.predict(block) for block in blocks])
    scores = metrics.evaluate(model.TASK, predicted, dataset.labels)
    return {f"{channel}:{name}": value for name, value in scores.items()}


def run(env: SageMakerEnvironment) -> dict[str, float]:
    """Train once; returns the metrics it printed."""
    env.temporary_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="channels-", dir=env.temporary_dir) as scratch:
        return _run(env, Path(scratch))  # memory-mapped channels live in `scratch` until the job ends


def _run(env: SageMakerEnvironment, scratch: Path) -> dict[str, float]:
    check_definitions(model, data, BUILDERS, RUNTIME_HYPERPARAMETERS)
    schema = Schema.from_definitions(model, data)
    given = env.hyperparameters()
    params = hyperparameters.parse(model.HYPERPARAMETERS, given)
    if ignored := hyperparameters.reserved_given(model.HYPERPARAMETERS, given):
        logger.info("left out SageMaker's own hyperparameter(s): %s", ", ".join(ignored))
    cluster = env.cluster()
    channels = env.channels()
    if "train" not in channels:
        raise DataError(f"the job has no 'train' channel (channels given: {', '.join(channels) or 'none'})")
    sharded = env.distribution("train") != FULLY_REPLICATED
    # A sharded host holds about 1/N of the rows: the class indices are bounded by all hosts' rows.
    train_set = load_channel(env, "train", schema, scratch, hosts=cluster.size if sharded else 1)
    # Read before training, so that a bad validation file fails the job before hours of work.
    validation_set = None
    if "validation" in channels:
        # The classes are the train channel's: its bound holds for validation too, however few rows it has.
        limit = class_limit_for(len(train_set), cluster.size if sharded else 1)
        validation_set = load_channel(env, "validation", schema, scratch, class_limit=limit)
    logger.info(
        "training a %s model on %d rows, %d features, hyperparameters %s, host %s of %s",
        model.TASK,
        len(train_set),
        len(schema.features),
        params,
        cluster.current_host,
        ", ".join(cluster.hosts),
    )
    job = TrainingJob(
        cluster=cluster,
        checkpoint_dir=env.checkpoint_dir_if_enabled,
        num_gpus=env.num_gpus,
        sharded=sharded,
        tuning=hyperparameters.TUNING_MARK in given,
    )
    trained = FrameworkModel.fit(train_set.features, train_set.labels, params, job)
    if not cluster.is_master:
        # Every host holds the same trained weights; the master alone reports and writes them.
        logger.info("training finished on %s; the master %s writes the model", cluster.current_host, cluster.master)
        return {}

    scores = evaluate(trained, train_set, "train")
    if validation_set is not None:
        scores |= evaluate(trained, validation_set, "validation")
    for name, value in scores.items():
        # One line per metric, in the form the launcher's metric definitions match.
        channel, metric = name.split(":")
        print(metrics.metric_line(channel, metric, value), flush=True)

    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    (env.output_data_dir / "metrics.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    saved = trained.save(env.model_dir)
    schema.save(env.model_dir)
    logger.info("model written to %s", saved)
    return scores


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
