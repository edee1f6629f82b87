"""Two training hosts on this machine (127.0.0.1 and 127.0.0.2), as SageMaker runs a job with instance_count=2."""

import signal
import time

import numpy as np
import pytest

from {{ cookiecutter.package_name }}._runtime.contract import TrainingJob
from {{ cookiecutter.package_name }}._runtime.distributed import tf_config
from {{ cookiecutter.package_name }}._runtime.environment import Cluster
from {{ cookiecutter.package_name }}._runtime.framework import MODEL_VERSION, FrameworkModel
from {{ cookiecutter.package_name }}._runtime.hyperparameters import defaults
from {{ cookiecutter.package_name }}._runtime.sample_tree import sample_split
from {{ cookiecutter.package_name }}.model import HYPERPARAMETERS

from .cluster import TEST_TIMEOUT_SECONDS, free_ports, host_trees, log_of, start_hosts, wait_all
from .support import CLASSIFICATION, channel, good_enough, set_hyperparameters

pytestmark = [pytest.mark.multi_host, pytest.mark.slow]

# Two hosts sum each global batch's gradient in two parts: the models agree to float32 rounding.
SAME_MODEL_TOLERANCE = 1e-4
# Epochs enough to still be training when a host is killed.
FOREVER = 100_000


@pytest.fixture
def cleanup():
    """Kills whatever host a failing test leaves running."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def train_on_two_hosts(base_dir, cleanup, sharded=False, **hyperparameters):
    trees = host_trees(base_dir, sharded=sharded)
    for tree in trees:
        set_hyperparameters(tree, **hyperparameters)
    processes = start_hosts(trees, free_ports(len(trees)))
    cleanup.extend(processes)
    return trees, processes


def assert_trained(trees, exits):
    assert exits == [0, 0], "\n\n".join(log_of(tree)[-3000:] for tree in trees)
    assert (trees[0] / "model" / MODEL_VERSION / "saved_model.pb").exists()
    assert not (trees[1] / "model" / MODEL_VERSION).exists(), "only the master writes the model"


def answers(trained, rows):
    """What the model serves: class probabilities, or the predicted numbers."""
    return trained.probabilities(rows) if CLASSIFICATION else trained.predict(rows)


def wait_for_epoch(tree, epoch, process):
    deadline = time.monotonic() + TEST_TIMEOUT_SECONDS
    while f"epoch {epoch}/" not in log_of(tree) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"epoch {epoch}/" in log_of(tree), log_of(tree)[-3000:]


def test_tf_config_lists_every_host_in_rank_order():
    cluster = Cluster(("algo-1", "algo-2", "algo-3"), "algo-2", port=7000)
    assert tf_config(cluster) == {
        "cluster": {"worker": ["algo-1:7000", "algo-2:7001", "algo-3:7002"]},
        "task": {"type": "worker", "index": 1},
    }


def test_two_hosts_learn_what_one_host_learns(tmp_path, cleanup):
    trees, processes = train_on_two_hosts(tmp_path, cleanup)
    assert_trained(trees, wait_all(processes, timeout=120))
    assert "the master 127.0.0.1 writes the model" in log_of(trees[1])

    train = channel(trees[0], "train")
    one_host = FrameworkModel.fit(train.features, train.labels, defaults(HYPERPARAMETERS), TrainingJob.single_host())
    rows = channel(trees[0]).features
    two_hosts = FrameworkModel.load(trees[0] / "model")
    np.testing.assert_allclose(
        answers(two_hosts, rows), answers(one_host, rows), rtol=SAME_MODEL_TOLERANCE, atol=SAME_MODEL_TOLERANCE
    )


def test_two_hosts_train_on_their_own_shards(tmp_path, cleanup):
    trees, processes = train_on_two_hosts(tmp_path, cleanup, sharded=True)
    assert_trained(trees, wait_all(processes, timeout=120))
    validation = channel(trees[0])
    predicted = FrameworkModel.load(trees[0] / "model").predict(validation.features)
    assert good_enough(predicted, validation.labels, sample_split()[0].labels)


@pytest.mark.parametrize("killed", [1, 0], ids=["worker-killed", "master-killed"])
def test_the_host_left_alone_fails_naming_the_lost_one(tmp_path, cleanup, killed):
    trees, processes = train_on_two_hosts(tmp_path, cleanup, epochs=FOREVER)
    survivor = 1 - killed
    wait_for_epoch(trees[survivor], 2, processes[survivor])
    processes[killed].send_signal(signal.SIGKILL)
    started = time.monotonic()
    assert processes[survivor].wait(timeout=TEST_TIMEOUT_SECONDS) == 1, log_of(trees[survivor])[-3000:]
    elapsed = time.monotonic() - started
    reason = (trees[survivor] / "output" / "failure").read_text()
    assert f"LostPeerError: lost contact with host 127.0.0.{killed + 1} during training" in reason
    assert elapsed < TEST_TIMEOUT_SECONDS / 2, f"noticed the loss only after {elapsed:.0f} s"
    assert not (trees[survivor] / "model" / MODEL_VERSION).exists()


@pytest.mark.parametrize("absent", [1, 0], ids=["worker-absent", "master-absent"])
def test_a_host_that_never_starts_fails_the_other_after_the_timeout(tmp_path, cleanup, absent):
    trees = host_trees(tmp_path)
    present = 1 - absent
    (process,) = start_hosts([trees[present]], free_ports(len(trees)), DISTRIBUTED_TIMEOUT_SECONDS="10")
    cleanup.append(process)
    assert process.wait(timeout=TEST_TIMEOUT_SECONDS) == 1, log_of(trees[present])[-3000:]
    reason = (trees[present] / "output" / "failure").read_text()
    assert f"lost contact with host 127.0.0.{absent + 1} while waiting 10 s for every host to start" in reason
