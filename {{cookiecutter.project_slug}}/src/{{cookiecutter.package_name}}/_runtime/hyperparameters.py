"""Declared hyperparameters: names, types, defaults and bounds in one place.

SageMaker hands every hyperparameter over as a string. `parse` turns them into typed values
and refuses unknown names and ill-typed values with a message that names the field, so a
typo in a launcher fails the job at once instead of silently training with a default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}


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
        except ValueError:
            raise HyperparameterError(
                f"hyperparameter {self.name}={text!r} is not a valid {self.type.__name__}"
            ) from None
        if self.choices and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise HyperparameterError(f"hyperparameter {self.name}={value!r} is not one of: {allowed}")
        if self.minimum is not None and value < self.minimum:
            raise HyperparameterError(f"hyperparameter {self.name}={value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise HyperparameterError(f"hyperparameter {self.name}={value} is above the maximum {self.maximum}")
        return value

    def bounds(self) -> str:
        if self.choices:
            return " / ".join(f"`{choice}`" for choice in self.choices)
        low = "" if self.minimum is None else f">= {self.minimum}"
        high = "" if self.maximum is None else f"<= {self.maximum}"
        return ", ".join(part for part in (low, high) if part)


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
    """Typed values for every declared hyperparameter: given ones parsed, the rest defaulted."""
    declared = {spec.name: spec for spec in schema}
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(declared))}"
        )
    return {name: spec.parse(raw[name]) if name in raw else spec.default for name, spec in declared.items()}


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
