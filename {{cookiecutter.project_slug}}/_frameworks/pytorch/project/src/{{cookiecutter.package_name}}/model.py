"""The PyTorch part of the project: a small multi-layer perceptron classifier.

This is the only module that knows the framework. Everything else talks to `Model` and
`HYPERPARAMETERS`, so changing the network means changing this file (and its tests).
Artifacts and checkpoints are plain state dicts, loaded with `weights_only=True`.

Training always runs under torch.distributed, one process per host (gloo on CPU, nccl on GPU),
with DistributedDataParallel: a single host is a world of one, not a separate code path.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from .environment import Cluster
from .hyperparameters import Hyperparameter

logger = logging.getLogger(__name__)

ARTIFACT_NAME = "model.pt"
CHECKPOINT_NAME = "checkpoint.pt"

HYPERPARAMETERS = (
    Hyperparameter("epochs", int, 60, "Passes over the training data.", minimum=1),
    Hyperparameter("batch_size", int, 16, "Rows per gradient step, across all hosts.", minimum=1),
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


class LostPeer(RuntimeError):
    """Another host of the job failed or stopped answering."""


@contextmanager
def process_group(cluster: Cluster, device: torch.device) -> Iterator[None]:
    """torch.distributed across the job's hosts; the master (rank 0) hosts the rendezvous store."""
    timeout = datetime.timedelta(seconds=cluster.timeout_seconds)
    if cluster.size == 1:
        store: dist.Store = dist.HashStore()  # nothing to meet: no port to bind
    else:
        # The interface SageMaker names carries the traffic between hosts (eth0 on its instances).
        os.environ.setdefault("GLOO_SOCKET_IFNAME", cluster.network_interface)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", cluster.network_interface)
        host, port = cluster.address(0)
        try:
            store = dist.TCPStore(host, port, cluster.size, is_master=cluster.is_master, timeout=timeout)
        except dist.DistError as error:
            raise LostPeer(f"hosts {', '.join(cluster.hosts)} did not all meet at {host}:{port}: {error}") from error
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=cluster.rank, world_size=cluster.size, timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _is_transport_error(error: RuntimeError) -> bool:
    message = str(error).lower()
    return isinstance(error, dist.DistError) or "gloo" in message or "nccl" in message


def _all_reduce(values: torch.Tensor, op: dist.ReduceOp.RedOpType, device: torch.device) -> torch.Tensor:
    on_device = values.to(device)
    dist.all_reduce(on_device, op=op)
    return on_device.cpu()


