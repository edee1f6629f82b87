"""The TensorFlow / Keras part of the project: a small multi-layer perceptron classifier.

This is the only module that knows the framework. Everything else talks to `Model` and
`HYPERPARAMETERS`. The artifact is a SavedModel under a numeric version folder (`model/1/`),
which is what TensorFlow Serving loads and what `Model.load` reads back.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .environment import Cluster
from .hyperparameters import Hyperparameter

MODEL_VERSION = "1"

HYPERPARAMETERS = (
    Hyperparameter("epochs", int, 60, "Passes over the training data.", minimum=1),
    Hyperparameter("batch_size", int, 16, "Rows per gradient step.", minimum=1),
    Hyperparameter("learning_rate", float, 0.01, "Adam's step size.", minimum=0.0),
    Hyperparameter("hidden_units", int, 32, "Width of each of the two hidden layers.", minimum=1),
    Hyperparameter("seed", int, 0, "Seed for initial weights and shuffling, for repeatable runs.", minimum=0),
)


def build_network(features: np.ndarray, num_classes: int, hidden_units: int) -> keras.Model:
    """Standardises its input (statistics learnt from the training rows), then two hidden ReLU layers."""
    normalise = keras.layers.Normalization()
    normalise.adapt(features)
    return keras.Sequential(
        [
            keras.Input(shape=(features.shape[1],), dtype="float32"),
            normalise,
            keras.layers.Dense(hidden_units, activation="relu"),
            keras.layers.Dense(hidden_units, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


class StopSafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, with each backup written whole before a SIGTERM is acted on.

    StopTrainingJob sends SIGTERM, and the training job's handler raises on it; raised in the
    middle of a save, it would leave a backup that the next job cannot load.
    """

    def _save_model(self) -> None:
        received: list[int] = []
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
        try:
            super()._save_model()
        finally:
            signal.signal(signal.SIGTERM, previous)
        if received:
            signal.raise_signal(signal.SIGTERM)


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
        # TensorFlow places work on a visible GPU by itself; num_gpus needs no handling here.
        keras.utils.set_random_seed(params["seed"])
        network = build_network(features.astype("float32"), int(labels.max()) + 1, params["hidden_units"])
        network.compile(
            optimizer=keras.optimizers.Adam(learning_rate=params["learning_rate"]),
            loss="sparse_categorical_crossentropy",
        )
        # Backs up after every epoch, resumes a stopped job from its last epoch, and deletes the
        # backup once training completes.
        callbacks = [] if checkpoint_dir is None else [StopSafeBackupAndRestore(str(checkpoint_dir / "keras"))]
        network.fit(
            features.astype("float32"),
            labels,
            epochs=params["epochs"],
            batch_size=params["batch_size"],
            shuffle=True,
            verbose=2,
            callbacks=callbacks,
        )
        return cls(network, int(features.shape[1]), network)

    @property
    def num_features(self) -> int:
        return self._num_features

    def predict(self, features: np.ndarray) -> np.ndarray:
        probabilities = self._forward(tf.constant(features, dtype=tf.float32))
        return np.argmax(probabilities.numpy(), axis=1)

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
