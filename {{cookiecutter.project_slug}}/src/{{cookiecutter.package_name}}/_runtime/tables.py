"""CSV tables against the declared schema: channel files for training, the sample data set, schema.json.

A file may start with a header row; its columns are then matched to data.py's FEATURES and LABEL by
name, in any order. A file without one follows SageMaker's built-in algorithms: the label, then the
features in FEATURES order. Every refusal names the file, the column and, where it can, the line.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import numpy as np

from .contract import Table
from .messages import listed, shown

SCHEMA_FILE = "schema.json"
# Class indices above this are surely not class indices (and would not fit the integer types frameworks use).
MAX_CLASS_INDEX = 2**31 - 1
# Class indices may go beyond the number of rows up to this, for small channels of many-class tasks.
MIN_CLASS_LIMIT = 1000
# Lines of CSV parsed at once: bounds the text held in memory while reading a file.
CHUNK_LINES = 100_000
# A memory-mapped channel's .npy header, fixed in length (a multiple of 64, as the format asks).
NPY_HEADER_BYTES = 128
# Rows per block when computing column statistics.
MOMENT_ROWS = 65_536


class DataError(ValueError):
    """A channel is missing, empty or holds rows that cannot be used."""


@dataclass(frozen=True)
class Schema:
    """The columns a model is trained on and answers for; saved beside the model as schema.json."""

    features: tuple[tuple[str, str], ...]  # (name, "float" or "int"), in the model's order
    label: str
    task: str

    @classmethod
    def from_definitions(cls, model: ModuleType, data: ModuleType) -> Schema:
        features = tuple((name, kind.__name__) for name, kind in data.FEATURES.items())
        return cls(features, data.LABEL, model.TASK)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)

    @property
    def integer_features(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.features if kind == "int")

    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    @property
    def whole_number_columns(self) -> tuple[str, ...]:
        """The int features, and the label when it is a class index."""
        return (*self.integer_features, *([self.label] if self.is_classification else []))

    def to_json(self) -> dict[str, Any]:
        return {"features": [{"name": n, "type": t} for n, t in self.features], "label": self.label, "task": self.task}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Schema:
        features = tuple((str(item["name"]), str(item["type"])) for item in document["features"])
        return cls(features, str(document["label"]), str(document["task"]))

    def save(self, model_dir: Path) -> Path:
        target = model_dir / SCHEMA_FILE
        partial = model_dir / f".{SCHEMA_FILE}.partial"
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(partial, target)
        return target

    @classmethod
    def load(cls, model_dir: Path) -> Schema:
        return cls.from_json(json.loads((model_dir / SCHEMA_FILE).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray  # float64, columns in the schema's order
    labels: np.ndarray  # int64 class indices (classification) or float64 (regression)

    def __len__(self) -> int:
        return len(self.labels)


def quoted(names: Iterable[str]) -> str:
    return ", ".join(shown(str(name), 40) for name in names)


def split_cells(line: str) -> list[str]:
    return [cell.strip().strip('"').strip() for cell in line.split(",")]


def is_number(cell: str | float) -> bool:
    """Whether a CSV cell reads as a number, or a JSON number fits a float (a huge integer does not)."""
    try:
        float(cell)
    except (ValueError, OverflowError):
        return False
    return True


def header_columns(cells: list[str], schema: Schema, source: str) -> list[str] | None:
    """The names a first row gives the columns, or None when it is a row of data."""
    known = {*schema.feature_names, schema.label}
    if known.intersection(cells):
        duplicated = sorted(cell for cell, count in collections.Counter(cells).items() if count > 1)
        if duplicated:
            raise DataError(f"{source}: the header names some columns more than once: {listed(duplicated)}")
        return cells
    if all(is_number(cell) for cell in cells):
        return None
    raise DataError(
        f"{source}: the first row is neither a header naming data.py's columns "
        f"({quoted([*schema.feature_names, schema.label])}) nor a row of numbers: {quoted(cells[:8])}"
    )


def column_positions(columns: list[str], schema: Schema, source: str, label: bool) -> list[int]:
    """Where each feature (and, for training, first the label) sits among a header's columns."""
    missing = [name for name in schema.feature_names if name not in columns]
    unknown = [name for name in columns if name not in {*schema.feature_names, schema.label}]
    unknown_text = (
        f"columns not in the schema (data.py's FEATURES and LABEL; remove them or declare them): {listed(unknown)}"
    )
    if missing:
        also = f"; {unknown_text}" if unknown else ""
        raise DataError(f"{source}: feature columns missing from the header: {listed(missing)}{also}")
    if label and schema.label not in columns:
        raise DataError(f"{source}: the label column '{schema.label}' is missing from the header")
    if not label and schema.label in columns:
        raise DataError(f"{source}: column '{schema.label}' is the label; send the features only")
    if unknown:
        raise DataError(f"{source}: {unknown_text}")
    wanted = [schema.label, *schema.feature_names] if label else list(schema.feature_names)
    return [columns.index(name) for name in wanted]


