"""Several training "hosts" on one machine: a SageMaker tree each, and `train` run in each as a process.

The hosts are named by loopback addresses (127.0.0.1, 127.0.0.2, ...), which resolve to this
machine the way algo-1, algo-2 resolve to the job's instances, and talk over the loopback
interface. Each resourceconfig.json names every host and the one it belongs to, as SageMaker
writes it on each instance.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from .support import PACKAGE, child_environment, make_tree

LOOPBACK_HOSTS = ("127.0.0.1", "127.0.0.2")
# Short, so a test of a lost host fails in seconds; a real job waits DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS.
TEST_TIMEOUT_SECONDS = 60


def host_trees(base_dir: Path, hosts: tuple[str, ...] = LOOPBACK_HOSTS, sharded: bool = False) -> list[Path]:
    """One SageMaker tree per host, all holding the sample data set (ShardedByS3Key: a disjoint part each)."""
    trees = []
    for rank, host in enumerate(hosts):
        tree = make_tree(base_dir / f"host-{rank + 1}")
        config_dir = tree / "input" / "config"
        resources = {"current_host": host, "hosts": list(hosts), "network_interface_name": "lo"}
        (config_dir / "resourceconfig.json").write_text(json.dumps(resources), encoding="utf-8")
        if sharded:
            channels = json.loads((config_dir / "inputdataconfig.json").read_text(encoding="utf-8"))
            channels["train"]["S3DistributionType"] = "ShardedByS3Key"
            (config_dir / "inputdataconfig.json").write_text(json.dumps(channels), encoding="utf-8")
            train_csv = tree / "input" / "data" / "train" / "train.csv"
            header, *rows = train_csv.read_text(encoding="utf-8").splitlines(keepends=True)
            train_csv.write_text(header + "".join(rows[rank :: len(hosts)]), encoding="utf-8")
        trees.append(tree)
    return trees


def free_ports(count: int) -> int:
    """A first port such that it and the next count - 1 are free now (host N listens on port + N)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count < 65536 and all(_is_free(first + offset) for offset in range(1, count)):
            return first
    raise RuntimeError(f"found no {count} consecutive free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def start_hosts(trees: list[Path], port: int, **variables: str) -> list[subprocess.Popen[bytes]]:
    """`python -m <package> train` in every tree at once, each logging to output/train.log in its tree.

    `variables` set or override environment variables of every host.
    """
    processes = []
    for tree in trees:
        log = (tree / "output").joinpath("train.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        settings = {
            "DISTRIBUTED_PORT": str(port),
            "DISTRIBUTED_TIMEOUT_SECONDS": str(TEST_TIMEOUT_SECONDS),
            "OMP_NUM_THREADS": "1",  # the hosts share this machine's cores
        }
        environ = child_environment(tree, **{**settings, **variables})
        with log.open("wb") as output:
            processes.append(
                subprocess.Popen([sys.executable, "-m", PACKAGE, "train"], env=environ, stdout=output, stderr=output)
            )
    return processes


def wait_all(processes: list[subprocess.Popen[bytes]], timeout: float = 300) -> list[int]:
    return [process.wait(timeout=timeout) for process in processes]


def log_of(tree: Path) -> str:
    return (tree / "output" / "train.log").read_text(encoding="utf-8", errors="replace")
