import numpy as np

from {{ cookiecutter.package_name }}.data import sample_dataset, split
from {{ cookiecutter.package_name }}.hyperparameters import defaults
from {{ cookiecutter.package_name }}.model import ARTIFACT_NAME, HYPERPARAMETERS, Model


def fitted(**overrides):
    train, _ = split(sample_dataset(), 0.2, seed=7)
    return Model.fit(train.features, train.labels, {**defaults(HYPERPARAMETERS), **overrides})


def test_learns_the_sample_data():
    train, validation = split(sample_dataset(), 0.2, seed=7)
    model = Model.fit(train.features, train.labels, defaults(HYPERPARAMETERS))
    assert np.mean(model.predict(validation.features) == validation.labels) > 0.85
    assert model.num_features == 4


def test_hyperparameters_reach_the_estimator():
    assert fitted(max_depth=1).estimator.get_depth() == 1
    assert fitted(max_depth=0).estimator.get_depth() > 1
    assert fitted(criterion="entropy").estimator.criterion == "entropy"


def test_save_and_load_give_the_same_predictions(tmp_path):
    model = fitted()
    path = model.save(tmp_path / "model")
    assert path.name == ARTIFACT_NAME
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [ARTIFACT_NAME]
    features = sample_dataset().features
    np.testing.assert_array_equal(Model.load(tmp_path / "model").predict(features), model.predict(features))
