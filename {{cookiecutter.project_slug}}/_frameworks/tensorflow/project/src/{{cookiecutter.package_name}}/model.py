"""Yours: the model. The template's runtime (`_runtime/`) trains it, on one host or several, saves and exports it.

Change `build_network` for another Keras network, `build_optimizer` for another optimizer, and
HYPERPARAMETERS for the settings a job may pass (keep epochs, batch_size and seed: the runtime reads
them); the contract is written down in `_runtime/contract.py`. The network gets standardised
features and returns logits, one per class; for regression set TASK = "regression" and return one
value per row. The runtime picks the loss, standardises the inputs (and a regression target),
trains, checkpoints and exports a SavedModel that TensorFlow Serving answers with.
"""

from typing import Any

import keras

from ._runtime import Hyperparameter

TASK = "classification"

HYPERPARAMETERS = (
    Hyperparameter("epochs", int, 30, "Passes over the training data.", minimum=1),
    Hyperparameter("batch_size", int, 16, "Rows per gradient step, all hosts together.", minimum=1),
    Hyperparameter("learning_rate", float, 0.001, "Adam's step size.", minimum=1e-5, maximum=1.0),
    Hyperparameter("hidden_units", int, 32, "Width of each of the two hidden layers.", minimum=1, maximum=1024),
    Hyperparameter("seed", int, 0, "Seed for initial weights and shuffling, for repeatable runs.", minimum=0),
)


def build_network(num_features: int, num_outputs: int, params: dict[str, Any]) -> keras.Model:
    """Standardised features -> `num_outputs` logits (or one value): two hidden ReLU layers."""
    return keras.Sequential(
        [
            keras.Input(shape=(num_features,)),
            keras.layers.Dense(params["hidden_units"], activation="relu"),
            keras.layers.Dense(params["hidden_units"], activation="relu"),
            keras.layers.Dense(num_outputs),
        ]
    )


def build_optimizer(params: dict[str, Any]) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=params["learning_rate"])
