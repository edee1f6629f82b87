"""The PyTorch part of the project: a small multi-layer perceptron classifier.

This is the only module that knows the framework. Everything else talks to `Model` and
`HYPERPARAMETERS`, so changing the network means changing this file (and its tests).
Artifacts and checkpoints are plain state dicts, loaded with `weights_only=True`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .environment import Cluster
from .hyperparameters import Hyperparameter

logger = logging.getLogger(__name__)

ARTIFACT_NAME = "model.pt"
CHECKPOINT_NAME = "checkpoint.pt"

HYPERPARAMETERS = (
    Hyperparameter("epochs", int, 60, "Passes over the training data.", minimum=1),
    Hyperparameter("batch_size", int, 16, "Rows per gradient step.", minimum=1),
    Hyperparameter("learning_rate", float, 0.01, "Adam's step size.", minimum=0.0),
    Hyperparameter("hidden_units", int, 32, "Width of each of the two hidden layers.", minimum=1),
    Hyperparameter("seed", int, 0, "Seed for initial weights and shuffling, for repeatable runs.", minimum=0),
)


class Network(nn.Module):
    """Standardises its input, then two hidden ReLU layers; outputs one logit per class."""

    def __init__(self, num_features: int, num_classes: int, hidden_units: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.layers = nn.Sequential(
            nn.Linear(num_features, hidden_units),
            nn.ReLU(),
            nn.Linear(hidden_units, hidden_units),
            nn.ReLU(),
            nn.Linear(hidden_units, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers((features - self.mean) / self.scale)


def choose_device(num_gpus: int) -> torch.device:
    """The GPU when SageMaker gave the job one and CUDA can use it, else the CPU."""
    return torch.device("cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu")


def _save_atomically(payload: dict[str, Any], target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    torch.save(payload, partial)
    os.replace(partial, target)
    return target


class Model:
    def __init__(self, network: Network, config: dict[str, int]) -> None:
        self.network = network.eval()
        self.config = config
        self.device = next(network.parameters()).device

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
        device = choose_device(num_gpus)
        torch.manual_seed(params["seed"])
        config = {
            "num_features": int(features.shape[1]),
            "num_classes": int(labels.max()) + 1,
            "hidden_units": params["hidden_units"],
        }
        network = Network(**config)
        network.mean.copy_(torch.as_tensor(features.mean(axis=0), dtype=torch.float32))
        network.scale.copy_(torch.as_tensor(features.std(axis=0) + 1e-6, dtype=torch.float32))
        network.to(device)
        optimizer = torch.optim.Adam(network.parameters(), lr=params["learning_rate"])
        first_epoch = _resume(network, optimizer, checkpoint_dir, device)

        inputs = torch.as_tensor(features, dtype=torch.float32, device=device)
        targets = torch.as_tensor(labels, dtype=torch.long, device=device)
        shuffler = torch.Generator().manual_seed(params["seed"])
        loss_fn = nn.CrossEntropyLoss()
        network.train()
        for epoch in range(first_epoch, params["epochs"]):
            shuffler.manual_seed(params["seed"] + epoch)  # the same order whether resumed or not
            order = torch.randperm(len(inputs), generator=shuffler).to(device)
            total = 0.0
            for batch in order.split(params["batch_size"]):
                optimizer.zero_grad()
                loss = loss_fn(network(inputs[batch]), targets[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            logger.info("epoch %d/%d loss %.4f", epoch + 1, params["epochs"], total / len(inputs))
            if checkpoint_dir is not None:
                state = {"epoch": epoch + 1, "network": network.state_dict(), "optimizer": optimizer.state_dict()}
                _save_atomically(state, checkpoint_dir / CHECKPOINT_NAME)
        if checkpoint_dir is not None:
            # Finished: the next job in this tree starts afresh instead of resuming a completed run.
            (checkpoint_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
        return cls(network, config)

    @property
    def num_features(self) -> int:
        return self.config["num_features"]

    def predict(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self.network(torch.as_tensor(features, dtype=torch.float32, device=self.device))
        return logits.argmax(dim=1).cpu().numpy()

    def save(self, model_dir: Path) -> Path:
        """Write the artifact atomically: a reader never sees half a model."""
        state = {name: tensor.cpu() for name, tensor in self.network.state_dict().items()}
        return _save_atomically({"config": self.config, "state_dict": state}, model_dir / ARTIFACT_NAME)

    @classmethod
    def load(cls, model_dir: Path, num_gpus: int = 0) -> Model:
        payload = torch.load(model_dir / ARTIFACT_NAME, map_location="cpu", weights_only=True)
        network = Network(**payload["config"])
        network.load_state_dict(payload["state_dict"])
        return cls(network.to(choose_device(num_gpus)), payload["config"])


def _resume(
    network: Network, optimizer: torch.optim.Optimizer, checkpoint_dir: Path | None, device: torch.device
) -> int:
    """Load the checkpoint a stopped job left behind; returns the epoch to continue from."""
    path = None if checkpoint_dir is None else checkpoint_dir / CHECKPOINT_NAME
    if path is None or not path.exists():
        return 0
    state = torch.load(path, map_location=device, weights_only=True)
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resuming from %s after epoch %d", path, state["epoch"])
    return int(state["epoch"])
