import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }}.data import sample_dataset, split
from {{ cookiecutter.package_name }}.hyperparameters import defaults
from {{ cookiecutter.package_name }}.model import ARTIFACT_NAME, CHECKPOINT_NAME, HYPERPARAMETERS, Model, choose_device


@pytest.fixture(scope="module")
def datasets():
    return split(sample_dataset(), 0.2, seed=7)


def fitted(datasets, **overrides):
    train, _ = datasets
    return Model.fit(train.features, train.labels, {**defaults(HYPERPARAMETERS), **overrides})


def test_learns_the_sample_data(datasets):
    _, validation = datasets
    model = fitted(datasets)
    assert np.mean(model.predict(validation.features) == validation.labels) > 0.85
    assert model.num_features == 4


def test_hyperparameters_reach_the_network(datasets):
    model = fitted(datasets, hidden_units=7, epochs=1)
    assert model.network.layers[0].out_features == 7


def test_same_seed_same_model_other_seed_other_model(datasets):
    first, again, other = fitted(datasets, epochs=3), fitted(datasets, epochs=3), fitted(datasets, epochs=3, seed=1)
    weights = [model.network.layers[0].weight for model in (first, again, other)]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_save_and_load_give_the_same_predictions(datasets, tmp_path):
    model = fitted(datasets)
    assert model.save(tmp_path).name == ARTIFACT_NAME
    assert sorted(path.name for path in tmp_path.iterdir()) == [ARTIFACT_NAME]
    features = sample_dataset().features
    np.testing.assert_array_equal(Model.load(tmp_path).predict(features), model.predict(features))


def test_artifact_holds_only_tensors_and_plain_data(datasets, tmp_path):
    fitted(datasets, epochs=1).save(tmp_path)
    torch.load(tmp_path / ARTIFACT_NAME, weights_only=True)  # refuses pickled code objects


def test_a_finished_run_leaves_no_checkpoint(datasets, tmp_path):
    train, _ = datasets
    Model.fit(train.features, train.labels, {**defaults(HYPERPARAMETERS), "epochs": 2}, checkpoint_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_cpu_unless_a_gpu_is_given_and_usable():
    assert choose_device(0).type == "cpu"
    assert choose_device(1).type == ("cuda" if torch.cuda.is_available() else "cpu")