def parse_numbers(
    text: str, source: str, names: list[str], skipped_lines: int = 0, line_numbers: Sequence[int] | None = None
) -> np.ndarray:
    """The rows of `text` as float64, or a DataError naming the column and line of the first bad cell.

    A row's line is `line_numbers[row]` where given (text whose blank lines were taken out), else the
    row's place in `text` after `skipped_lines`.
    """

    def line_of(row: int) -> int:
        return line_numbers[row] if line_numbers is not None else row + 1 + skipped_lines

    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64, comments=None, quotechar='"')
    except ValueError as error:
        message = str(error).splitlines()[0]
        bad_cell = re.search(r"could not convert string (.*) to float64 at row (\d+), column (\d+)", message)
        if bad_cell:
            cell, row, column = bad_cell[1], int(bad_cell[2]), int(bad_cell[3])
            value = cell.removeprefix("'").removesuffix("'")  # numpy quotes the cell (and cuts a long one)
            name = names[column - 1] if column <= len(names) else f"#{column}"
            line = line_of(row)
            hint = " (separate the values with commas)" if ";" in value or "\\t" in value else ""
            raise DataError(f"{source} line {line}: column '{name}' holds {shown(value)}, not a number{hint}") from None
        widths = re.search(r"number of columns changed from (\d+) to (\d+) at row (\d+)", message)
        if widths:
            expected, found, row = widths.groups()
            line = line_of(int(row) - 1)  # numpy counts this row from 1
            columns = "column" if found == "1" else "columns"
            raise DataError(f"{source} line {line}: {found} {columns} where the rows above have {expected}") from None
        # numpy's other reasons speak of its own arguments (usecols, dtype): nothing a caller can act on.
        raise DataError(f"{source} is not numbers separated by commas, one row per line") from None
    if table.size and table.shape[1] != len(names):
        raise DataError(f"{source}: the rows have {table.shape[1]} columns, but the header names {len(names)}")
    return table


def check_values(
    table: np.ndarray,
    names: list[str],
    schema: Schema,
    source: str,
    first_line: int,
    line_numbers: Sequence[int] | None = None,
) -> None:
    """Finite numbers everywhere; whole numbers in int columns; class indices in a classification label.

    A bad row is named by its line (`line_numbers[row]`, else `first_line + row`), or by its number when
    `first_line` is 0 (a table that is not a file)."""
    whole = set(schema.whole_number_columns)
    for position, name in enumerate(names):
        values = table[:, position]
        bad = ~np.isfinite(values)
        rule = "a finite number"
        if name in whole:
            bad |= values != np.round(values)
            rule = "a whole number"
        if name == schema.label and schema.is_classification:
            bad |= (values < 0) | (values > MAX_CLASS_INDEX)
            rule = f"a class index (an integer from 0 to {MAX_CLASS_INDEX:,}); map class names to 0, 1, 2, ..."
        if bad.any():
            row = int(np.argmax(bad))
            kind = "the label" if name == schema.label else "a feature"
            if line_numbers is not None:
                line = f" line {line_numbers[row]}"
            else:
                line = f" line {first_line + row}" if first_line else f" row {row + 1}"
            raise DataError(f"{source}{line}: column '{name}' ({kind}) holds {values[row]:g}; it must be {rule}")


