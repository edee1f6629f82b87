"""StopTrainingJob sends SIGTERM: the job stops cleanly, keeps its checkpoint, and a new job resumes from it."""

import re
import signal
import subprocess
import sys
import time

import pytest

from {{ cookiecutter.package_name }}._runtime.checkpoints import CHECKPOINT_FOLDER
from {{ cookiecutter.package_name }}._runtime.framework import MODEL_VERSION

from .support import PACKAGE, child_environment, make_tree, run_cli, set_hyperparameters

pytestmark = pytest.mark.slow

EPOCHS = 30


def checkpoint_folders(tree):
    return sorted((tree / "checkpoints").glob(f"{CHECKPOINT_FOLDER}-*"))


def stop_after_first_checkpoint(tree):
    child = subprocess.Popen(
        # Its output goes nowhere: an unread pipe fills up and blocks the job it is meant to watch.
        [sys.executable, "-m", PACKAGE, "train"],
        env=child_environment(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not any((tree / "checkpoints").rglob("*.index")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    return child.wait(timeout=120)


def test_sigterm_keeps_a_checkpoint_and_the_next_job_resumes_from_it(tmp_path):
    tree = make_tree(tmp_path / "ml")
    (tree / "checkpoints").mkdir()  # what SageMaker does for a job with a CheckpointConfig
    set_hyperparameters(tree, epochs=10_000)  # far more than it gets to run before the stop
    assert stop_after_first_checkpoint(tree) == 1
    assert "stopped by signal SIGTERM" in (tree / "output" / "failure").read_text()
    (folder,) = checkpoint_folders(tree)
    assert any(folder.rglob("*.index"))
    assert not (tree / "model" / MODEL_VERSION).exists()

    # A job with other hyperparameters in the same checkpoint location (another job of a tuning job)
    # does not resume it, and leaves it for the job it belongs to.
    set_hyperparameters(tree, epochs=2, seed=7)
    other = run_cli("train", base_dir=tree)
    assert other.returncode == 0, other.stderr[-3000:]
    assert re.search(r"epoch 1/2", other.stdout + other.stderr), "the other job resumed a checkpoint not its own"
    assert checkpoint_folders(tree) == [folder]

    set_hyperparameters(tree, epochs=EPOCHS, seed=0)  # the next job asks for fewer in all
    resumed = run_cli("train", base_dir=tree)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    first_epoch = int(re.search(r"epoch (\d+)/", log).group(1))
    assert first_epoch > 1, "the second job started from scratch instead of resuming"
    assert f"epoch {EPOCHS}/{EPOCHS}" in log
    assert (tree / "model" / MODEL_VERSION / "saved_model.pb").exists()
    assert checkpoint_folders(tree) == []
