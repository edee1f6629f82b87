"""torch.distributed across the job's hosts: the process group, all-reduce helpers, global statistics.

Training always runs under torch.distributed, one process per host (gloo on CPU, nccl on GPU): a
single host is a world of one, not a separate code path. A host that dies or stops answering
fails the others with LostPeerError naming it, instead of leaving them waiting.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

from .environment import Cluster


class LostPeerError(RuntimeError):
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
            raise LostPeerError(
                f"hosts {', '.join(cluster.hosts)} did not all meet at {host}:{port}: {error}"
            ) from error
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=cluster.rank, world_size=cluster.size, timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


@contextmanager
def peers_reported(cluster: Cluster) -> Iterator[None]:
    """Turn a transport failure inside the block into a LostPeerError that names the other hosts."""
    try:
        yield
    except RuntimeError as error:  # gloo reports a closed or silent peer as a bare RuntimeError
        if cluster.size == 1 or not is_transport_error(error):
            raise
        lost = f"lost contact with {', '.join(cluster.peers)} while training on {cluster.current_host}"
        raise LostPeerError(f"{lost}: {error}") from error


def is_transport_error(error: RuntimeError) -> bool:
    message = str(error).lower()
    return isinstance(error, dist.DistError) or "gloo" in message or "nccl" in message


def all_reduce(values: torch.Tensor, op: dist.ReduceOp.RedOpType, device: torch.device) -> torch.Tensor:
    """`values` combined over every host with `op`, back on the CPU."""
    on_device = values.to(device)
    dist.all_reduce(on_device, op=op)
    return on_device.cpu()


def global_sum(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    return all_reduce(values, dist.ReduceOp.SUM, device)


def global_min(value: int, device: torch.device) -> int:
    return int(all_reduce(torch.tensor([value], dtype=torch.long), dist.ReduceOp.MIN, device).item())


def global_max(value: int, device: torch.device) -> int:
    return int(all_reduce(torch.tensor([value], dtype=torch.long), dist.ReduceOp.MAX, device).item())


def global_range(value: int, device: torch.device) -> tuple[int, int]:
    """The lowest and highest of every host's `value`, in one exchange."""
    lowest, negated_highest = all_reduce(torch.tensor([value, -value]), dist.ReduceOp.MIN, device).tolist()
    return lowest, -negated_highest


def global_mean_std(
    count: int, mean: np.ndarray, variance: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each column over every host's rows, from each host's own
    (`tables.column_moments`): hosts hold different shards."""
    local_mean = torch.as_tensor(mean, dtype=torch.float64)
    local_squares = torch.as_tensor(variance, dtype=torch.float64) + local_mean**2
    width = len(local_mean)
    sums = torch.cat([torch.tensor([float(count)], dtype=torch.float64), local_mean * count, local_squares * count])
    total_count, total, squares = global_sum(sums, device).split([1, width, width])
    global_mean = total / total_count
    std = (squares / total_count - global_mean**2).clamp(min=0).sqrt()
    return global_mean, std
