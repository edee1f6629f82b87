import json

from {{ cookiecutter.package_name }}.__main__ import main

from .support import run_cli


def test_sample_data_writes_a_sagemaker_tree(tmp_path, capsys):
    assert main(["sample-data", str(tmp_path / "ml")]) == 0
    assert (tmp_path / "ml" / "input" / "data" / "train" / "train.csv").stat().st_size > 0
    assert json.loads((tmp_path / "ml" / "input" / "config" / "hyperparameters.json").read_text())
    assert "wrote a SageMaker directory tree" in capsys.readouterr().out


def test_sample_data_splits_the_train_channel_on_request(tmp_path):
    assert main(["sample-data", str(tmp_path / "ml"), "--train-files", "2"]) == 0
    train_dir = tmp_path / "ml" / "input" / "data" / "train"
    assert sorted(path.name for path in train_dir.iterdir()) == ["train-1-of-2.csv", "train-2-of-2.csv"]


def test_hyperparameters_prints_the_table(capsys):
    assert main(["hyperparameters"]) == 0
    assert capsys.readouterr().out.startswith("| Name | Type | Default |")


def test_unknown_command_is_a_usage_error():
    finished = run_cli("fly")
    assert finished.returncode == 2
    assert "invalid choice: 'fly'" in finished.stderr
