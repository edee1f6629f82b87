"""StopTrainingJob sends SIGTERM: the job stops cleanly, keeps its checkpoint, and a new job resumes from it."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }}._runtime.framework import ARTIFACT_NAME, FrameworkModel

from .support import PACKAGE, child_environment, make_tree, run_cli, set_hyperparameters

pytestmark = pytest.mark.slow

EPOCHS = 80


def checkpoints_in(tree):
    return sorted((tree / "checkpoints").glob("checkpoint-*.pt"))


def stop_after_first_checkpoint(tree):
    child = subprocess.Popen(
        # Its output goes nowhere: an unread pipe fills up and blocks the job it is meant to watch.
        [sys.executable, "-m", PACKAGE, "train"],
        env=child_environment(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not checkpoints_in(tree) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)
    return child.wait(timeout=120)


def test_sigterm_keeps_a_checkpoint_and_the_next_job_resumes_to_the_same_model(tmp_path):
    stopped = make_tree(tmp_path / "stopped")
    (stopped / "checkpoints").mkdir()  # what SageMaker does for a job with a CheckpointConfig
    set_hyperparameters(stopped, epochs=100_000)  # far more than it gets to run before the stop
    assert stop_after_first_checkpoint(stopped) == 1
    assert "stopped by signal SIGTERM" in (stopped / "output" / "failure").read_text()
    (checkpoint,) = checkpoints_in(stopped)
    stopped_after = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= stopped_after < EPOCHS
    assert not (stopped / "model" / ARTIFACT_NAME).exists()

    # A job with other hyperparameters in the same checkpoint location (another job of a tuning job)
    # does not resume it, and leaves it for the job it belongs to.
    set_hyperparameters(stopped, epochs=2, seed=7)
    other = run_cli("train", base_dir=stopped)
    assert other.returncode == 0, other.stderr
    assert "resuming" not in other.stderr
    assert checkpoints_in(stopped) == [checkpoint]

    set_hyperparameters(stopped, epochs=EPOCHS, seed=0)  # the next job asks for fewer epochs in all
    resumed = run_cli("train", base_dir=stopped)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {checkpoint} after epoch {stopped_after}" in resumed.stderr
    assert not checkpoint.exists()

    uninterrupted = make_tree(tmp_path / "uninterrupted")
    (uninterrupted / "checkpoints").mkdir()
    set_hyperparameters(uninterrupted, epochs=EPOCHS)
    assert run_cli("train", base_dir=uninterrupted).returncode == 0
    expected = FrameworkModel.load(uninterrupted / "model").state_dict()
    resumed_state = FrameworkModel.load(stopped / "model").state_dict()
    assert resumed_state.keys() == expected.keys()
    for name, tensor in resumed_state.items():
        np.testing.assert_allclose(tensor.numpy(), expected[name].numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
