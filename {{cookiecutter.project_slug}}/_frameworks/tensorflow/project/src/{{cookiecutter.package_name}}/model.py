"""The TensorFlow / Keras part of the project: a small multi-layer perceptron classifier.

This is the only module that knows the framework. Everything else talks to `Model` and
`HYPERPARAMETERS`. The artifact is a SavedModel under a numeric version folder (`model/1/`),
which is what TensorFlow Serving loads and what `Model.load` reads back.

Training runs under `tf.distribute.MultiWorkerMirroredStrategy`, one worker per host of the job;
a single host is a world of one. The loop is our own (`strategy.run` per step) rather than
Keras's `fit`, which does not train dependably under that strategy across hosts.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

from .environment import Cluster
from .hyperparameters import Hyperparameter

MODEL_VERSION = "1"
# Inside the job's checkpoint folder. Only the master writes there: SageMaker uploads every host's
# checkpoint folder to the same S3 prefix, and copies that prefix to every host of the next job.
CHECKPOINT_FOLDER = "training"

HYPERPARAMETERS = (
    Hyperparameter("epochs", int, 60, "Passes over the training data.", minimum=1),
    Hyperparameter("batch_size", int, 16, "Rows per gradient step, all hosts together.", minimum=1),
    Hyperparameter("learning_rate", float, 0.01, "Adam's step size.", minimum=0.0),
    Hyperparameter("hidden_units", int, 32, "Width of each of the two hidden layers.", minimum=1),
    Hyperparameter("seed", int, 0, "Seed for initial weights and shuffling, for repeatable runs.", minimum=0),
)


class LostPeerError(RuntimeError):
    """Another host of the job stopped answering during training."""


def tf_config(cluster: Cluster) -> dict[str, Any]:
    """The cluster as TF_CONFIG describes one: a worker per host in rank order, this host being task `rank`."""
    workers = [f"{host}:{port}" for host, port in map(cluster.address, range(cluster.size))]
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": cluster.rank}}


def join_cluster(cluster: Cluster) -> tf.distribute.MultiWorkerMirroredStrategy:
    """The strategy, once every host has built it too; fails if one has not within the cluster's timeout."""
    config = tf_config(cluster)
    # A world of one needs no server: no port to take, and a process can train more than once.
    workers = tf.train.ClusterSpec(config["cluster"] if cluster.size > 1 else {})
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        workers,
        task_type=config["task"]["type"],
        task_id=config["task"]["index"],
        num_accelerators={"GPU": len(tf.config.list_physical_devices("GPU"))},  # a replica per GPU
        rpc_layer="grpc",
    )
    if cluster.size > 1:
        bound_the_wait_for_hosts(cluster.timeout_seconds)
    # A collective operation fails after the timeout instead of waiting forever for a host that is gone.
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=cluster.timeout_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)


def bound_the_wait_for_hosts(timeout_seconds: float) -> None:
    """The coordination service the strategy would set up, but waiting `timeout_seconds` for hosts to join.

    Left to the strategy, a host waits an hour for a peer that never starts. No public API sets
    the bound; the strategy keeps a configuration it finds in place.
    """
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader="/job:worker/replica:0/task:0",
        cluster_register_timeout_in_ms=int(timeout_seconds * 1000),
    )
    # Registration then ends with an error at the timeout, rather than waiting in an unbounded step.
    context.context().coordination_service.cluster_register_with_barrier = True


def lost_peer_error(cluster: Cluster, error: tf.errors.OpError, when: str) -> LostPeerError:
    """A failure that names the hosts, not TensorFlow's task names, and leaves out the Python stack."""
    reason = error.message.strip().split("\n\n")[-1]
    reason = re.sub(r"/job:worker/(?:replica:0/)?task:(\d+)", lambda task: cluster.hosts[int(task[1])], reason)
    peers = ", ".join(cluster.peers)
    which = f"host {peers}" if len(cluster.peers) == 1 else f"one of the hosts {peers}"
    return LostPeerError(f"lost contact with {which} {when}: {reason}")


def from_every_host(strategy: tf.distribute.Strategy, values: np.ndarray) -> np.ndarray:
    """Every host's `values`, one row per host in rank order; the same array on every host."""
    local_replicas = len(strategy.extended.worker_devices)
    value = tf.constant(values[np.newaxis])

    def gather() -> tf.Tensor:
        return tf.distribute.get_replica_context().all_gather(value, axis=0)

    gathered = tf.function(lambda: strategy.run(gather))()
    rows = strategy.experimental_local_results(gathered)[0].numpy()
    return rows[::local_replicas]  # each host's replicas all sent the same row


