"""Training data on disk: reading a channel's CSV files, and writing the sample data set.

Format of every CSV file: no header; the first column is the class label (an integer from 0);
the remaining columns are numeric features. All `*.csv` files under a channel's folder, in
any sub-folder, are read in name order and concatenated.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_SEED = 7
SAMPLE_VALIDATION_FRACTION = 0.2


class DataError(ValueError):
    """A channel is missing, empty or holds rows that cannot be used."""


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray
    labels: np.ndarray

    @property
    def num_features(self) -> int:
        return self.features.shape[1]


def _read_csv(path: Path) -> np.ndarray:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from error
    if not content.strip():
        return np.empty((0, 0))
    try:
        return np.loadtxt(io.BytesIO(content), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise DataError(f"{path} is not numeric CSV: {error}") from error


def read_channel(name: str, directory: Path) -> Dataset:
    """All rows of one channel as features and integer labels."""
    if not directory.is_dir():
        raise DataError(f"channel '{name}' is missing: no folder at {directory}")
    files = sorted(path for path in directory.rglob("*.csv") if path.is_file())
    if not files:
        raise DataError(f"channel '{name}' holds no .csv files in {directory}")
    tables = [(path, table) for path in files if (table := _read_csv(path)).size]
    if not tables:
        raise DataError(f"channel '{name}' has no rows: every .csv file in {directory} is empty")
    widths = {table.shape[1] for _, table in tables}
    if len(widths) > 1:
        detail = ", ".join(f"{path.name}: {table.shape[1]}" for path, table in tables)
        raise DataError(f"channel '{name}' mixes files with different column counts ({detail})")
    rows = np.concatenate([table for _, table in tables])
    if rows.shape[1] < 2:
        raise DataError(f"channel '{name}' needs a label column and at least one feature column")
    labels = rows[:, 0]
    if not np.all(np.isfinite(rows)) or np.any(labels < 0) or np.any(labels != np.round(labels)):
        raise DataError(f"channel '{name}': labels must be integers from 0 and features finite numbers")
    return Dataset(features=rows[:, 1:], labels=labels.astype(np.int64))


def sample_dataset() -> Dataset:
    """Fisher's iris data, as bundled with scikit-learn (150 rows, 4 features, 3 classes)."""
    from sklearn.datasets import load_iris

    features, labels = load_iris(return_X_y=True)
    return Dataset(features=features, labels=labels.astype(np.int64))


def _write_csv(path: Path, dataset: Dataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.column_stack([dataset.labels, dataset.features])
    np.savetxt(path, table, delimiter=",", fmt=["%d"] + ["%.6g"] * dataset.num_features)


def split(dataset: Dataset, validation_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A stratified shuffle split, so both parts hold every class."""
    from sklearn.model_selection import train_test_split

    x_train, x_val, y_train, y_val = train_test_split(
        dataset.features, dataset.labels, test_size=validation_fraction, random_state=seed, stratify=dataset.labels
    )
    return Dataset(x_train, y_train), Dataset(x_val, y_val)


def write_sample_tree(base_dir: Path, hyperparameters: Mapping[str, str], train_files: int = 1) -> None:
    """A SageMaker directory tree (input/config, input/data/<channel>, model, output) at base_dir.

    `train_files` > 1 writes the train channel as that many files of interleaved rows, so that a job
    sharding it by S3 key (ShardedByS3Key) gives each host a file of its own.
    """
    if train_files < 1:
        raise ValueError(f"train_files must be at least 1, not {train_files}")
    train, validation = split(sample_dataset(), SAMPLE_VALIDATION_FRACTION, SAMPLE_SEED)
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
        _write_csv(train_dir / "train.csv", train)
    else:
        for part in range(train_files):
            rows = slice(part, None, train_files)
            shard = Dataset(train.features[rows], train.labels[rows])
            _write_csv(train_dir / f"train-{part + 1}-of-{train_files}.csv", shard)
    _write_csv(base_dir / "input" / "data" / "validation" / "validation.csv", validation)
    for folder in ("model", "output/data"):
        (base_dir / folder).mkdir(parents=True, exist_ok=True)
    write_sample_requests(base_dir / "sample-requests", validation)


def write_sample_requests(directory: Path, dataset: Dataset, rows: int = 5) -> None:
    """Request bodies for /invocations: the first rows' features, as CSV and as JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    features = dataset.features[:rows]
    np.savetxt(directory / "payload.csv", features, delimiter=",", fmt="%.6g")
    (directory / "payload.json").write_text(json.dumps({"instances": features.tolist()}) + "\n", encoding="utf-8")
