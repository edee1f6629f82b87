import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}._runtime.environment import (
    DEFAULT_DISTRIBUTED_PORT,
    Cluster,
    ContractError,
    SageMakerEnvironment,
)

from .support import environment_for


def test_paths_default_to_opt_ml():
    env = SageMakerEnvironment.from_environ({})
    assert env.model_dir == Path("/opt/ml/model")
    assert env.failure_file == Path("/opt/ml/output/failure")
    assert env.channel_dir("train") == Path("/opt/ml/input/data/train")


def test_base_dir_moves_every_path(tmp_path):
    env = environment_for(tmp_path)
    assert env.input_config_dir == tmp_path / "input" / "config"
    assert env.output_data_dir == tmp_path / "output" / "data"
    assert env.checkpoint_dir == tmp_path / "checkpoints"


def test_toolkit_variables_win_over_the_base_dir(tmp_path):
    env = environment_for(tmp_path, SM_MODEL_DIR="/elsewhere/model", SM_CHANNEL_TRAIN="/data/train", SM_NUM_GPUS="2")
    assert env.model_dir == Path("/elsewhere/model")
    assert env.channel_dir("train") == Path("/data/train")
    assert env.channel_dir("validation") == tmp_path / "input" / "data" / "validation"
    assert env.num_gpus == 2


def test_hyperparameters_are_strings_as_given(sagemaker_tree):
    # SageMaker's own names stay in: hyperparameters.parse leaves them out, in one place.
    config = sagemaker_tree / "input" / "config" / "hyperparameters.json"
    config.write_text(json.dumps({"max_depth": 3, "sagemaker_program": "train.py", "criterion": "gini"}))
    assert environment_for(sagemaker_tree).hyperparameters() == {
        "max_depth": "3",
        "sagemaker_program": "train.py",
        "criterion": "gini",
    }


def test_missing_config_files_mean_defaults(tmp_path):
    env = environment_for(tmp_path)
    assert env.hyperparameters() == {}
    assert env.resource_config()["hosts"] == ["algo-1"]
    assert env.channels() == []


def test_malformed_config_names_the_file(sagemaker_tree):
    (sagemaker_tree / "input" / "config" / "hyperparameters.json").write_text("{not json")
    with pytest.raises(ContractError, match=r"hyperparameters\.json"):
        environment_for(sagemaker_tree).hyperparameters()


def test_channels_come_from_inputdataconfig_then_folders(sagemaker_tree):
    env = environment_for(sagemaker_tree)
    assert env.channels() == ["train", "validation"]
    (sagemaker_tree / "input" / "config" / "inputdataconfig.json").unlink()
    assert env.channels() == ["train", "validation"]


def write_resources(tree, **resources):
    (tree / "input" / "config" / "resourceconfig.json").write_text(json.dumps(resources))


def test_the_sample_tree_is_a_cluster_of_one(sagemaker_tree):
    cluster = environment_for(sagemaker_tree).cluster()
    assert (cluster.size, cluster.rank, cluster.is_master, cluster.peers) == (1, 0, True, ())
    assert cluster == Cluster.single_host()
    assert cluster.address(0) == ("algo-1", DEFAULT_DISTRIBUTED_PORT)


def test_cluster_facts_come_from_resourceconfig_and_variables(sagemaker_tree):
    # SageMaker lists the hosts in no promised order: every host sorts them, so all agree on the master.
    hosts = ["algo-3", "algo-1", "algo-2"]
    write_resources(sagemaker_tree, current_host="algo-2", hosts=hosts, network_interface_name="ens5")
    env = environment_for(sagemaker_tree, DISTRIBUTED_PORT="7000", DISTRIBUTED_TIMEOUT_SECONDS="30")
    cluster = env.cluster()
    assert cluster.hosts == ("algo-1", "algo-2", "algo-3")
    assert (cluster.rank, cluster.master, cluster.is_master) == (1, "algo-1", False)
    assert cluster.peers == ("algo-1", "algo-3")
    assert cluster.network_interface == "ens5"
    assert cluster.timeout_seconds == 30
    assert [cluster.address(rank) for rank in range(3)] == [("algo-1", 7000), ("algo-2", 7001), ("algo-3", 7002)]


@pytest.mark.parametrize(
    ("resources", "variables", "message"),
    [
        ({"current_host": "algo-9", "hosts": ["algo-1", "algo-2"]}, {}, "current host 'algo-9' is not among"),
        ({"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}, {}, "distinct hosts"),
        ({"current_host": "algo-1", "hosts": []}, {}, "distinct hosts"),
        ({"hosts": ["algo-1"]}, {}, "needs 'hosts' and 'current_host'"),
        ({"current_host": "algo-1", "hosts": ["algo-1"]}, {"DISTRIBUTED_PORT": "eighty"}, "DISTRIBUTED_PORT"),
    ],
)
def test_a_malformed_cluster_says_what_is_wrong(sagemaker_tree, resources, variables, message):
    write_resources(sagemaker_tree, **resources)
    with pytest.raises(ContractError, match=message):
        environment_for(sagemaker_tree, **variables).cluster()


def test_channel_distribution_defaults_to_fully_replicated(sagemaker_tree):
    config = sagemaker_tree / "input" / "config" / "inputdataconfig.json"
    channels = json.loads(config.read_text())
    channels["train"]["S3DistributionType"] = "ShardedByS3Key"
    del channels["validation"]["S3DistributionType"]
    config.write_text(json.dumps(channels))
    env = environment_for(sagemaker_tree)
    assert (env.distribution("train"), env.distribution("validation")) == ("ShardedByS3Key", "FullyReplicated")
