import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.environment import ContractError, SageMakerEnvironment

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


def test_hyperparameters_are_strings_without_platform_keys(sagemaker_tree):
    config = sagemaker_tree / "input" / "config" / "hyperparameters.json"
    config.write_text(json.dumps({"max_depth": 3, "sagemaker_program": "train.py", "criterion": "gini"}))
    assert environment_for(sagemaker_tree).hyperparameters() == {"max_depth": "3", "criterion": "gini"}


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
