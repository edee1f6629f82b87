"""Where a training channel's rows live while a job runs: in memory, memory-mapped, or in a warm pool's cache.

Small channels are read into memory. A channel whose CSV files are larger than the job's threshold
(STREAM_DATA_ABOVE_MB) is parsed once, file by file, into a memory-mapped file on the job's volume:
training then reads the rows it needs from there, so the data never has to fit in memory. On a warm
pool, the parsed rows are kept in the pool's cache folder, keyed by the files' contents and the
schema, so the next job on that instance skips parsing the same data.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from .environment import SageMakerEnvironment
from .tables import DataError, Dataset, Schema, channel_files, dataset_of, read_channel, read_rows

logger = logging.getLogger(__name__)

CACHE_FOLDER = "parsed-channels"
# File: copied to the instance before the job starts. FastFile: read lazily from S3 through a mount.
READABLE_MODES = ("File", "FastFile")


def channel_size(name: str, directory: Path) -> int:
    return sum(path.stat().st_size for path in channel_files(name, directory))


def contents_key(name: str, directory: Path, schema: Schema) -> str:
    """A digest of the channel's files (names and bytes) and of the schema they are read against."""
    digest = hashlib.sha256(repr(schema.to_json()).encode())
    for path in channel_files(name, directory):
        digest.update(b"\0" + path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(2**22):
                digest.update(block)
    return digest.hexdigest()[:32]


def load_channel(env: SageMakerEnvironment, name: str, schema: Schema) -> Dataset:
    """The channel's rows, from the warm pool's cache where it holds them, else parsed from its files."""
    mode = str(env.input_data_config().get(name, {}).get("TrainingInputMode", "File"))
    if mode not in READABLE_MODES:
        raise DataError(
            f"channel '{name}' uses input mode {mode}; this container reads its channels as files: "
            f"use {' or '.join(READABLE_MODES)} (FastFile streams the files from S3 as they are read)"
        )
    directory = env.channel_dir(name)
    size = channel_size(name, directory)
    mapped = size > env.stream_data_above_bytes
    if mapped:
        logger.info("channel %s: %.1f MB of CSV, read memory-mapped (above STREAM_DATA_ABOVE_MB)", name, size / 2**20)
    cache = env.warm_pool_cache_dir
    if cache is None:
        return read_channel(name, directory, schema, env.scratch_dir / f"{name}.npy" if mapped else None)
    folder = cache / CACHE_FOLDER
    entry = folder / f"{name}-{contents_key(name, directory, schema)}.npy"
    if entry.exists():
        logger.info("channel %s: parsed rows from the warm pool's cache, %s", name, entry)
    else:
        partial, saving = folder / f".{entry.name}.partial", folder / f".{entry.name}.saving"
        try:
            rows = read_rows(name, directory, schema, partial)
            with saving.open("wb") as handle:
                np.save(handle, rows)  # only the rows read: the partial file was sized for every line
            os.replace(saving, entry)
        finally:
            partial.unlink(missing_ok=True)
            saving.unlink(missing_ok=True)
        for older in folder.glob(f"{name}-*.npy"):
            if older != entry:
                older.unlink()  # one entry per channel: the cache does not grow job after job
        logger.info("channel %s: parsed rows kept in the warm pool's cache, %s", name, entry)
    return dataset_of(np.load(entry, mmap_mode="r" if mapped else None), schema)


def remove_scratch(env: SageMakerEnvironment) -> None:
    """Delete the memory-mapped copies a job made; the warm pool's cache is kept."""
    for path in env.scratch_dir.glob("*.npy"):
        path.unlink()
