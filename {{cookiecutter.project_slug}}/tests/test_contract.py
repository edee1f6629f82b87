"""model.py and data.py against the contract the runtime reads (`_runtime/contract.py`)."""

from types import SimpleNamespace

import pytest

from {{ cookiecutter.package_name }} import data, model
from {{ cookiecutter.package_name }}._runtime.contract import DefinitionError, check_definitions
from {{ cookiecutter.package_name }}._runtime.framework import BUILDERS


def test_this_projects_files_keep_the_contract():
    check_definitions(model, data, BUILDERS)


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
        ({}, {"LABEL": ""}, "name the label column in LABEL"),
        ({}, {"LABEL": next(iter(data.FEATURES))}, "is also listed among FEATURES"),
        ({}, {"sample_data": None}, "must define sample_data()"),
    ],
)
def test_a_broken_definition_is_refused_naming_the_part(model_changes, data_changes, message):
    with pytest.raises(DefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_definitions(with_changes(model, **model_changes), with_changes(data, **data_changes), BUILDERS)
