"""Batch transform throughput: records per second through a running server, driven as SageMaker drives it.

The driver is the rendered project's own `tests/batch_transform.py` (what its suite checks 100,000
records with): it reads `/execution-parameters`, packs records into mini-batches under `MaxPayloadInMB`
and keeps `MaxConcurrentTransforms` of them in flight. Here it runs over CSV and JSON Lines files of real
feature rows; every record's answer is checked against the in-process answers before a figure counts.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from types import ModuleType

import numpy as np
from harness import Project

FORMATS = ("text/csv", "application/jsonlines")


def driver(project: Project) -> ModuleType:
    path = project.root / "tests" / "batch_transform.py"
    spec = importlib.util.spec_from_file_location(f"{project.package}_batch_transform", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def input_file(rows: np.ndarray, content_type: str) -> bytes:
    if content_type == "text/csv":
        return "".join(",".join(f"{value:.6g}" for value in row) + "\n" for row in rows).encode()
    return "".join(json.dumps([float(f"{value:.6g}") for value in row]) + "\n" for row in rows).encode()


def answers(output: bytes, content_type: str) -> list[str]:
    lines = output.decode().splitlines()
    return lines if content_type == "text/csv" else [str(json.loads(line)) for line in lines]


def first_wrong(got: list[str], expected: list[str]) -> int | None:
    """The first record whose answer differs from the in-process one (numbers: beyond float32 rounding)."""
    try:
        right = np.isclose(np.asarray(got, dtype=float), np.asarray(expected, dtype=float), rtol=1e-5, atol=1e-6)
    except ValueError:  # labels that are not numbers
        right = np.asarray(got) == np.asarray(expected)
    wrong = np.flatnonzero(~right)
    return int(wrong[0]) if wrong.size else None


def throughput(
    project: Project, port: int, records: int, rounds: int, expected: list[str], payload_mb: int = 1
) -> dict:
    """Each format's median records/s over `rounds` whole transforms of `records` records (the validation rows
    over and over; `expected`: their in-process answers, from `input_file`'s CSV of them)."""
    transform = driver(project)
    features = project.features()
    rows = np.resize(features, (records, features.shape[1]))
    # The server's own parameters, but mini-batches of `payload_mb` as a job may set (MaxPayloadInMB): the
    # default of 6 MB would send 100,000 records in one request, with nothing else in flight.
    served = transform.execution_parameters(transform.Connections("127.0.0.1", port, 600.0))
    parameters = transform.ExecutionParameters(served.max_concurrent_transforms, served.batch_strategy, payload_mb)
    tiled = [expected[index % len(expected)] for index in range(records)]
    figures: dict = {"records": records}
    for content_type in FORMATS:
        data = input_file(rows, content_type)
        rates, requests = [], 0
        for _ in range(rounds):
            output, report = transform.transform(data, content_type, port, parameters=parameters)
            wrong = first_wrong(answers(output, content_type), tiled)
            if wrong is not None:
                raise RuntimeError(f"batch transform {content_type}: wrong answer for record {wrong}")
            rates.append(report.records_per_second)
            requests = report.requests
        figures[content_type] = {
            "records_per_s": statistics.median(rates),
            "runs_records_per_s": [round(rate, 1) for rate in rates],
            "requests": requests,
            "max_concurrent_transforms": report.parameters.max_concurrent_transforms,
            "max_payload_in_mb": report.parameters.max_payload_in_mb,
            "input_mib": len(data) / 2**20,
        }
    return figures
