"""Hyperparameter tuning and the job options around it, as plain data the launcher notebook turns into SDK objects.

`parameter_ranges` derives what a tuning job searches from the declared schema (model.py's
HYPERPARAMETERS): every hyperparameter with choices and every bool is categorical; every int or float
declared with both a minimum and a maximum is searched over exactly those bounds, on a logarithmic
scale where they are above zero and span two orders of magnitude. Every other hyperparameter, and
every one the launch fixes, stays static. The launch's own ranges narrow or add to these, checked
against the schema. `check_job_options` refuses the managed spot and warm pool settings AWS would
refuse, before anything is launched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .hyperparameters import Hyperparameter, HyperparameterError, as_strings

MAX_KEEP_ALIVE_SECONDS = 3600  # the longest AWS keeps a warm pool
LOG_SPAN = 100  # maximum / minimum from which a range above zero is searched on a logarithmic scale


class TuningError(ValueError):
    """A launch option or a tuning range that cannot work; raised before anything is launched."""


@dataclass(frozen=True)
class Range:
    """One searched hyperparameter. kind: Integer, Continuous or Categorical, as the SDK's range classes."""

    name: str
    kind: str
    low: int | float | None = None
    high: int | float | None = None
    scaling: str | None = None  # Linear or Logarithmic; None for Categorical
    values: tuple[str, ...] = ()  # Categorical: the choices, spelled as SageMaker passes them

    def as_request(self) -> dict[str, Any]:
        """The range as CreateHyperParameterTuningJob's ParameterRanges lists it."""
        if self.kind == "Categorical":
            return {"Name": self.name, "Values": list(self.values)}
        return {"Name": self.name, "MinValue": str(self.low), "MaxValue": str(self.high), "ScalingType": self.scaling}


def default_range(spec: Hyperparameter) -> Range | None:
    """What a tuning job searches for this hyperparameter unless told otherwise; None: it stays static."""
    if spec.choices:
        values = tuple(dict.fromkeys(_spelled(spec, choice) for choice in spec.choices))
        return Range(spec.name, "Categorical", values=values) if len(values) > 1 else None
    if spec.type is bool:
        return Range(spec.name, "Categorical", values=("true", "false"))
    if spec.type in (int, float) and spec.minimum is not None and spec.maximum is not None:
        low, high = spec.minimum, spec.maximum
        if spec.type is int:
            low, high = math.ceil(low), math.floor(high)
        return _numeric(spec, _typed(spec, low), _typed(spec, high)) if low < high else None
    return None


def parameter_ranges(
    schema: Iterable[Hyperparameter], overrides: Mapping[str, Any] | None = None, fixed: Iterable[str] = ()
) -> dict[str, Range]:
    """The searched hyperparameters by name, in the schema's order.

    overrides: name -> [low, high] for an int or float, or a list of choices for the others; each
    replaces the default range or adds one. fixed: names the launch sets itself, which stay static.
    """
    declared = {spec.name: spec for spec in schema}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TuningError(
            f"tuning_ranges names unknown hyperparameter(s) {', '.join(unknown)}; declared: {', '.join(declared)}"
        )
    both = sorted(set(fixed) & set(overrides))
    if both:
        raise TuningError(
            f"{', '.join(both)}: set in hyperparameters and given a range in tuning_ranges; keep one of the two"
        )
    ranges = {}
    for name, spec in declared.items():
        if name in overrides:
            ranges[name] = _override(spec, overrides[name])
        elif name not in fixed and (found := default_range(spec)) is not None:
            ranges[name] = found
    return ranges


def as_request(ranges: Mapping[str, Range]) -> dict[str, list[dict[str, Any]]]:
    """CreateHyperParameterTuningJob's ParameterRanges for these ranges."""
    return {
        f"{kind}ParameterRanges": [found.as_request() for found in ranges.values() if found.kind == kind]
        for kind in ("Integer", "Continuous", "Categorical")
    }