def channel_files(name: str, directory: Path) -> list[Path]:
    """Every `*.csv` under a channel's folder, in any sub-folder, linked ones included, in path order.

    A file or folder reached by two paths (links) is read once, by the first in path order; a link to nothing
    is refused by name, since the data it stood for would be missing.
    """
    if not directory.is_dir():
        raise DataError(f"channel '{name}' is missing: no folder at {directory}")
    found: dict[str, list[Path]] = collections.defaultdict(list)
    visited = set()
    for folder, subfolders, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a folder reached again through a link, or a link back up the tree
            subfolders.clear()
            continue
        visited.add(real)
        subfolders.sort()  # the same walk, so the same rows in the same order, on every host and every run
        for file_name in sorted(names):
            path = Path(folder) / file_name
            if path.is_symlink() and not path.exists():
                raise DataError(f"channel '{name}': {path} is a link to nothing")
            if file_name.endswith(".csv") and path.is_file():
                found[os.path.realpath(path)].append(path)
    if not found:
        raise DataError(f"channel '{name}' holds no .csv files in {directory}")
    return sorted(min(paths) for paths in found.values())


def row_capacity(path: Path, width: int) -> int:
    """At least the number of rows a file holds: a row of `width` numbers takes at least 2 x width bytes."""
    return path.stat().st_size // (2 * width) + 1


