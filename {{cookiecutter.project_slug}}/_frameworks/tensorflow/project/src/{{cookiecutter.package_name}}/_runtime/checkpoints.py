"""A checkpoint after every epoch, so that a stopped job resumes where it was; none once training is done."""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow as tf

from .environment import Cluster

# Inside the job's checkpoint folder, followed by the hyperparameters' checkpoint_key. Only the master
# writes there: SageMaker uploads every host's checkpoint folder to the same S3 prefix, and copies that
# prefix to every host of the next job.
CHECKPOINT_FOLDER = "training"


@contextlib.contextmanager
def sigterm_held() -> Iterator[None]:
    """Acts on a SIGTERM only once the block is done.

    StopTrainingJob sends SIGTERM, and the training job's handler raises on it; raised in the
    middle of a save, it would leave a checkpoint that the next job cannot load.
    """
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        signal.raise_signal(signal.SIGTERM)


class EpochCheckpoints:
    """A checkpoint after every epoch, so that a stopped job resumes; removed once training completes.

    Every host saves (TensorFlow's rule for multi-worker training), but only the master into the
    job's checkpoint folder; the others write to a scratch folder of their own.
    """

    def __init__(self, checkpoint_dir: Path | None, cluster: Cluster, key: str, **state: Any) -> None:
        self._checkpoint = tf.train.Checkpoint(**state)
        # Named by the hyperparameters' key: jobs sharing a checkpoint location never resume each other's.
        folder = f"{CHECKPOINT_FOLDER}-{key}"
        self._folder = None if checkpoint_dir is None else checkpoint_dir / folder
        self._manager = None
        if self._folder is not None:
            target = self._folder if cluster.is_master else Path(tempfile.mkdtemp(prefix="checkpoints-"))
            self._manager = tf.train.CheckpointManager(self._checkpoint, str(target), max_to_keep=1)

    def restore(self) -> None:
        """The last checkpoint a stopped job left, if any: every host reads its copy of the master's."""
        latest = None if self._folder is None else tf.train.latest_checkpoint(str(self._folder))
        if latest:
            self._checkpoint.restore(latest).assert_existing_objects_matched()

    def save(self) -> None:
        if self._manager is not None:
            with sigterm_held():
                self._manager.save()

    def remove(self) -> None:
        if self._manager is not None:
            shutil.rmtree(self._manager.directory, ignore_errors=True)
