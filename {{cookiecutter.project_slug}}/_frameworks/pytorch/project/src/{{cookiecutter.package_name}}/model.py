"""Yours: the model. The template's runtime (`_runtime/`) trains it, checkpoints it, saves it and answers with it.

Change TASK, HYPERPARAMETERS, `build_network` and `build_optimizer` to train another network; the
contract is written down in `_runtime/contract.py`. The runtime standardises the features before
they reach the network, picks the loss from TASK (cross-entropy on logits, or mean squared error),
and spreads training over every host of the job. For regression set TASK = "regression": the
network then outputs one value (the runtime also standardises the target), training prints RMSE
and MAE, and predictions are numbers. The runtime reads epochs, batch_size and seed; keep them.
"""

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ._runtime import Hyperparameter

TASK = "classification"

HYPERPARAMETERS = (
    Hyperparameter("epochs", int, 30, "Passes over the training data.", minimum=1),
    Hyperparameter("batch_size", int, 32, "Rows per gradient step, across all hosts.", minimum=1),
    Hyperparameter("learning_rate", float, 0.002, "Adam's step size.", minimum=1e-5, maximum=1.0),
    Hyperparameter("hidden_units", int, 32, "Width of each of the two hidden layers.", minimum=1, maximum=1024),
    Hyperparameter("seed", int, 0, "Seed for initial weights and shuffling, for repeatable runs.", minimum=0),
)


def build_network(num_features: int, num_outputs: int, params: dict[str, Any]) -> nn.Module:
    """Standardised feature rows in, one logit per class (or one value, for regression) out."""
    hidden = params["hidden_units"]
    return nn.Sequential(
        nn.Linear(num_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_outputs),
    )


def build_optimizer(parameters: Iterable[nn.Parameter], params: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of the network's parameters (the runtime saves and resumes its state)."""
    return torch.optim.Adam(parameters, lr=params["learning_rate"])