def csv_chunks(path: Path, schema: Schema) -> Iterator[np.ndarray]:
    """One channel file as chunks of rows [label, *features] in the schema's order, each checked.

    Read CHUNK_LINES lines at a time, so that a file never has to fit in memory as text.
    """
    try:
        with path.open(encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not part of the header
            yield from _chunks_of(handle, path, schema)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from error
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text: is it a CSV file?") from None


def _chunks_of(handle: TextIO, path: Path, schema: Schema) -> Iterator[np.ndarray]:
    source = str(path)
    first_number, first = 1, handle.readline()
    while first and not first.strip():
        first_number, first = first_number + 1, handle.readline()
    if not first:
        return
    first_row = split_cells(first)
    columns = header_columns(first_row, schema, source)
    wanted = [schema.label, *schema.feature_names]
    if columns is None:
        if len(first_row) != len(wanted):
            raise DataError(
                f"{path} has no header and {len(first_row)} columns; a file without a header holds "
                f"the label, then data.py's {len(schema.features)} features in order ({quoted(schema.feature_names)}). "
                "Add a header row naming the columns, or reorder them."
            )
        names, positions, pending = wanted, None, [(first_number, first)]
        width_rule = "where the rows above have"
    else:
        names, positions, pending = columns, column_positions(columns, schema, source, label=True), []
        width_rule = "but the header names"
    numbered = enumerate(handle, first_number + 1)
    while True:
        # Blank lines are taken out before parsing, and each row keeps its line number for the messages.
        chunk = pending + [(number, line) for number, line in itertools.islice(numbered, CHUNK_LINES) if line.strip()]
        pending = []
        if not chunk:
            return
        numbers = [number for number, _ in chunk]
        cells = len(split_cells(chunk[0][1]))
        if cells != len(names):  # numpy compares the rows of one chunk with each other only
            raise DataError(f"{source} line {numbers[0]}: the row has {cells} columns, {width_rule} {len(names)}")
        table = parse_numbers("".join(line for _, line in chunk), source, names, line_numbers=numbers)
        ordered = table if positions is None else table[:, positions]
        check_values(ordered, wanted, schema, source, first_line=numbers[0], line_numbers=numbers)
        if ordered.size:
            yield ordered


class RowBuffer:
    """Rows of [label, *features] gathered file by file: into one array in memory, or appended to a `.npy`
    file that is then memory-mapped.

    The file is written with plain writes, not through a map, so a full disk is an OSError naming the
    file (a write through a map would kill the process with SIGBUS, leaving no failure file).
    """

    def __init__(self, capacity: int, width: int, mapped_file: Path | None) -> None:
        self.width, self.filled, self.mapped_file = width, 0, mapped_file
        self.array = np.empty((capacity, width), dtype=np.float64) if mapped_file is None else None
        self.handle = None
        if mapped_file is not None:
            mapped_file.parent.mkdir(parents=True, exist_ok=True)
            self.handle = mapped_file.open("wb")
            self.handle.write(npy_header(0, width))  # rewritten with the row count at the end

    def add(self, rows: np.ndarray) -> None:
        if self.handle is None:
            self.array[self.filled : self.filled + len(rows)] = rows
        else:
            self.handle.write(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
        self.filled += len(rows)

    def rows(self) -> np.ndarray:
        if self.handle is None:
            return self.array[: self.filled]
        self.handle.seek(0)
        self.handle.write(npy_header(self.filled, self.width))
        self.handle.close()
        return np.load(self.mapped_file, mmap_mode="r")

    def close(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.close()


def npy_header(rows: int, width: int) -> bytes:
    """The header of a `.npy` file of rows x width float64, always NPY_HEADER_BYTES long (so the row count can
    be written last, over the first one)."""
    description = repr({"descr": "<f8", "fortran_order": False, "shape": (rows, width)})
    size = NPY_HEADER_BYTES - 10  # after the magic string, the version and the header's length
    return b"\x93NUMPY\x01\x00" + size.to_bytes(2, "little") + description.ljust(size - 1).encode() + b"\n"


def read_channel(name: str, directory: Path, schema: Schema, mapped_file: Path | None = None, **limits: int) -> Dataset:
    """All rows of one channel: every `*.csv` file under its folder, in any sub-folder, in path order."""
    return dataset_of(read_rows(name, directory, schema, mapped_file, **limits), schema)


def read_rows(
    name: str,
    directory: Path,
    schema: Schema,
    mapped_file: Path | None = None,
    class_limit: int | None = None,
    hosts: int = 1,
) -> np.ndarray:
    """A channel's rows of [label, *features], in the schema's order.

    The rows go straight into one array, in memory or, given `mapped_file`, memory-mapped from that
    file, so the data never needs to fit in memory, and is never held twice. Class indices must stay
    below `class_limit`; by default below the rows this channel holds over all `hosts` (each holding
    about as many, for a sharded channel), or MIN_CLASS_LIMIT.
    """
    files = channel_files(name, directory)
    width = 1 + len(schema.features)
    # An upper bound, so the rows never move once read: the pages beyond them are never touched.
    buffer = RowBuffer(sum(row_capacity(path, width) for path in files), width, mapped_file)
    starts = []
    try:
        for path in files:
            starts.append(buffer.filled)
            for rows in csv_chunks(path, schema):
                buffer.add(rows)
    except BaseException as error:
        buffer.close()
        if isinstance(error, OSError):  # the disk is full, most likely
            raise DataError(f"cannot write channel '{name}''s parsed rows to {mapped_file}: {error}") from error
        raise
    if not buffer.filled:
        buffer.close()
        raise DataError(f"channel '{name}' has no rows: every .csv file in {directory} is empty")
    rows = buffer.rows()
    if schema.is_classification:
        limit = class_limit if class_limit is not None else class_limit_for(len(rows), hosts)
        check_class_count(rows[:, 0], limit, files, starts, schema)
    return rows


def class_limit_for(rows: int, hosts: int = 1) -> int:
    """The bound on class indices of a channel of `rows` rows on each of `hosts` hosts."""
    return max(MIN_CLASS_LIMIT, rows * hosts)


def check_class_count(labels: np.ndarray, limit: int, files: list[Path], starts: list[int], schema: Schema) -> None:
    """Refuse a class index at or beyond `limit`: it sets how many classes (network outputs) the model
    has, and classes are numbered 0, 1, 2, ... with rows of each, so one beyond the rows is a mistake."""
    beyond = labels >= limit
    if not beyond.any():
        return
    row = int(np.argmax(beyond))
    index = int(np.searchsorted(starts, row, side="right")) - 1
    path, line = files[index], data_line(files[index], row - starts[index], schema)
    raise DataError(
        f"{path} line {line}: class index {labels[row]:.0f} in column '{schema.label}' is beyond what the data "
        f"can hold (at most {limit - 1:,}: classes are numbered 0, 1, 2, ... and each needs rows); "
        "number the classes from 0 without gaps"
    )


def data_line(path: Path, row: int, schema: Schema) -> int:
    """The line number of a file's row-th row of numbers (from 0), past blank lines and a header."""
    with path.open(encoding="utf-8-sig") as handle:
        filled = ((number, line) for number, line in enumerate(handle, 1) if line.strip())
        first_number, first = next(filled)
        has_header = header_columns(split_cells(first), schema, str(path)) is not None
        if not has_header and row == 0:
            return first_number
        for seen, (number, _) in enumerate(filled, 0 if has_header else 1):
            if seen == row:
                return number
    raise ValueError(f"{path} has no row {row}")


def dataset_of(rows: np.ndarray, schema: Schema) -> Dataset:
    """Rows of [label, *features] as a Dataset: the features a view of them, class indices as integers."""
    labels = rows[:, 0].astype(np.int64) if schema.is_classification else rows[:, 0]
    return Dataset(features=rows[:, 1:], labels=labels)


def write_csv(path: Path, table: Table, integer_columns: Iterable[str] = ()) -> None:
    """A table as CSV with a header row: numbers in their shortest exact form, whole-number columns as integers."""
    whole = {table.columns.index(name) for name in integer_columns if name in table.columns}
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(table.columns)]
    for row in np.asarray(table.rows, dtype=np.float64).tolist():
        lines.append(",".join(str(int(value)) if i in whole else repr(value) for i, value in enumerate(row)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def dataset_from_table(table: Table, schema: Schema, source: str = "sample_data()") -> Dataset:
    """A Table (data.py's sample data) checked against the schema like a channel file."""
    positions = column_positions(list(table.columns), schema, source, label=True)
    ordered = np.asarray(table.rows, dtype=np.float64)[:, positions]
    check_values(ordered, [schema.label, *schema.feature_names], schema, source, first_line=0)
    return dataset_of(ordered, schema)


def column_moments(features: np.ndarray, labels: np.ndarray | None = None) -> tuple[int, np.ndarray, np.ndarray]:
    """Rows, and each column's mean and variance: the features' and, given labels, the label's as one more.

    Computed MOMENT_ROWS rows at a time and combined (Chan's formula), so a memory-mapped channel is
    never copied whole into memory.
    """
    count, mean, squares = 0, None, None
    for start in range(0, len(features), MOMENT_ROWS):
        block = np.asarray(features[start : start + MOMENT_ROWS], dtype=np.float64)
        if labels is not None:
            block = np.column_stack([block, labels[start : start + MOMENT_ROWS]])
        rows, block_mean = len(block), block.mean(axis=0)
        block_squares = ((block - block_mean) ** 2).sum(axis=0)
        if mean is None:
            count, mean, squares = rows, block_mean, block_squares
            continue
        delta = block_mean - mean
        total = count + rows
        mean = mean + delta * rows / total
        squares = squares + block_squares + delta**2 * count * rows / total
        count = total
    if mean is None:
        width = features.shape[1] + (labels is not None)
        return 0, np.zeros(width), np.zeros(width)
    return count, mean, squares / count


def table_of(dataset: Dataset, schema: Schema) -> Table:
    return Table((schema.label, *schema.feature_names), np.column_stack([dataset.labels, dataset.features]))
