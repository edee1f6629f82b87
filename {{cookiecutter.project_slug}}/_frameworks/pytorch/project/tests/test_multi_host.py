"""Two hosts on this machine train one model together, as a job with instance_count=2 does."""

import signal
import time

import pytest
import torch

from {{ cookiecutter.package_name }}._runtime.framework import ARTIFACT_NAME, FrameworkModel
from {{ cookiecutter.package_name }}._runtime.sample_tree import sample_split

from .cluster import free_ports, host_trees, log_of, start_hosts, wait_all
from .support import channel, good_enough, make_tree, run_cli, set_hyperparameters

pytestmark = [pytest.mark.multi_host, pytest.mark.slow]

# Two hosts split each global batch in two, so gradients are summed in another order than on one
# host: the models agree to float32 rounding, compounded over every step of training.
SAME_MODEL_TOLERANCE = 1e-4


def test_two_hosts_learn_what_one_host_learns(tmp_path):
    trees = host_trees(tmp_path / "cluster")
    assert wait_all(start_hosts(trees, free_ports(len(trees)))) == [0, 0], log_of(trees[0]) + log_of(trees[1])
    master, worker = trees
    assert (master / "model" / ARTIFACT_NAME).exists()
    assert not any((worker / "model").iterdir()), "only the master writes the model"
    assert (master / "output" / "data" / "metrics.json").exists()
    assert not (worker / "output" / "data" / "metrics.json").exists()

    single = make_tree(tmp_path / "single")
    assert run_cli("train", base_dir=single).returncode == 0
    together = FrameworkModel.load(master / "model").state_dict()
    alone = FrameworkModel.load(single / "model").state_dict()
    assert together.keys() == alone.keys()
    for name, tensor in alone.items():
        torch.testing.assert_close(together[name], tensor, atol=SAME_MODEL_TOLERANCE, rtol=SAME_MODEL_TOLERANCE)


def test_hosts_with_their_own_shards_train_one_model(tmp_path):
    trees = host_trees(tmp_path, sharded=True)
    assert wait_all(start_hosts(trees, free_ports(len(trees)))) == [0, 0], log_of(trees[0]) + log_of(trees[1])
    model = FrameworkModel.load(trees[0] / "model")
    validation = channel(trees[0])
    assert good_enough(model.predict(validation.features), validation.labels, sample_split()[0].labels)
    assert not any((trees[1] / "model").iterdir())


def wait_for_training(tree, processes, timeout=120.0):
    deadline = time.monotonic() + timeout
    while "epoch 2/" not in log_of(tree):
        assert all(process.poll() is None for process in processes), log_of(tree)
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)


@pytest.mark.parametrize("lost", [1, 0], ids=["worker-lost", "master-lost"])
def test_a_lost_host_fails_the_others_with_its_name_instead_of_hanging(tmp_path, lost):
    trees = host_trees(tmp_path)
    for tree in trees:
        set_hyperparameters(tree, epochs=1_000_000)
    processes = start_hosts(trees, free_ports(len(trees)))
    try:
        wait_for_training(trees[0], processes)
        processes[lost].send_signal(signal.SIGKILL)
        survivor = 1 - lost
        assert processes[survivor].wait(timeout=60) == 1
    finally:
        for process in processes:
            process.kill()
            process.wait()
    reason = (trees[survivor] / "output" / "failure").read_text(encoding="utf-8")
    assert f"lost contact with 127.0.0.{lost + 1}" in reason
    assert not (trees[survivor] / "model" / ARTIFACT_NAME).exists()


def test_a_host_whose_peers_never_arrive_gives_up_after_the_timeout(tmp_path):
    worker = host_trees(tmp_path)[1]  # the master never starts
    (process,) = start_hosts([worker], free_ports(2), DISTRIBUTED_TIMEOUT_SECONDS="3")
    assert process.wait(timeout=60) == 1
    reason = (worker / "output" / "failure").read_text(encoding="utf-8")
    assert "hosts 127.0.0.1, 127.0.0.2 did not all meet at 127.0.0.1" in reason


def test_a_host_that_stops_answering_fails_the_others_after_the_timeout(tmp_path):
    trees = host_trees(tmp_path)
    for tree in trees:
        set_hyperparameters(tree, epochs=1_000_000)
    processes = start_hosts(trees, free_ports(len(trees)), DISTRIBUTED_TIMEOUT_SECONDS="5")
    try:
        wait_for_training(trees[0], processes)
        processes[1].send_signal(signal.SIGSTOP)  # alive, connected, silent
        assert processes[0].wait(timeout=60) == 1
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert "lost contact with 127.0.0.2" in (trees[0] / "output" / "failure").read_text(encoding="utf-8")