def _global_statistics(features: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[Any, Any, int]:
    """Mean, standard deviation and class count over every host's rows (hosts hold different shards)."""
    table = torch.as_tensor(features, dtype=torch.float64)
    sums = torch.cat([torch.tensor([len(table)], dtype=torch.float64), table.sum(dim=0), (table**2).sum(dim=0)])
    count, total, squares = _all_reduce(sums, dist.ReduceOp.SUM, device).split([1, table.shape[1], table.shape[1]])
    mean = total / count
    std = (squares / count - mean**2).clamp(min=0).sqrt()
    num_classes = _all_reduce(torch.tensor([int(labels.max()) + 1]), dist.ReduceOp.MAX, device)
    return mean, std, int(num_classes.item())


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
        """Train on every host of `cluster` at once; each returns the same weights.

        Not sharded (FullyReplicated: every host holds all rows): host r of N takes every N-th row of
        each epoch's shuffled order, so N hosts together see exactly the batches one host would.
        Sharded (ShardedByS3Key): each host shuffles its own rows. Either way a host's batch is
        batch_size / N rows, so the global batch stays batch_size.
        """
        cluster = cluster or Cluster.single_host()
        device = choose_device(num_gpus)
        with process_group(cluster, device):
            try:
                network, config = _train(features, labels, params, cluster, sharded, device, checkpoint_dir)
            except RuntimeError as error:  # gloo reports a closed or silent peer as a bare RuntimeError
                if cluster.size == 1 or not _is_transport_error(error):
                    raise
                lost = f"lost contact with {', '.join(cluster.peers)} while training on {cluster.current_host}"
                raise LostPeer(f"{lost}: {error}") from error
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


def _train(
    features: np.ndarray,
    labels: np.ndarray,
    params: dict[str, Any],
    cluster: Cluster,
    sharded: bool,
    device: torch.device,
    checkpoint_dir: Path | None,
) -> tuple[Network, dict[str, int]]:
    mean, std, num_classes = _global_statistics(features, labels, device)
    config = {"num_features": features.shape[1], "num_classes": num_classes, "hidden_units": params["hidden_units"]}
    torch.manual_seed(params["seed"])  # the same initial weights on every host
    network = Network(**config)
    network.mean.copy_(mean.float())
    network.scale.copy_(std.float() + 1e-6)
    network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=params["learning_rate"])
    first_epoch = _resume(network, optimizer, checkpoint_dir, device)
    replicas = DistributedDataParallel(network, device_ids=[device.index or 0] if device.type == "cuda" else None)

    inputs = torch.as_tensor(features, dtype=torch.float32, device=device)
    targets = torch.as_tensor(labels, dtype=torch.long, device=device)
    sampler = DistributedSampler(
        inputs,
        num_replicas=1 if sharded else cluster.size,
        rank=0 if sharded else cluster.rank,
        shuffle=True,
        seed=params["seed"],
    )
    batch_size = max(1, params["batch_size"] // cluster.size)
    # Every host must take the same number of steps, or the gradient exchange waits forever.
    local_steps = torch.tensor([-(-len(sampler) // batch_size)])
    steps = int(_all_reduce(local_steps, dist.ReduceOp.MIN, device).item())
    loss_fn = nn.CrossEntropyLoss()
    replicas.train()
    for epoch in range(first_epoch, params["epochs"]):
        sampler.set_epoch(epoch)  # the same order whether resumed or not
        order = torch.tensor(list(sampler), device=device)
        total = torch.zeros(2, dtype=torch.float64)
        for batch in order.split(batch_size)[:steps]:
            optimizer.zero_grad()
            loss = loss_fn(replicas(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total += torch.tensor([loss.item() * len(batch), len(batch)], dtype=torch.float64)
        total = _all_reduce(total, dist.ReduceOp.SUM, device)
        logger.info("epoch %d/%d loss %.4f", epoch + 1, params["epochs"], total[0] / total[1])
        if checkpoint_dir is not None and cluster.is_master:
            state = {"epoch": epoch + 1, "network": network.state_dict(), "optimizer": optimizer.state_dict()}
            _save_atomically(state, checkpoint_dir / CHECKPOINT_NAME)
    if checkpoint_dir is not None and cluster.is_master:
        # Finished: the next job in this tree starts afresh instead of resuming a completed run.
        (checkpoint_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
    return network.eval(), config


def _resume(
    network: Network, optimizer: torch.optim.Optimizer, checkpoint_dir: Path | None, device: torch.device
) -> int:
    """Load the checkpoint a stopped job left behind; returns the epoch to continue from.

    SageMaker gives every host of a job the same checkpoint folder contents, so all resume alike;
    hosts that disagree would train different models, and fail instead.
    """
    path = None if checkpoint_dir is None else checkpoint_dir / CHECKPOINT_NAME
    epoch = 0
    if path is not None and path.exists():
        state = torch.load(path, map_location=device, weights_only=True)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        logger.info("resuming from %s after epoch %d", path, state["epoch"])
        epoch = int(state["epoch"])
    epochs = torch.tensor([epoch, -epoch])
    lowest, negated_highest = _all_reduce(epochs, dist.ReduceOp.MIN, device).tolist()
    if lowest != -negated_highest:
        raise ValueError(f"the hosts hold checkpoints of different epochs ({lowest} to {-negated_highest})")
    return epoch
