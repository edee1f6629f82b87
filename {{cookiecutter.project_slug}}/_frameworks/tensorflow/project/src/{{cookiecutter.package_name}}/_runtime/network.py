"""The TensorFlow side of framework.py: the training loop over the hosts, the export, the SavedModel loaded back.

Training runs under `tf.distribute.MultiWorkerMirroredStrategy`, one worker per host of the job;
a single host is a world of one. The loop is our own (`strategy.run` per step) rather than
Keras's `fit`, which does not train dependably under that strategy across hosts. Only training,
and serving a model LiteRT cannot run, import this module: TensorFlow takes seconds to import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .. import model
from .batches import BatchPlan, step_inputs
from .checkpoints import EpochCheckpoints
from .contract import DefinitionError, TrainingJob
from .distributed import from_every_host, join_cluster, normalisation_statistics, peers_watched
from .hyperparameters import checkpoint_key
from .metrics import EpochProgress
from .tables import column_moments

logger = logging.getLogger(__name__)


def is_classification() -> bool:
    return model.TASK == "classification"


@dataclass(frozen=True)
class Standardisation:
    """Statistics over every host's rows: of the features, and of the target for regression."""

    mean: np.ndarray
    variance: np.ndarray
    target_mean: float = 0.0
    target_std: float = 1.0

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """What the network learns: class indices, or the standardised target."""
        if is_classification():
            return labels
        return ((labels - self.target_mean) / self.target_std).astype("float32")


def standardisation(strategy: tf.distribute.Strategy, features: np.ndarray, labels: np.ndarray) -> Standardisation:
    if is_classification():
        return Standardisation(*normalisation_statistics(strategy, *column_moments(features)))
    # One collective for both: the target is one more column.
    mean, variance = normalisation_statistics(strategy, *column_moments(features, labels))
    width = features.shape[1]
    target_std = float(np.sqrt(variance[width])) or 1.0  # a constant target: nothing to scale
    return Standardisation(mean[:width], variance[:width], float(mean[width]), target_std)


def wrapped_network(
    num_features: int, num_outputs: int, params: Mapping[str, Any], stats: Standardisation
) -> keras.Model:
    """model.py's network behind a layer that standardises its inputs with every host's statistics."""
    network = model.build_network(num_features, num_outputs, dict(params))
    if not isinstance(network, keras.Layer):
        raise DefinitionError(f"model.py's build_network must return a Keras model, not {type(network).__name__}")
    wrapped = keras.Sequential(
        [
            keras.Input(shape=(num_features,), dtype="float32"),
            keras.layers.Normalization(mean=stats.mean, variance=stats.variance),
            network,
        ]
    )
    shape = tuple(wrapped.output_shape[1:])
    if shape != (num_outputs,):
        what = "one logit per class" if is_classification() else "one value"
        raise DefinitionError(
            f"model.py's build_network must map {num_features} features to {num_outputs} output(s) per row "
            f"({what}), but its network gives shape {shape}"
        )
    return wrapped


