import numpy as np
import pytest
import tensorflow as tf

from {{ cookiecutter.package_name }}.data import sample_dataset, split
from {{ cookiecutter.package_name }}.hyperparameters import defaults
from {{ cookiecutter.package_name }}.model import HYPERPARAMETERS, MODEL_VERSION, Model


@pytest.fixture(scope="module")
def datasets():
    return split(sample_dataset(), 0.2, seed=7)


@pytest.fixture(scope="module")
def model(datasets):
    train, _ = datasets
    return Model.fit(train.features, train.labels, defaults(HYPERPARAMETERS))


def test_learns_the_sample_data(datasets, model):
    _, validation = datasets
    assert np.mean(model.predict(validation.features) == validation.labels) > 0.85
    assert model.num_features == 4


def test_hyperparameters_reach_the_network(datasets):
    train, _ = datasets
    small = Model.fit(train.features, train.labels, {**defaults(HYPERPARAMETERS), "hidden_units": 7, "epochs": 1})
    assert small._owner.layers[1].units == 7


def test_saves_a_versioned_savedmodel_for_tensorflow_serving(model, tmp_path):
    path = model.save(tmp_path)
    assert path == tmp_path / MODEL_VERSION
    assert (path / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_VERSION]
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert signature.structured_input_signature[1]


def test_save_and_load_give_the_same_predictions(model, tmp_path):
    model.save(tmp_path)
    features = sample_dataset().features
    np.testing.assert_array_equal(Model.load(tmp_path).predict(features), model.predict(features))


def test_saving_twice_replaces_the_version(model, tmp_path):
    model.save(tmp_path)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_VERSION]


def test_load_without_a_version_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SavedModel version folder"):
        Model.load(tmp_path)


def test_a_finished_run_leaves_no_backup(datasets, tmp_path):
    train, _ = datasets
    Model.fit(train.features, train.labels, {**defaults(HYPERPARAMETERS), "epochs": 2}, checkpoint_dir=tmp_path)
    assert tmp_path.is_dir()
    assert not (tmp_path / "training").exists()
