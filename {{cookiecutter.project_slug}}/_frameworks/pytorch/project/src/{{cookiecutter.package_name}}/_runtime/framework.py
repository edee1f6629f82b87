"""PyTorch under the contract: trains model.py's network on every host of the job, saves it, answers with it.

model.py builds the network and its optimizer; the rest is here: standardising the inputs (and,
for regression, the target) with statistics over every host's rows, the loss for model.TASK, the
loop, checkpoints and resuming, saving and loading. Training always runs under torch.distributed
(`distributed.py`): a single host is a world of one, on the same code path; DistributedDataParallel
sums the gradients when there are several hosts. Artifacts and checkpoints are plain data and
state dicts, loaded with `weights_only=True`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import model
from . import distributed
from .contract import DefinitionError, TrainingJob
from .hyperparameters import checkpoint_key
from .metrics import EpochProgress
from .tables import column_moments

logger = logging.getLogger(__name__)

ARTIFACT_NAME = "model.pt"
BUILDERS = ("build_network", "build_optimizer")
# The hyperparameters this runtime reads itself; model.py's builders read any others.
RUNTIME_HYPERPARAMETERS = ("epochs", "batch_size", "seed")
# Added to every standard deviation, so that a constant column does not divide by zero.
SCALE_EPSILON = 1e-6

# Outputs and targets of some rows -> the loss summed over those rows.
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, float]  # this host's row numbers, and what its summed loss is divided by


class NoProbabilities(ValueError):
    """A regression model gives numbers, not class probabilities."""


class Standardised(nn.Module):
    """model.py's network behind the standardisation of its inputs, and for regression of its target.

    The statistics are buffers: they travel in the state dict, with the artifact and every checkpoint.
    """

    def __init__(self, network: nn.Module, num_features: int) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_scale", torch.ones(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network((features - self.mean) / self.scale)

    def standardised_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return (labels - self.target_mean) / self.target_scale

    def values(self, outputs: torch.Tensor) -> torch.Tensor:
        """The network's regression outputs back in the target's units."""
        return outputs[:, 0] * self.target_scale + self.target_mean


def choose_device(num_gpus: int) -> torch.device:
    """The GPU when SageMaker gave the job one and CUDA can use it, else the CPU."""
    return torch.device("cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu")


def require_runtime_hyperparameters() -> None:
    """Refuse a model.py whose HYPERPARAMETERS lack a name this runtime reads, naming it."""
    declared = {parameter.name for parameter in model.HYPERPARAMETERS}
    missing = ", ".join(name for name in RUNTIME_HYPERPARAMETERS if name not in declared)
    if missing:
        raise DefinitionError(f"model.py's HYPERPARAMETERS must declare {missing}, which the PyTorch runtime reads")


def build(config: Mapping[str, Any]) -> Standardised:
    """model.py's network for an artifact's or a job's config, inside the standardisation."""
    network = model.build_network(config["num_features"], config["num_outputs"], dict(config["params"]))
    if not isinstance(network, nn.Module):
        raise DefinitionError(f"model.py's build_network must return a torch.nn.Module, not {type(network).__name__}")
    return Standardised(network, config["num_features"])


def check_outputs(module: Standardised, config: Mapping[str, Any]) -> None:
    """Refuse a network whose outputs do not fit the task, before any training time is spent."""
    module.eval()
    with torch.no_grad():
        shape = tuple(module(torch.zeros(2, config["num_features"])).shape)
    module.train()
    if shape != (2, config["num_outputs"]):
        wanted = "one logit per class" if config["task"] == "classification" else "one value"
        raise DefinitionError(
            f"model.py's network maps 2 rows to outputs of shape {shape}, not (2, {config['num_outputs']}): "
            f"a {config['task']} network gives {wanted} per row"
        )


def _rounded(values: torch.Tensor) -> np.ndarray:
    return values.float().cpu().numpy().astype(np.float64)