def check_job_options(
    *,
    use_spot: bool,
    max_runtime_seconds: int,
    max_wait_seconds: int | None,
    keep_alive_seconds: int,
    tuning_jobs: int,
    tuning_parallel_jobs: int,
) -> int | None:
    """The longest a spot job may wait and run (None without spot), once the options are known to work together.

    max_wait_seconds None means twice max_runtime_seconds.
    """
    if not isinstance(use_spot, bool):
        raise TuningError(f"use_spot is True or False, not {use_spot!r}")
    _whole("max_runtime_seconds", max_runtime_seconds, 1)
    _whole("keep_alive_seconds", keep_alive_seconds, 0, MAX_KEEP_ALIVE_SECONDS)
    _whole("tuning_jobs", tuning_jobs, 0)
    _whole("tuning_parallel_jobs", tuning_parallel_jobs, 1)
    if use_spot and keep_alive_seconds:
        raise TuningError(
            f"use_spot=True and keep_alive_seconds={keep_alive_seconds} do not go together: AWS keeps no warm pool "
            "for managed spot training; set keep_alive_seconds = 0 or use_spot = False"
        )
    if tuning_jobs and keep_alive_seconds:
        raise TuningError(
            f"tuning_jobs={tuning_jobs} and keep_alive_seconds={keep_alive_seconds} do not go together: the warm pool "
            "is for one training job; set keep_alive_seconds = 0 or tuning_jobs = 0"
        )
    if max_wait_seconds is not None:
        _whole("max_wait_seconds", max_wait_seconds, 1)
        if max_wait_seconds < max_runtime_seconds:
            raise TuningError(
                f"max_wait_seconds={max_wait_seconds} is below max_runtime_seconds={max_runtime_seconds}: a spot job "
                "waits for capacity and trains within max_wait_seconds, so it must be at least max_runtime_seconds"
            )
    if not use_spot:
        return None
    return 2 * max_runtime_seconds if max_wait_seconds is None else max_wait_seconds


def _whole(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"{low} to {high}" if high is not None else f"{low} or more"
        raise TuningError(f"{name} is a whole number, {allowed}; not {value!r}")


def _override(spec: Hyperparameter, value: Any) -> Range:
    if spec.choices or spec.type in (bool, str):
        return _categorical(spec, value)
    bounds = [f"{word} {bound}" for word, bound in ((">=", spec.minimum), ("<=", spec.maximum)) if bound is not None]
    allowed = f"[low, high] within {', '.join(bounds) or f'any {spec.type.__name__}'}"
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(map(_is_number, value))):
        raise TuningError(f"tuning_ranges[{spec.name!r}] is {allowed}; not {value!r}")
    low, high = value
    if spec.type is int and not all(float(bound).is_integer() for bound in value):
        raise TuningError(f"tuning_ranges[{spec.name!r}] is {allowed}, whole numbers for an int; not {value!r}")
    outside = (spec.minimum is not None and low < spec.minimum) or (spec.maximum is not None and high > spec.maximum)
    if outside or low >= high:
        reason = "goes outside the declared bounds" if outside else "has low >= high"
        raise TuningError(f"tuning_ranges[{spec.name!r}]={list(value)!r} {reason}; allowed: {allowed}")
    return _numeric(spec, _typed(spec, low), _typed(spec, high))


def _categorical(spec: Hyperparameter, value: Any) -> Range:
    allowed = " / ".join(_spelled(spec, choice) for choice in spec.choices) if spec.choices else ""
    if spec.type is bool:
        allowed = "true / false"
    what = f"a list of choices among {allowed}" if allowed else f"a list of {spec.type.__name__} values"
    if not isinstance(value, list | tuple) or not value:
        raise TuningError(f"tuning_ranges[{spec.name!r}] is {what}; not {value!r}")
    try:
        values = tuple(dict.fromkeys(_spelled(spec, spec.parse(_spelled(spec, choice))) for choice in value))
    except HyperparameterError as error:
        raise TuningError(f"tuning_ranges[{spec.name!r}] is {what}: {error}") from None
    return Range(spec.name, "Categorical", values=values)


def _numeric(spec: Hyperparameter, low: int | float, high: int | float) -> Range:
    scaling = "Logarithmic" if low > 0 and high / low >= LOG_SPAN else "Linear"
    kind = "Integer" if spec.type is int else "Continuous"
    return Range(spec.name, kind, low=low, high=high, scaling=scaling)


def _typed(spec: Hyperparameter, bound: float) -> int | float:
    return int(bound) if spec.type is int else float(bound)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spelled(spec: Hyperparameter, value: Any) -> str:
    return as_strings({spec.name: value})[spec.name]
