"""The SageMaker container contract: where inputs are, where outputs go, what the job asked for.

Everything comes from one read-only object built from the process environment, so the same
code runs inside a container (base directory /opt/ml), under the sagemaker-training toolkit
(which sets SM_* variables) and on a laptop (SAGEMAKER_BASE_DIR pointing at a local tree).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BASE_DIR = "/opt/ml"


class ContractError(Exception):
    """The job's configuration files are missing or malformed."""


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
        # Keys starting with sagemaker_ belong to the platform (toolkit, SDK), not to the model.
        return {str(key): str(value) for key, value in raw.items() if not str(key).startswith("sagemaker_")}

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

    @property
    def num_gpus(self) -> int:
        return int(self.variables.get("SM_NUM_GPUS", "0") or 0)
