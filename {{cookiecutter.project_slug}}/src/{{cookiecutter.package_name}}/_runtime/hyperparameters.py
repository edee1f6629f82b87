"""Declared hyperparameters: names, types, defaults and bounds in one place.

SageMaker hands every hyperparameter over as a string. `parse` turns them into typed values
and refuses unknown names and ill-typed values with a message that names the field, so a
typo in a launcher fails the job at once instead of silently training with a default. The names
SageMaker and its toolkits add to a job themselves (RESERVED) are accepted and left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .messages import listed, shown

TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}

# Automatic model tuning adds it to every training job it starts: a job holding it is one of a tuning job's.
TUNING_MARK = "_tuning_objective_metric"
# Hyperparameters that reach a job without the user asking, and where each comes from. None of them
# is a setting of the model: they are accepted and ignored, so that such jobs do not fail at once.
RESERVED = {
    "_tuning_objective_metric": "automatic model tuning: every training job a tuning job starts",
    "sagemaker_program": "the SageMaker SDK's script mode and its tuner (the entry script)",
    "sagemaker_submit_directory": "the SageMaker SDK's script mode (where the code was uploaded)",
    "sagemaker_container_log_level": "the SageMaker SDK (the toolkit's log level)",
    "sagemaker_job_name": "the SageMaker SDK (the job's name)",
    "sagemaker_region": "the SageMaker SDK (the job's region)",
    "sagemaker_estimator_class_name": "the SageMaker SDK's tuner, for framework estimators",
    "sagemaker_estimator_module": "the SageMaker SDK's tuner, for framework estimators",
}
# The sagemaker-training toolkit takes every hyperparameter with this prefix as its own setting
# (distribution, MPI, metrics and so on), never as the user's.
RESERVED_PREFIX = "sagemaker_"


class HyperparameterError(ValueError):
    """A hyperparameter is unknown, of the wrong type or out of bounds."""


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()

    def parse(self, text: str) -> Any:
        text = _unquote(text.strip())
        try:
            value = _convert(self.type, text)
        except (ValueError, OverflowError):
            raise HyperparameterError(
                f"hyperparameter {self.name} must be a valid {self.type.__name__}; given {shown(text)}"
            ) from None
        if self.choices and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise HyperparameterError(f"hyperparameter {self.name} must be one of: {allowed}; given {shown(value)}")
        if self.minimum is not None and value < self.minimum:
            raise HyperparameterError(
                f"hyperparameter {self.name} is below its minimum {self.minimum}; given {shown(value)}"
            )
        if self.maximum is not None and value > self.maximum:
            raise HyperparameterError(
                f"hyperparameter {self.name} is above its maximum {self.maximum}; given {shown(value)}"
            )
        return value

    def bounds(self) -> str:
        if self.choices:
            return " / ".join(f"`{choice}`" for choice in self.choices)
        low = "" if self.minimum is None else f">= {self.minimum}"
        high = "" if self.maximum is None else f"<= {self.maximum}"
        return ", ".join(part for part in (low, high) if part)


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIX)


def _unquote(text: str) -> str:
    # Some launchers JSON-encode every value ("\"gini\""); accept both spellings.
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def _convert(kind: type, text: str) -> Any:
    if kind is bool:
        lowered = text.lower()
        if lowered in TRUE_WORDS | FALSE_WORDS:
            return lowered in TRUE_WORDS
        raise ValueError(text)
    if kind is int:
        number = float(text)
        if not number.is_integer():
            raise ValueError(text)
        return int(number)
    return kind(text)


def parse(schema: Iterable[Hyperparameter], raw: Mapping[str, str]) -> dict[str, Any]:
    """Typed values for every declared hyperparameter: given ones parsed, the rest defaulted.

    Reserved names (RESERVED, RESERVED_PREFIX) are left out unless the schema declares them.
    """
    declared = {spec.name: spec for spec in schema}
    unknown = sorted(name for name in set(raw) - set(declared) if not is_reserved(name))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter(s) {listed(unknown)}; allowed: {listed(sorted(declared), len(declared))}"
        )
    return {name: spec.parse(raw[name]) if name in raw else spec.default for name, spec in declared.items()}


def reserved_given(schema: Iterable[Hyperparameter], raw: Mapping[str, str]) -> list[str]:
    """The reserved names a job was given that `parse` leaves out, for the log."""
    declared = {spec.name for spec in schema}
    return sorted(name for name in raw if name not in declared and is_reserved(name))


def checkpoint_key(values: Mapping[str, Any], with_epochs: bool = False) -> str:
    """A short digest of the values a checkpoint was trained with: checkpoints are named by it, so that jobs
    sharing a checkpoint location (a rerun with other values) never resume each other's, while a job that
    only asks for more epochs still resumes. The jobs of a tuning job, which may differ in epochs alone
    and run side by side, are told apart by epochs too (`with_epochs`)."""
    kept = {name: value for name, value in values.items() if with_epochs or name != "epochs"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def as_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Values spelled the way SageMaker passes them (for hyperparameters.json and launchers)."""
    return {name: str(value).lower() if isinstance(value, bool) else str(value) for name, value in values.items()}


def defaults(schema: Iterable[Hyperparameter]) -> dict[str, Any]:
    return {spec.name: spec.default for spec in schema}


def markdown_table(schema: Iterable[Hyperparameter]) -> str:
    rows = ["| Name | Type | Default | Allowed | Meaning |", "| --- | --- | --- | --- | --- |"]
    for spec in schema:
        default = as_strings({spec.name: spec.default})[spec.name]
        rows.append(f"| `{spec.name}` | {spec.type.__name__} | `{default}` | {spec.bounds() or 'any'} | {spec.help} |")
    return "\n".join(rows)
