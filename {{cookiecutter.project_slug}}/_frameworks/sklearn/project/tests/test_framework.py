"""The scikit-learn runtime under the contract, for whatever estimator model.py builds."""

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model
from {{ cookiecutter.package_name }}._runtime.contract import DefinitionError, TrainingJob
from {{ cookiecutter.package_name }}._runtime.framework import ARTIFACT_NAME, FrameworkModel, build
from {{ cookiecutter.package_name }}._runtime.hyperparameters import defaults
from {{ cookiecutter.package_name }}._runtime.sample_tree import sample_split

from .cluster import free_ports, host_trees, start_hosts, wait_all
from .support import CLASSIFICATION, good_enough

PARAMS = defaults(model.HYPERPARAMETERS)


@pytest.fixture(scope="module")
def parts():
    return sample_split()


@pytest.fixture(scope="module")
def fitted(parts):
    train, _ = parts
    return FrameworkModel.fit(train.features, train.labels, PARAMS, TrainingJob.single_host())


def test_learns_the_sample_data(parts, fitted):
    train, validation = parts
    assert good_enough(fitted.predict(validation.features), validation.labels, train.labels)


def test_probabilities_follow_the_task(parts, fitted):
    _, validation = parts
    if not CLASSIFICATION:
        assert fitted.classes is None
        return
    probabilities = fitted.probabilities(validation.features)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1)
    assert probabilities.shape == (len(validation), len(fitted.classes))


def test_save_and_load_give_the_same_predictions(parts, fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    assert path.name == ARTIFACT_NAME
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [ARTIFACT_NAME]
    features = parts[1].features
    np.testing.assert_array_equal(FrameworkModel.load(tmp_path / "model").predict(features), fitted.predict(features))


def test_an_estimator_of_the_other_kind_is_refused(monkeypatch):
    monkeypatch.setattr(model, "TASK", "regression" if CLASSIFICATION else "classification")
    with pytest.raises(DefinitionError, match=r"TASK is .* but build_estimator returned"):
        build(PARAMS)


@pytest.mark.slow
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
