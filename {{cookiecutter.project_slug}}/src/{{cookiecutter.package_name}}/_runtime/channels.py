"""Where a training channel's rows live while a job runs: in memory, memory-mapped, or in a warm pool's cache.

Small channels are read into memory. A channel whose CSV files are larger than the job's threshold
(STREAM_DATA_ABOVE_MB) is parsed once, file by file, into a memory-mapped file in the job's scratch
folder: training then reads the rows it needs from there, so the data never has to fit in memory. On a
warm pool, the parsed rows are kept in the pool's cache folder, keyed by the files' contents, the
schema and this module's format, so the next job on that instance skips parsing the same data.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from .environment import SageMakerEnvironment
from .tables import DataError, Dataset, Schema, channel_files, class_limit_for, dataset_of, read_rows

logger = logging.getLogger(__name__)

CACHE_FOLDER = "parsed-channels"
# Part of every cache key: a runtime that parses differently never reuses what an older one kept.
CACHE_FORMAT = "rows-float64-v1"
# File: copied to the instance before the job starts. FastFile: read lazily from S3 through a mount.
READABLE_MODES = ("File", "FastFile")


def contents_key(name: str, directory: Path, schema: Schema) -> str:
    """A digest of the channel's files (names and bytes), the schema they are read against and the format."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{schema.to_json()!r}".encode())
    for path in channel_files(name, directory):
        digest.update(b"\0" + path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(2**22):
                digest.update(block)
    return digest.hexdigest()[:32]


def load_channel(
    env: SageMakerEnvironment, name: str, schema: Schema, scratch: Path, class_limit: int | None = None, hosts: int = 1
) -> Dataset:
    """The channel's rows, from the warm pool's cache where it holds them, else parsed from its files.

    `class_limit` and `hosts` bound the class indices (see tables.read_rows); `scratch` is the job's
    folder for memory-mapped copies, removed when the job ends.
    """
    mode = str(env.input_data_config().get(name, {}).get("TrainingInputMode", "File"))
    if mode not in READABLE_MODES:
        raise DataError(
            f"channel '{name}' uses input mode {mode}; this container reads its channels as files: "
            f"use {' or '.join(READABLE_MODES)} (FastFile streams the files from S3 as they are read)"
        )
    directory = env.channel_dir(name)
    size = sum(path.stat().st_size for path in channel_files(name, directory))
    mapped = size > env.stream_data_above_bytes
    if mapped:
        logger.info("channel %s: %.1f MB of CSV, read memory-mapped (above STREAM_DATA_ABOVE_MB)", name, size / 2**20)
    limits = {"class_limit": class_limit, "hosts": hosts}
    cache = env.warm_pool_cache_dir
    if cache is None:
        return dataset_of(
            read_rows(name, directory, schema, scratch / f"{name}.npy" if mapped else None, **limits), schema
        )
    folder = cache / CACHE_FOLDER
    entry = folder / f"{name}-{contents_key(name, directory, schema)}.npy"
    if entry.exists():
        rows = np.load(entry, mmap_mode="r" if mapped else None)
        if schema.is_classification and rows[:, 0].max() >= (class_limit or class_limit_for(len(rows), hosts)):
            read_rows(name, directory, schema, None, **limits)  # parsed again, for the message naming the line
        logger.info("channel %s: parsed rows from the warm pool's cache, %s", name, entry)
        return dataset_of(rows, schema)
    partial = folder / f".{entry.name}.partial"
    try:
        read_rows(name, directory, schema, partial, **limits)
        os.replace(partial, entry)
    finally:
        partial.unlink(missing_ok=True)
    for older in [*folder.glob(f"{name}-*.npy"), *folder.glob(f".{name}-*")]:
        if older != entry:
            older.unlink()  # one entry per channel, and no leftovers of a killed job: the cache does not grow
    logger.info("channel %s: parsed rows kept in the warm pool's cache, %s", name, entry)
    return dataset_of(np.load(entry, mmap_mode="r" if mapped else None), schema)
