"""The SageMaker container contract: where inputs are, where outputs go, what the job asked for.

Everything comes from one read-only object built from the process environment, so the same
code runs inside a container (base directory /opt/ml), under the sagemaker-training toolkit
(which sets SM_* variables) and on a laptop (SAGEMAKER_BASE_DIR pointing at a local tree).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BASE_DIR = "/opt/ml"
# Port the hosts of a multi-host job meet on (host N listens on port + N); override with DISTRIBUTED_PORT.
DEFAULT_DISTRIBUTED_PORT = 29500
# How long a host waits for its peers (start-up, then each collective operation) before failing the
# job; override with DISTRIBUTED_TIMEOUT_SECONDS. Hosts of one job can start minutes apart.
DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS = 600.0
FULLY_REPLICATED = "FullyReplicated"
# Where SageMaker keeps files between jobs on a warm pool's instance (set only for such jobs).
WARM_POOL_CACHE_VARIABLE = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"
# Channels larger than this (MB of CSV on disk) are read into a memory-mapped file instead of memory;
# override with STREAM_DATA_ABOVE_MB (0: always).
DEFAULT_STREAM_DATA_ABOVE_MB = 1024.0


class ContractError(Exception):
    """The job's configuration files are missing or malformed."""


@dataclass(frozen=True)
class Cluster:
    """The hosts of one training job, from resourceconfig.json. One host is a cluster of one."""

    hosts: tuple[str, ...]
    current_host: str
    network_interface: str = "eth0"
    port: int = DEFAULT_DISTRIBUTED_PORT
    timeout_seconds: float = DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if not self.hosts or len(set(self.hosts)) != len(self.hosts):
            raise ContractError(f"resourceconfig.json must list distinct hosts, not {list(self.hosts)}")
        if self.current_host not in self.hosts:
            raise ContractError(f"current host {self.current_host!r} is not among the hosts {list(self.hosts)}")

    @classmethod
    def single_host(cls) -> Cluster:
        return cls(("algo-1",), "algo-1")

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def rank(self) -> int:
        """This host's place in the sorted host list, the same on every host; the master is rank 0."""
        return self.hosts.index(self.current_host)

    @property
    def master(self) -> str:
        return self.hosts[0]

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(host for host in self.hosts if host != self.current_host)

    def address(self, rank: int) -> tuple[str, int]:
        """Where host `rank` listens. Distinct ports let several hosts share one machine (as in the tests)."""
        return self.hosts[rank], self.port + rank


@dataclass(frozen=True)
class SageMakerEnvironment:
    base_dir: Path
    variables: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SageMakerEnvironment:
        variables = dict(os.environ if environ is None else environ)
        return cls(Path(variables.get("SAGEMAKER_BASE_DIR", DEFAULT_BASE_DIR)), variables)

    def _path(self, variable: str, *default: str) -> Path:
        value = self.variables.get(variable)
        return Path(value) if value else self.base_dir.joinpath(*default)

    @property
    def input_config_dir(self) -> Path:
        return self._path("SM_INPUT_CONFIG_DIR", "input", "config")

    @property
    def model_dir(self) -> Path:
        return self._path("SM_MODEL_DIR", "model")

    @property
    def output_dir(self) -> Path:
        return self._path("SM_OUTPUT_DIR", "output")

    @property
    def output_data_dir(self) -> Path:
        return self._path("SM_OUTPUT_DATA_DIR", "output", "data")

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self._path("SM_CHECKPOINT_DIR", "checkpoints")

    @property
    def checkpoint_dir_if_enabled(self) -> Path | None:
        """The checkpoint folder when the job has one: SageMaker creates it only for jobs given a CheckpointConfig."""
        return self.checkpoint_dir if self.checkpoint_dir.is_dir() else None

    def channel_dir(self, channel: str) -> Path:
        return self._path(f"SM_CHANNEL_{channel.upper()}", "input", "data", channel)

    def _read_config(self, name: str, default: Any) -> Any:
        path = self.input_config_dir / name
        if not path.exists():
            return default
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ContractError(f"cannot read {path}: {error}") from error

    def hyperparameters(self) -> dict[str, str]:
        """The hyperparameters exactly as SageMaker passed them: every value is a string."""
        raw = self._read_config("hyperparameters.json", {})
        if not isinstance(raw, dict):
            raise ContractError("hyperparameters.json must hold a JSON object")
        # All of them, SageMaker's own included: hyperparameters.RESERVED says which names are left out.
        return {str(key): str(value) for key, value in raw.items()}

    def input_data_config(self) -> dict[str, dict[str, str]]:
        config = self._read_config("inputdataconfig.json", {})
        if not isinstance(config, dict):
            raise ContractError("inputdataconfig.json must hold a JSON object")
        return config

    def channels(self) -> list[str]:
        """Channel names the job was given: inputdataconfig.json, else the folders present."""
        configured = list(self.input_data_config())
        if configured:
            return configured
        data_dir = self.base_dir / "input" / "data"
        return sorted(path.name for path in data_dir.iterdir() if path.is_dir()) if data_dir.is_dir() else []

    def resource_config(self) -> dict[str, Any]:
        default = {"current_host": "algo-1", "hosts": ["algo-1"]}
        return self._read_config("resourceconfig.json", default)

    def cluster(self) -> Cluster:
        config = self.resource_config()
        try:
            hosts = tuple(sorted(str(host) for host in config["hosts"]))
            current_host = str(config["current_host"])
        except (KeyError, TypeError) as error:
            raise ContractError(f"resourceconfig.json needs 'hosts' and 'current_host': {error}") from error
        try:
            port = int(self.variables.get("DISTRIBUTED_PORT", DEFAULT_DISTRIBUTED_PORT))
            timeout = float(self.variables.get("DISTRIBUTED_TIMEOUT_SECONDS", DEFAULT_DISTRIBUTED_TIMEOUT_SECONDS))
        except ValueError as error:
            raise ContractError(f"DISTRIBUTED_PORT / DISTRIBUTED_TIMEOUT_SECONDS must be numbers: {error}") from error
        interface = str(config.get("network_interface_name", "eth0"))
        return Cluster(hosts, current_host, interface, port, timeout)

    def distribution(self, channel: str) -> str:
        """S3DistributionType of a channel: FullyReplicated (every host gets all files) or ShardedByS3Key."""
        return str(self.input_data_config().get(channel, {}).get("S3DistributionType", FULLY_REPLICATED))

    @property
    def warm_pool_cache_dir(self) -> Path | None:
        """The warm pool's persistent cache folder, on jobs that run on a warm pool; else None."""
        value = self.variables.get(WARM_POOL_CACHE_VARIABLE)
        return Path(value) if value and Path(value).is_dir() else None

    @property
    def stream_data_above_bytes(self) -> float:
        text = self.variables.get("STREAM_DATA_ABOVE_MB", "")
        try:
            megabytes = float(text) if text else DEFAULT_STREAM_DATA_ABOVE_MB
        except ValueError:
            megabytes = -1.0
        if not megabytes >= 0:
            raise ContractError(f"STREAM_DATA_ABOVE_MB must be a number of megabytes, 0 or more, not {text!r}")
        return megabytes * 2**20

    @property
    def temporary_dir(self) -> Path:
        """Where a job keeps files only while it runs (memory-mapped channels): TMPDIR, else /tmp."""
        return Path(self.variables.get("TMPDIR") or tempfile.gettempdir())

    @property
    def num_gpus(self) -> int:
        return int(self.variables.get("SM_NUM_GPUS", "0") or 0)