def normalisation_statistics(strategy: tf.distribute.Strategy, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of every host's rows together (the same as one host's when the rows are replicated)."""
    rows = features.astype(np.float64)
    local = np.concatenate([[len(rows)], rows.mean(axis=0), rows.var(axis=0)])
    hosts = from_every_host(strategy, local)
    counts, means, variances = hosts[:, :1], hosts[:, 1 : 1 + features.shape[1]], hosts[:, 1 + features.shape[1] :]
    mean = (counts * means).sum(axis=0) / counts.sum()
    variance = (counts * (variances + (means - mean) ** 2)).sum(axis=0) / counts.sum()
    return mean, variance


def build_network(
    num_features: int, num_classes: int, hidden_units: int, mean: np.ndarray, variance: np.ndarray
) -> keras.Model:
    """Standardises its input with the given statistics, then two hidden ReLU layers."""
    return keras.Sequential(
        [
            keras.Input(shape=(num_features,), dtype="float32"),
            keras.layers.Normalization(mean=mean, variance=variance),
            keras.layers.Dense(hidden_units, activation="relu"),
            keras.layers.Dense(hidden_units, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


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
    strategy: tf.distribute.Strategy, plan: BatchPlan, features: np.ndarray, labels: np.ndarray, parts: list[np.ndarray]
) -> Any:
    """(features, labels, weights) for each local replica: its part of the step's rows, padded to one
    shape for every step (so the step is traced once) with rows that weigh nothing."""

    def for_replica(value_context: tf.distribute.experimental.ValueContext) -> tuple[np.ndarray, ...]:
        rows = parts[value_context.replica_id_in_sync_group % plan.local_replicas]
        weights = np.zeros(plan.replica_capacity, dtype="float32")
        weights[: len(rows)] = 1.0
        return padded(features[rows], plan.replica_capacity), padded(labels[rows], plan.replica_capacity), weights

    return strategy.experimental_distribute_values_from_function(for_replica)


def padded(values: np.ndarray, length: int) -> np.ndarray:
    return np.concatenate([values, np.zeros((length - len(values), *values.shape[1:]), dtype=values.dtype)])


def make_train_step(
    strategy: tf.distribute.Strategy, network: keras.Model, optimizer: keras.optimizers.Optimizer
) -> Callable[..., tf.Tensor]:
    def replica_step(features: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        # Rows in this step over every replica: each replica's loss is its share of the global mean,
        # and the optimizer sums the replicas' gradients, giving the gradient one host would compute.
        rows = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(weights))
        with tf.GradientTape() as tape:
            losses = keras.losses.sparse_categorical_crossentropy(labels, network(features, training=True))
            loss = tf.reduce_sum(losses * weights) / rows
        gradients = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(gradients, network.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(features: Any, labels: Any, weights: Any) -> tf.Tensor:
        losses = strategy.run(replica_step, args=(features, labels, weights))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


@contextlib.contextmanager
def sigterm_held() -> Iterator[None]:
    """Acts on a SIGTERM only once the block is done.

    StopTrainingJob sends SIGTERM, and the training job's handler raises on it; raised in the
    middle of a save, it would leave a checkpoint that the next job cannot load.
    """
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        signal.raise_signal(signal.SIGTERM)


class EpochCheckpoints:
    """A checkpoint after every epoch, so that a stopped job resumes; removed once training completes.

    Every host saves (TensorFlow's rule for multi-worker training), but only the master into the
    job's checkpoint folder; the others write to a scratch folder of their own.
    """

    def __init__(self, checkpoint_dir: Path | None, cluster: Cluster, **state: Any) -> None:
        self._checkpoint = tf.train.Checkpoint(**state)
        self._folder = None if checkpoint_dir is None else checkpoint_dir / CHECKPOINT_FOLDER
        self._manager = None
        if self._folder is not None:
            target = self._folder if cluster.is_master else Path(tempfile.mkdtemp(prefix="checkpoints-"))
            self._manager = tf.train.CheckpointManager(self._checkpoint, str(target), max_to_keep=1)

    def restore(self) -> None:
        """The last checkpoint a stopped job left, if any: every host reads its copy of the master's."""
        latest = None if self._folder is None else tf.train.latest_checkpoint(str(self._folder))
        if latest:
            self._checkpoint.restore(latest).assert_existing_objects_matched()

    def save(self) -> None:
        if self._manager is not None:
            with sigterm_held():
                self._manager.save()

    def remove(self) -> None:
        if self._manager is not None:
            shutil.rmtree(self._manager.directory, ignore_errors=True)


def train_network(
    strategy: tf.distribute.Strategy,
    cluster: Cluster,
    features: np.ndarray,
    labels: np.ndarray,
    params: dict[str, Any],
    checkpoint_dir: Path | None,
    sharded: bool,
) -> keras.Model:
    plan = BatchPlan(
        params["batch_size"],
        cluster.rank,
        len(strategy.extended.worker_devices),
        strategy.num_replicas_in_sync,
        sharded,
        params["seed"],
    )
    # What every host must agree on, whatever rows it holds: how many classes there are and steps to take.
    local = np.array([labels.max() + 1, plan.local_steps(len(labels))])
    num_classes, steps = (int(value) for value in from_every_host(strategy, local).max(axis=0))
    mean, variance = normalisation_statistics(strategy, features)
    with strategy.scope():
        network = build_network(features.shape[1], num_classes, params["hidden_units"], mean, variance)
        optimizer = keras.optimizers.Adam(learning_rate=params["learning_rate"])
        optimizer.build(network.trainable_variables)
        epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoints = EpochCheckpoints(checkpoint_dir, cluster, network=network, optimizer=optimizer, epochs=epochs_done)
    checkpoints.restore()
    resumed = from_every_host(strategy, np.array([int(epochs_done.numpy())]))
    if resumed.min() != resumed.max():
        raise RuntimeError(f"the hosts resumed from different checkpoints (epochs {resumed.ravel().tolist()})")

    train_step = make_train_step(strategy, network, optimizer)
    epochs = params["epochs"]
    for epoch in range(int(epochs_done.numpy()), epochs):
        losses = [
            float(train_step(*step_inputs(strategy, plan, features, labels, parts)))
            for parts in plan.epoch(len(labels), epoch, steps)
        ]
        print(f"Epoch {epoch + 1}/{epochs} - loss: {np.mean(losses):.4f}", flush=True)
        epochs_done.assign(epoch + 1)
        checkpoints.save()
    checkpoints.remove()
    return network


class Model:
    def __init__(self, forward: Callable[[tf.Tensor], Any], num_features: int, owner: Any) -> None:
        self._forward = forward  # class probabilities for a batch of rows
        self._num_features = num_features
        # What owns the variables: the Keras model after training (exportable), or the loaded
        # SavedModel (kept referenced, or TensorFlow frees the variables `forward` reads).
        self._owner = owner

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
        # The strategy makes a replica of every visible GPU by itself; num_gpus needs no handling here.
        cluster = cluster or Cluster.single_host()
        keras.utils.set_random_seed(params["seed"])
        try:
            strategy = join_cluster(cluster)
        except tf.errors.OpError as error:
            waited = f"while waiting {cluster.timeout_seconds:g} s for every host to start"
            raise lost_peer_error(cluster, error, waited) from error
        try:
            network = train_network(
                strategy, cluster, features.astype("float32"), labels, params, checkpoint_dir, sharded
            )
        except tf.errors.OpError as error:
            if not cluster.peers:
                raise
            raise lost_peer_error(cluster, error, "during training") from error
        return cls(network, int(features.shape[1]), network)

    @property
    def num_features(self) -> int:
        return self._num_features

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.argmax(self.probabilities(features), axis=1)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return self._forward(tf.constant(features, dtype=tf.float32)).numpy()

    def save(self, model_dir: Path) -> Path:
        """Export the SavedModel atomically: a reader never sees half a model."""
        if not isinstance(self._owner, keras.Model):
            raise ValueError("a loaded SavedModel cannot be exported again; train a model to save one")
        model_dir.mkdir(parents=True, exist_ok=True)
        target = model_dir / MODEL_VERSION
        partial = model_dir / f".{MODEL_VERSION}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        self._owner.export(str(partial), verbose=False)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        return target

    @classmethod
    def load(cls, model_dir: Path) -> Model:
        versions = sorted((path for path in model_dir.iterdir() if path.name.isdigit()), key=lambda p: int(p.name))
        if not versions:
            raise FileNotFoundError(f"no SavedModel version folder (e.g. {MODEL_VERSION}/) in {model_dir}")
        loaded = tf.saved_model.load(str(versions[-1]))
        signature = loaded.signatures["serving_default"]
        (spec,) = signature.structured_input_signature[1].values()
        return cls(loaded.serve, int(spec.shape[-1]), loaded)