def built_optimizer(params: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    optimizer = model.build_optimizer(dict(params))
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise DefinitionError(
            f"model.py's build_optimizer must return a Keras optimizer, not {type(optimizer).__name__}"
        )
    return optimizer


def row_losses(targets: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """Cross-entropy on logits (classification) or squared error on the standardised target (regression)."""
    if is_classification():
        return keras.losses.sparse_categorical_crossentropy(targets, outputs, from_logits=True)
    return tf.square(outputs[:, 0] - targets)


def make_train_step(
    strategy: tf.distribute.Strategy, network: keras.Model, optimizer: keras.optimizers.Optimizer
) -> Callable[..., tf.Tensor]:
    def replica_step(features: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        # Rows in this step over every replica: each replica's loss is its share of the global mean,
        # and the optimizer sums the replicas' gradients, giving the gradient one host would compute.
        rows = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(weights))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(row_losses(targets, network(features, training=True)) * weights) / rows
        gradients = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(gradients, network.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(features: Any, targets: Any, weights: Any) -> tf.Tensor:
        losses = strategy.run(replica_step, args=(features, targets, weights))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


def agreed_sizes(strategy: tf.distribute.Strategy, plan: BatchPlan, labels: np.ndarray) -> tuple[int, int, int]:
    """What every host must agree on, whatever rows it holds: how many outputs there are and steps to take;
    and the rows an epoch takes over all hosts (each host's own when sharded, else the rows every host holds)."""
    outputs = labels.max() + 1 if is_classification() else 1
    local = np.array([outputs, plan.local_steps(len(labels)), len(labels)])
    hosts = from_every_host(strategy, local)
    num_outputs, steps = (int(value) for value in hosts[:, :2].max(axis=0))
    epoch_rows = int(hosts[:, 2].sum()) if plan.sharded else len(labels)
    return num_outputs, steps, epoch_rows


def train_network(
    strategy: tf.distribute.Strategy,
    job: TrainingJob,
    features: np.ndarray,
    labels: np.ndarray,
    params: Mapping[str, Any],
) -> tuple[keras.Model, Standardisation]:
    local_replicas = len(strategy.extended.worker_devices)
    plan = BatchPlan(
        params["batch_size"],
        job.cluster.rank,
        local_replicas,
        strategy.num_replicas_in_sync,
        job.sharded,
        params["seed"],
    )
    num_outputs, steps, epoch_rows = agreed_sizes(strategy, plan, labels)
    stats = standardisation(strategy, features, labels)
    with strategy.scope():
        network = wrapped_network(features.shape[1], num_outputs, params, stats)
        optimizer = built_optimizer(params)
        optimizer.build(network.trainable_variables)
        epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoints = EpochCheckpoints(
        job.checkpoint_dir,
        job.cluster,
        checkpoint_key(params, with_epochs=job.tuning),
        network=network,
        optimizer=optimizer,
        epochs=epochs_done,
    )
    checkpoints.restore()
    resumed = from_every_host(strategy, np.array([int(epochs_done.numpy())]))
    if resumed.min() != resumed.max():
        raise RuntimeError(f"the hosts resumed from different checkpoints (epochs {resumed.ravel().tolist()})")
    if int(resumed.max()) > params["epochs"]:
        raise ValueError(
            f"the checkpoint holds {int(resumed.max())} epochs, more than this job's epochs={params['epochs']}: "
            "ask for at least that many, or give the job another checkpoint location"
        )

    train_step = make_train_step(strategy, network, optimizer)
    targets = stats.targets(labels)
    epochs = params["epochs"]
    progress = EpochProgress(int(epochs_done.numpy()), epochs, job.cluster.current_host)
    for epoch in range(int(epochs_done.numpy()), epochs):
        losses = [
            float(train_step(*step_inputs(strategy, plan, features, targets, parts)))
            for parts in plan.epoch(len(labels), epoch, steps)
        ]
        # The loss of a regression is in standardised units: 1.0 is as good as answering the mean.
        progress.epoch_done(epoch + 1, float(np.mean(losses)), epoch_rows)
        epochs_done.assign(epoch + 1)
        checkpoints.save()
    checkpoints.remove()
    return network, stats


def serving_function(network: keras.Model, stats: Standardisation) -> Callable[[tf.Tensor], tf.Tensor]:
    """Rows of raw features -> what TensorFlow Serving answers: class probabilities, or the target's values."""
    spec = tf.TensorSpec((None, network.input_shape[-1]), tf.float32)
    if is_classification():
        return tf.function(lambda rows: tf.nn.softmax(network(rows, training=False)), input_signature=[spec])
    mean, std = tf.constant(stats.target_mean, tf.float32), tf.constant(stats.target_std, tf.float32)
    return tf.function(lambda rows: network(rows, training=False)[:, 0] * std + mean, input_signature=[spec])


def fit(
    features: np.ndarray, labels: np.ndarray, params: Mapping[str, Any], job: TrainingJob
) -> tuple[keras.Model, Standardisation, Callable[[tf.Tensor], tf.Tensor]]:
    """The trained network, the statistics it standardises with, and its serving function."""
    # The strategy makes a replica of every visible GPU by itself; job.num_gpus needs no handling here.
    cluster = job.cluster
    keras.utils.set_random_seed(params["seed"])
    with peers_watched(cluster, f"while waiting {cluster.timeout_seconds:g} s for every host to start"):
        strategy = join_cluster(cluster)
    with peers_watched(cluster, "during training"):
        # The rows stay as read, in memory or memory-mapped: each step converts only its own rows
        # to float32, and the statistics come from the same values, so both give one model.
        network, stats = train_network(strategy, job, features, labels, params)
    return network, stats, serving_function(network, stats)


def answers(serve: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """A serving function as numpy rows (float32) -> numpy answers."""
    return lambda rows: serve(tf.constant(rows, dtype=tf.float32)).numpy()


def export_savedmodel(network: keras.Model, serve: Callable[[tf.Tensor], tf.Tensor], folder: Path) -> None:
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint("serve", serve)  # the first endpoint is also TF Serving's serving_default
    archive.write_out(str(folder), verbose=False)


def litert_model(savedmodel: Path, probe: np.ndarray, expected: np.ndarray) -> bytes | None:
    """The SavedModel converted for LiteRT, if LiteRT's own operations run it and it answers as TensorFlow does.

    None otherwise (a network using an operation LiteRT lacks), with the reason logged: the server
    then answers with TensorFlow, which starts slower.
    """
    from .framework import LiteRTNetwork

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel), signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converted = converter.convert()
        answered = LiteRTNetwork(converted)(probe)
    except Exception as error:  # the converter raises several types, none of them a training failure
        logger.warning("LiteRT cannot run this network (%s): the server will answer with TensorFlow", error)
        return None
    if answered.shape != expected.shape or not np.allclose(answered, expected, rtol=1e-4, atol=1e-5):
        difference = np.max(np.abs(answered - expected)) if answered.shape == expected.shape else answered.shape
        logger.warning("LiteRT answers differently (%s): the server will answer with TensorFlow", difference)
        return None
    return converted


def load_savedmodel(version: Path) -> tuple[Callable[[np.ndarray], np.ndarray], int, int | None, Any]:
    """A SavedModel's serving function, its number of features, of classes (None: regression), and its owner."""
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    (output,) = signature.structured_outputs.values()
    # The signature says the task: probabilities (n, K) for a classifier, values (n,) for a regression.
    num_classes = int(output.shape[-1]) if output.shape.rank == 2 else None
    # The traced graph itself: calling the restored function instead matches its arguments against
    # every signature it was saved with on each call, which takes longer than the network's maths.
    serve = loaded.serve.get_concrete_function(tf.TensorSpec(spec.shape, tf.float32))
    return answers(serve), int(spec.shape[-1]), num_classes, loaded
