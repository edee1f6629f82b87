"""Training across hosts with `tf.distribute.MultiWorkerMirroredStrategy`: one worker per host of the job.

A single host is a world of one. Joining waits a bounded time for every host; a host that stops
answering fails the others with a LostPeerError that names it; `from_every_host` is the one
collective the runtime needs besides the gradient sums.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

from .environment import Cluster


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


@contextlib.contextmanager
def peers_watched(cluster: Cluster, when: str) -> Iterator[None]:
    """TensorFlow's errors inside the block, when other hosts take part, as a LostPeerError naming them."""
    try:
        yield
    except tf.errors.OpError as error:
        if not cluster.peers:
            raise
        raise lost_peer_error(cluster, error, when) from error


def from_every_host(strategy: tf.distribute.Strategy, values: np.ndarray) -> np.ndarray:
    """Every host's `values`, one row per host in rank order; the same array on every host."""
    local_replicas = len(strategy.extended.worker_devices)
    value = tf.constant(values[np.newaxis])

    def gather() -> tf.Tensor:
        return tf.distribute.get_replica_context().all_gather(value, axis=0)

    gathered = tf.function(lambda: strategy.run(gather))()
    rows = strategy.experimental_local_results(gathered)[0].numpy()
    return rows[::local_replicas]  # each host's replicas all sent the same row


def normalisation_statistics(
    strategy: tf.distribute.Strategy, count: int, mean: np.ndarray, variance: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of every host's rows together, from each host's own (`tables.column_moments`);
    the same as one host's when the rows are replicated."""
    width = len(mean)
    local = np.concatenate([[count], mean, variance])
    hosts = from_every_host(strategy, local)
    counts, means, variances = hosts[:, :1], hosts[:, 1 : 1 + width], hosts[:, 1 + width :]
    mean = (counts * means).sum(axis=0) / counts.sum()
    variance = (counts * (variances + (means - mean) ** 2)).sum(axis=0) / counts.sum()
    return mean, variance
