import numpy as np
import pytest

from {{ cookiecutter.package_name }}.data import sample_dataset, split
from {{ cookiecutter.package_name }}.hyperparameters import defaults
from {{ cookiecutter.package_name }}.model import ARTIFACT_NAME, HYPERPARAMETERS, Model

from .cluster import free_ports, host_trees, start_hosts, wait_all


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


@pytest.mark.multi_host
def test_more_than_one_host_is_refused_on_every_host(tmp_path):
    trees = host_trees(tmp_path)
    exits = wait_all(start_hosts(trees, free_ports(len(trees))), timeout=120)
    assert exits == [1, 1]
    for tree in trees:
        reason = (tree / "output" / "failure").read_text(encoding="utf-8")
        assert "scikit-learn trains on one host, but this job has 2 (127.0.0.1, 127.0.0.2)" in reason
        assert "instance_count=1" in reason
        assert not (tree / "model" / ARTIFACT_NAME).exists()
