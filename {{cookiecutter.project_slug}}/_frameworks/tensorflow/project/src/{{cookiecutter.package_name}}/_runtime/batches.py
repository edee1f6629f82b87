"""Which rows each replica of each host trains on, step by step, and the padded inputs of a step."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class BatchPlan:
    """Which of this host's rows each of its replicas takes, step by step.

    Replicated data: every host shuffles all rows alike and each replica takes its part of the
    same global batch, so N hosts take the steps one host would. Sharded data: each host batches
    its own rows. Either way every host runs the same number of steps (`steps`, agreed between
    hosts) or the gradient sums would wait forever; a host that runs out of rows sends empty parts.
    """

    batch_size: int  # rows per step over all replicas of all hosts
    rank: int
    local_replicas: int
    replicas: int
    sharded: bool
    seed: int

    @property
    def replica_capacity(self) -> int:
        return math.ceil(self.batch_size / self.replicas)

    @property
    def host_batch_size(self) -> int:
        return self.batch_size if not self.sharded else self.replica_capacity * self.local_replicas

    def local_steps(self, num_rows: int) -> int:
        return math.ceil(num_rows / self.host_batch_size)

    def epoch(self, num_rows: int, epoch: int, steps: int) -> Iterator[list[np.ndarray]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(num_rows)
        for step in range(steps):
            rows = order[step * self.host_batch_size : (step + 1) * self.host_batch_size]
            if self.sharded:
                yield np.array_split(rows, self.local_replicas)
            else:
                mine = slice(self.rank * self.local_replicas, (self.rank + 1) * self.local_replicas)
                yield np.array_split(rows, self.replicas)[mine]


def step_inputs(
    strategy: tf.distribute.Strategy,
    plan: BatchPlan,
    features: np.ndarray,
    targets: np.ndarray,
    parts: list[np.ndarray],
) -> Any:
    """(features, targets, weights) for each local replica: its part of the step's rows, padded to one
    shape for every step (so the step is traced once) with rows that weigh nothing."""

    def for_replica(value_context: tf.distribute.experimental.ValueContext) -> tuple[np.ndarray, ...]:
        rows = parts[value_context.replica_id_in_sync_group % plan.local_replicas]
        weights = np.zeros(plan.replica_capacity, dtype="float32")
        weights[: len(rows)] = 1.0
        inputs = np.asarray(features[rows], dtype=np.float32)  # a memory-mapped channel is read here
        return padded(inputs, plan.replica_capacity), padded(targets[rows], plan.replica_capacity), weights

    return strategy.experimental_distribute_values_from_function(for_replica)


def padded(values: np.ndarray, length: int) -> np.ndarray:
    return np.concatenate([values, np.zeros((length - len(values), *values.shape[1:]), dtype=values.dtype)])
