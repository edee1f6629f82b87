"""model.py and data.py against the contract the runtime reads (`_runtime/contract.py`)."""

from types import SimpleNamespace

import pytest

from {{ cookiecutter.package_name }} import data, model
from {{ cookiecutter.package_name }}._runtime.contract import DefinitionError, TrainedModel, check_definitions
from {{ cookiecutter.package_name }}._runtime.framework import BUILDERS, RUNTIME_HYPERPARAMETERS, FrameworkModel


def test_this_projects_files_keep_the_contract():
    check_definitions(model, data, BUILDERS, RUNTIME_HYPERPARAMETERS)


def test_the_frameworks_model_implements_the_trained_model_protocol(trained_tree):
    assert isinstance(FrameworkModel.load(trained_tree / "model"), TrainedModel)


def test_a_hyperparameter_the_runtime_reads_must_be_declared():
    declared = tuple(spec for spec in model.HYPERPARAMETERS if spec.name != "epochs")
    with pytest.raises(DefinitionError, match="HYPERPARAMETERS must declare epochs: the runtime reads them"):
        check_definitions(with_changes(model, HYPERPARAMETERS=declared), data, BUILDERS, ("epochs",))


def with_changes(module, **changes):
    return SimpleNamespace(**{**vars(module), **changes})


@pytest.mark.parametrize(
    ("model_changes", "data_changes", "message"),
    [
        ({"TASK": "ranking"}, {}, "TASK to one of 'classification', 'regression', not 'ranking'"),
        ({"HYPERPARAMETERS": {"depth": 3}}, {}, "HYPERPARAMETERS as a tuple of Hyperparameter"),
        ({BUILDERS[0]: None}, {}, f"model.py must define {BUILDERS[0]}"),
        ({}, {"FEATURES": {}}, "FEATURES as a non-empty mapping"),
        ({}, {"FEATURES": {"colour": str}}, "feature 'colour' has type <class 'str'>; use float or int"),
        ({}, {"FEATURES": {"a,b": float}}, "without commas"),
        ({}, {"FEATURES": {" a": float}}, "surrounding spaces"),
        ({}, {"FEATURES": {"1.5": float}}, "and not a number"),
        ({}, {"LABEL": ""}, "name the label column in LABEL"),
        ({}, {"LABEL": next(iter(data.FEATURES))}, "is also listed among FEATURES"),
        ({}, {"sample_data": None}, "must define sample_data()"),
    ],
)
def test_a_broken_definition_is_refused_naming_the_part(model_changes, data_changes, message):
    with pytest.raises(DefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_definitions(with_changes(model, **model_changes), with_changes(data, **data_changes), BUILDERS)
