"""The PyTorch runtime under the contract, for whatever network, columns and task model.py and data.py declare."""

import numpy as np
import pytest
import torch
from torch import nn

from {{ cookiecutter.package_name }} import model
from {{ cookiecutter.package_name }}._runtime.contract import DefinitionError, TrainingJob
from {{ cookiecutter.package_name }}._runtime.environment import Cluster
from {{ cookiecutter.package_name }}._runtime.framework import (
    ARTIFACT_NAME,
    RUNTIME_HYPERPARAMETERS,
    FrameworkModel,
    NoProbabilities,
    choose_device,
)
from {{ cookiecutter.package_name }}._runtime.hyperparameters import defaults
from {{ cookiecutter.package_name }}._runtime.sample_tree import sample_split

from .support import CLASSIFICATION, FEATURES, good_enough

SHORT = 3  # epochs, for tests that need a trained model's shape rather than its skill


def fit(train, checkpoint_dir=None, **overrides):
    params = {**defaults(model.HYPERPARAMETERS), **overrides}
    job = TrainingJob(Cluster.single_host(), checkpoint_dir=checkpoint_dir)
    return FrameworkModel.fit(train.features, train.labels, params, job)


@pytest.fixture(scope="module")
def parts():
    return sample_split()


@pytest.fixture(scope="module")
def trained(parts):
    return fit(parts[0])


def test_learns_the_sample_data(parts, trained):
    train, validation = parts
    assert good_enough(trained.predict(validation.features), validation.labels, train.labels)


def test_answers_one_value_per_row_of_the_task_type(parts, trained):
    train, validation = parts
    predicted = trained.predict(validation.features)
    assert predicted.shape == (len(validation),)
    if CLASSIFICATION:
        assert predicted.dtype == np.int64
        np.testing.assert_array_equal(trained.classes, np.arange(int(train.labels.max()) + 1))
        assert set(predicted) <= set(trained.classes)
    else:
        assert predicted.dtype == np.float64
        assert trained.classes is None


def test_probabilities_are_one_row_per_row_summing_to_one_with_the_predicted_class_likeliest(parts, trained):
    features = parts[1].features
    if not CLASSIFICATION:
        with pytest.raises(NoProbabilities):
            trained.probabilities(features)
        return
    probabilities = trained.probabilities(features)
    assert probabilities.shape == (len(features), len(trained.classes))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(trained.classes[probabilities.argmax(axis=1)], trained.predict(features))


def test_same_seed_same_model_other_seed_other_model(parts):
    first, again, other = (fit(parts[0], epochs=SHORT, seed=seed).state_dict() for seed in (0, 0, 1))
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_save_and_load_give_the_same_answers(parts, trained, tmp_path):
    assert trained.save(tmp_path).name == ARTIFACT_NAME
    assert sorted(path.name for path in tmp_path.iterdir()) == [ARTIFACT_NAME]
    loaded = FrameworkModel.load(tmp_path)
    features = np.concatenate([part.features for part in parts])
    np.testing.assert_array_equal(loaded.predict(features), trained.predict(features))
    if CLASSIFICATION:
        np.testing.assert_array_equal(loaded.classes, trained.classes)
        np.testing.assert_array_equal(loaded.probabilities(features), trained.probabilities(features))


def test_artifact_holds_only_tensors_and_plain_data(trained, tmp_path):
    payload = torch.load(trained.save(tmp_path), weights_only=True)  # refuses pickled code objects
    assert payload["config"]["task"] == model.TASK
    assert payload["config"]["num_features"] == len(FEATURES)


def test_a_finished_run_leaves_no_checkpoint(parts, tmp_path):
    fit(parts[0], checkpoint_dir=tmp_path, epochs=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", RUNTIME_HYPERPARAMETERS)
def test_a_model_py_without_a_hyperparameter_the_runtime_reads_is_refused_naming_it(parts, monkeypatch, name):
    monkeypatch.setattr(model, "HYPERPARAMETERS", tuple(p for p in model.HYPERPARAMETERS if p.name != name))
    with pytest.raises(DefinitionError, match=f"must declare {name}"):
        fit(parts[0], epochs=1)


def test_a_network_whose_outputs_do_not_fit_the_task_is_refused(parts, monkeypatch):
    def build_network(num_features, num_outputs, params):
        return nn.Linear(num_features, num_outputs + 1)

    monkeypatch.setattr(model, "build_network", build_network)
    with pytest.raises(DefinitionError, match="maps 2 rows to outputs of shape"):
        fit(parts[0], epochs=1)


def test_cpu_unless_a_gpu_is_given_and_usable():
    assert choose_device(0).type == "cpu"
    assert choose_device(1).type == ("cuda" if torch.cuda.is_available() else "cpu")
