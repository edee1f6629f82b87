import json

from {{ cookiecutter.package_name }}.model import HYPERPARAMETERS, Model
from {{ cookiecutter.package_name }}.train import FAILURE_REASON_LIMIT, failure_reason, main

from .support import environment_for, run_cli


def set_hyperparameters(tree, values):
    (tree / "input" / "config" / "hyperparameters.json").write_text(json.dumps(values))


def test_training_writes_model_and_metrics(sagemaker_tree, capsys):
    assert main(environment_for(sagemaker_tree)) == 0
    assert Model.load(sagemaker_tree / "model").num_features == 4
    metrics = json.loads((sagemaker_tree / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation:accuracy"] > 0.85
    printed = capsys.readouterr().out
    assert "train:accuracy=" in printed
    assert f"validation:accuracy={metrics['validation:accuracy']:.6f}" in printed
    assert not (sagemaker_tree / "output" / "failure").exists()


def test_validation_channel_is_optional(sagemaker_tree):
    config = sagemaker_tree / "input" / "config" / "inputdataconfig.json"
    config.write_text(json.dumps({"train": {"ContentType": "text/csv"}}))
    assert main(environment_for(sagemaker_tree)) == 0
    assert "validation:accuracy" not in json.loads((sagemaker_tree / "output" / "data" / "metrics.json").read_text())


def test_bad_hyperparameter_fails_with_a_reason_and_no_model(sagemaker_tree):
    name = next(spec.name for spec in HYPERPARAMETERS if spec.type is int)
    set_hyperparameters(sagemaker_tree, {name: "deep"})
    assert main(environment_for(sagemaker_tree)) == 1
    reason = (sagemaker_tree / "output" / "failure").read_text()
    assert reason.startswith(f"HyperparameterError: hyperparameter {name}='deep' is not a valid int")
    assert not any((sagemaker_tree / "model").iterdir())


def test_missing_train_channel_is_named(sagemaker_tree):
    (sagemaker_tree / "input" / "config" / "inputdataconfig.json").write_text(json.dumps({"validation": {}}))
    assert main(environment_for(sagemaker_tree)) == 1
    assert "no 'train' channel (channels given: validation)" in (sagemaker_tree / "output" / "failure").read_text()


def test_a_successful_retry_clears_the_old_failure(sagemaker_tree):
    failure = sagemaker_tree / "output" / "failure"
    failure.write_text("old reason")
    assert main(environment_for(sagemaker_tree)) == 0
    assert not failure.exists()


def test_failure_reason_keeps_the_start_and_fits_sagemakers_limit():
    reason = failure_reason(ValueError("x" * 5000))
    assert reason.startswith("ValueError: xxx")
    assert len(reason) == FAILURE_REASON_LIMIT


def test_container_command_exit_codes(sagemaker_tree):
    finished = run_cli("train", base_dir=sagemaker_tree)
    assert finished.returncode == 0, finished.stderr
    assert "validation:accuracy=" in finished.stdout
    set_hyperparameters(sagemaker_tree, {"no_such_knob": "1"})
    failed = run_cli("train", base_dir=sagemaker_tree)
    assert failed.returncode == 1
    assert "unknown hyperparameter(s) no_such_knob" in (sagemaker_tree / "output" / "failure").read_text()