def _save_atomically(payload: dict[str, Any], target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    torch.save(payload, partial)
    os.replace(partial, target)
    return target


class FrameworkModel:
    def __init__(self, module: Standardised, config: dict[str, Any]) -> None:
        self.module = module.eval()
        self.config = config
        self.device = next(module.buffers()).device
        # Answers come from a float64 copy, rounded to float32: in float32 the kernels sum in another
        # order for another number of rows, so a row's answer would depend on the rows sent with it.
        self._answering = copy.deepcopy(module).double().eval()

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, params: Mapping[str, Any], job: TrainingJob
    ) -> FrameworkModel:
        """Train on every host of `job.cluster` at once; each returns the same weights.

        Not sharded (FullyReplicated: every host holds all rows): each epoch's shuffled order is cut
        into batches of batch_size rows, and host r of N takes every N-th row of each, so N hosts
        together take exactly the steps one host would. Sharded (ShardedByS3Key): each host shuffles
        its own rows into batches of batch_size / N, so the global batch stays batch_size.
        """
        require_runtime_hyperparameters()
        device = choose_device(job.num_gpus)
        with distributed.process_group(job.cluster, device), distributed.peers_reported(job.cluster):
            module, config = _train(features, labels, dict(params), job, device)
        return cls(module, config)

    @property
    def is_classification(self) -> bool:
        return self.config["task"] == "classification"

    @property
    def num_features(self) -> int:
        return self.config["num_features"]

    @property
    def classes(self) -> np.ndarray | None:
        return np.arange(self.config["num_outputs"]) if self.is_classification else None

    def _outputs(self, features: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self._answering(torch.as_tensor(features, dtype=torch.float64, device=self.device))

    def predict(self, features: np.ndarray) -> np.ndarray:
        outputs = self._outputs(features)
        if self.is_classification:
            return outputs.argmax(dim=1).cpu().numpy().astype(np.int64)
        with torch.inference_mode():
            return _rounded(self._answering.values(outputs))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        if not self.is_classification:
            raise NoProbabilities("a regression model answers numbers, not class probabilities")
        return _rounded(torch.softmax(self._outputs(features), dim=1))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight and statistic, on the CPU: what the artifact holds besides its config."""
        return {name: tensor.cpu() for name, tensor in self.module.state_dict().items()}

    def save(self, model_dir: Path) -> Path:
        """Write the artifact atomically: a reader never sees half a model."""
        return _save_atomically({"config": self.config, "state_dict": self.state_dict()}, model_dir / ARTIFACT_NAME)

    @classmethod
    def load(cls, model_dir: Path, num_gpus: int = 0) -> FrameworkModel:
        payload = torch.load(model_dir / ARTIFACT_NAME, map_location="cpu", weights_only=True)
        module = build(payload["config"])
        module.load_state_dict(payload["state_dict"])
        return cls(module.to(choose_device(num_gpus)), payload["config"])


def _configure(
    features: np.ndarray, labels: np.ndarray, params: dict[str, Any], device: torch.device
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The artifact's config, and the standardisation buffers' values over every host's rows."""
    if model.TASK == "classification":
        mean, std = distributed.global_mean_std(*column_moments(features), device)
        # A host's shard may lack the last class: count the classes over every host.
        num_outputs = distributed.global_max(int(labels.max()) + 1, device)
        target = {"target_mean": torch.tensor(0.0), "target_scale": torch.tensor(1.0)}
    else:
        columns_mean, columns_std = distributed.global_mean_std(*column_moments(features, labels), device)
        mean, std = columns_mean[:-1], columns_std[:-1]
        num_outputs = 1
        target = {"target_mean": columns_mean[-1], "target_scale": columns_std[-1] + SCALE_EPSILON}
    config = {"task": model.TASK, "num_features": features.shape[1], "num_outputs": num_outputs, "params": params}
    return config, {"mean": mean, "scale": std + SCALE_EPSILON, **target}


def _prepare(
    features: np.ndarray, labels: np.ndarray, params: dict[str, Any], device: torch.device
) -> tuple[Standardised, torch.optim.Optimizer, dict[str, Any]]:
    """model.py's network and optimizer, the same on every host, with the global statistics in place."""
    config, statistics = _configure(features, labels, params, device)
    torch.manual_seed(params["seed"])  # the same initial weights on every host
    module = build(config)
    check_outputs(module, config)
    for name, value in statistics.items():
        module.get_buffer(name).copy_(value)
    module.to(device)
    return module, model.build_optimizer(module.network.parameters(), dict(params)), config


def _objective(
    module: Standardised, labels: np.ndarray, task: str, device: torch.device
) -> tuple[torch.Tensor, LossFunction]:
    """The training targets and the loss for the task: cross-entropy on logits, or squared error."""
    if task == "classification":
        return torch.as_tensor(labels, dtype=torch.long, device=device), nn.CrossEntropyLoss(reduction="sum")
    targets = module.standardised_targets(torch.as_tensor(labels, dtype=torch.float32, device=device))
    squared_error = nn.MSELoss(reduction="sum")
    return targets, lambda outputs, standardised: squared_error(outputs[:, 0], standardised)


def _train(
    features: np.ndarray, labels: np.ndarray, params: dict[str, Any], job: TrainingJob, device: torch.device
) -> tuple[Standardised, dict[str, Any]]:
    module, optimizer, config = _prepare(features, labels, params, device)
    checkpoint = None if job.checkpoint_dir is None else job.checkpoint_dir / checkpoint_name(params, job)
    first_epoch = _resume(module, optimizer, checkpoint, device)
    if first_epoch > params["epochs"]:
        raise ValueError(
            f"the checkpoint holds {first_epoch} epochs, more than this job's epochs={params['epochs']}: "
            "ask for at least that many, or give the job another checkpoint location"
        )
    replicas = _replicated(module, job, device)
    inputs = rows_source(features, device)
    targets, loss_fn = _objective(module, labels, config["task"], device)
    batches = _batch_plan(len(inputs), params, job, device)
    if not job.cluster.is_master:
        checkpoint = None  # the master alone writes: every host of the next job gets its copy
    replicas.train()
    progress = EpochProgress(first_epoch, params["epochs"], job.cluster.current_host)
    for epoch in range(first_epoch, params["epochs"]):
        total = _run_epoch(replicas, optimizer, loss_fn, inputs, targets, batches(epoch))
        loss, rows = distributed.global_sum(total, device).tolist()  # every host logs all hosts' figures
        progress.epoch_done(epoch + 1, loss / rows, int(rows))
        if checkpoint is not None:
            state = {"epoch": epoch + 1, "network": module.state_dict(), "optimizer": optimizer.state_dict()}
            _save_atomically(state, checkpoint)
    if checkpoint is not None:
        # Finished: the next job in this tree starts afresh instead of resuming a completed run.
        checkpoint.unlink(missing_ok=True)
    return module.eval(), config


class MappedRows:
    """A memory-mapped channel's features, read batch by batch: the data never has to fit in memory."""

    def __init__(self, features: np.memmap, device: torch.device) -> None:
        self.features, self.device = features, device

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        batch = np.asarray(self.features[rows.cpu().numpy()], dtype=np.float32)
        return torch.from_numpy(batch).to(self.device)


def rows_source(features: np.ndarray, device: torch.device) -> torch.Tensor | MappedRows:
    """The features as one tensor when they are in memory; read per batch when memory-mapped."""
    if isinstance(features, np.memmap):
        return MappedRows(features, device)
    return torch.as_tensor(features, dtype=torch.float32, device=device)


def _replicated(module: Standardised, job: TrainingJob, device: torch.device) -> nn.Module:
    """The module under DistributedDataParallel, which sums the hosts' gradients at every step; a job of one
    host has no gradients to exchange, and the wrapper's all-reduce would only cost it time (2x at 10^6 rows)."""
    if job.cluster.size == 1:
        return module
    return DistributedDataParallel(module, device_ids=[device.index or 0] if device.type == "cuda" else None)


def _batch_plan(
    num_rows: int, params: dict[str, Any], job: TrainingJob, device: torch.device
) -> Callable[[int], list[Batch]]:
    """Each epoch's batches of this host, the same number on every host."""
    sharing = 1 if job.sharded else job.cluster.size  # hosts that share each batch's rows
    rank = 0 if job.sharded else job.cluster.rank
    batch_size = max(1, params["batch_size"] // job.cluster.size) if job.sharded else params["batch_size"]
    # Every host must take the same number of steps, or the gradient exchange waits forever.
    steps = distributed.global_min(-(-num_rows // batch_size), device)

    def batches(epoch: int) -> list[Batch]:
        # Seeded by epoch: the same order whether resumed or not, and on every host.
        order = torch.randperm(num_rows, generator=torch.Generator().manual_seed(params["seed"] + epoch))
        # DistributedDataParallel averages the hosts' gradients: dividing each host's summed loss by
        # the batch's rows / N makes that average the mean over the batch's rows, as on one host,
        # also for a last batch that does not split evenly.
        return [(batch[rank::sharing].to(device), len(batch) / sharing) for batch in order.split(batch_size)[:steps]]

    return batches


def _run_epoch(
    replicas: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFunction,
    inputs: torch.Tensor | MappedRows,
    targets: torch.Tensor,
    batches: list[Batch],
) -> torch.Tensor:
    """One pass over this host's batches; returns (summed loss, rows)."""
    summed, count = torch.zeros((), dtype=torch.float64, device=targets.device), 0
    for rows, divisor in batches:
        optimizer.zero_grad()
        loss = loss_fn(replicas(inputs[rows]), targets[rows])
        (loss / divisor).backward()
        optimizer.step()
        summed += loss.detach()  # no .item(): it would wait for the device on every step
        count += len(rows)
    return torch.stack([summed.cpu(), torch.tensor(float(count), dtype=torch.float64)])


def checkpoint_name(params: Mapping[str, Any], job: TrainingJob) -> str:
    """The checkpoint file of a job with these hyperparameters (see hyperparameters.checkpoint_key)."""
    return f"checkpoint-{checkpoint_key(params, with_epochs=job.tuning)}.pt"


def _resume(module: Standardised, optimizer: torch.optim.Optimizer, path: Path | None, device: torch.device) -> int:
    """Load the checkpoint a stopped job left behind; returns the epoch to continue from.

    SageMaker gives every host of a job the same checkpoint folder contents, so all resume alike;
    hosts that disagree would train different models, and fail instead.
    """
    epoch = 0
    if path is not None and path.exists():
        state = torch.load(path, map_location=device, weights_only=True)
        module.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        logger.info("resuming from %s after epoch %d", path, state["epoch"])
        epoch = int(state["epoch"])
    lowest, highest = distributed.global_range(epoch, device)
    if lowest != highest:
        raise ValueError(f"the hosts hold checkpoints of different epochs ({lowest} to {highest})")
    return epoch
