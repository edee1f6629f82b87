"""The sample data set (data.py's `sample_data()`) as a SageMaker directory tree, for tests and local runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .. import data, model
from .contract import Table
from .tables import Dataset, Schema, dataset_from_table, write_csv

SAMPLE_SEED = 7
SAMPLE_VALIDATION_FRACTION = 0.2


def schema() -> Schema:
    return Schema.from_definitions(model, data)


def split_rows(labels: np.ndarray, validation_fraction: float, seed: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of a shuffle split; stratified for classification, so both parts hold every class."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    stratify = labels if task == "classification" else None
    train, validation = train_test_split(rows, test_size=validation_fraction, random_state=seed, stratify=stratify)
    return train, validation


def sample_parts() -> tuple[Table, Dataset, np.ndarray, np.ndarray]:
    """data.py's sample table, the same checked against the schema, and the rows of its two parts."""
    table = data.sample_data()
    dataset = dataset_from_table(table, schema())
    return (table, dataset, *split_rows(dataset.labels, SAMPLE_VALIDATION_FRACTION, SAMPLE_SEED, model.TASK))


def sample_split() -> tuple[Dataset, Dataset]:
    """The sample data's train and validation parts, as training reads them from the sample tree."""
    _, dataset, train, validation = sample_parts()
    return tuple(Dataset(dataset.features[rows], dataset.labels[rows]) for rows in (train, validation))


def _write(path: Path, table: Table, rows: np.ndarray) -> None:
    """Rows of the sample table in its own column order, with a header: training matches them by name."""
    write_csv(path, Table(table.columns, np.asarray(table.rows)[rows]), schema().whole_number_columns)


def write_sample_tree(base_dir: Path, hyperparameters: Mapping[str, str], train_files: int = 1) -> None:
    """A SageMaker directory tree (input/config, input/data/<channel>, model, output) at base_dir.

    The channels are CSV files with a header. `train_files` > 1 writes the train channel as that many
    files of interleaved rows, so that a job sharding it by S3 key (ShardedByS3Key) gives each host a
    file of its own.
    """
    if train_files < 1:
        raise ValueError(f"train_files must be at least 1, not {train_files}")
    table, _, train, validation = sample_parts()
    config_dir = base_dir / "input" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    channel = {
        "ContentType": "text/csv",
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
    }
    configs = {
        "hyperparameters.json": dict(hyperparameters),
        "inputdataconfig.json": {"train": channel, "validation": channel},
        "resourceconfig.json": {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"},
    }
    for name, content in configs.items():
        (config_dir / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    train_dir = base_dir / "input" / "data" / "train"
    if train_files == 1:
        _write(train_dir / "train.csv", table, train)
    else:
        for part in range(train_files):
            _write(train_dir / f"train-{part + 1}-of-{train_files}.csv", table, train[part::train_files])
    _write(base_dir / "input" / "data" / "validation" / "validation.csv", table, validation)
    for folder in ("model", "output/data"):
        (base_dir / folder).mkdir(parents=True, exist_ok=True)
