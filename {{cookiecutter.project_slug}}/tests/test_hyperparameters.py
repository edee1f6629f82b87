import pytest

from {{ cookiecutter.package_name }}._runtime.hyperparameters import (
    Hyperparameter,
    HyperparameterError,
    as_strings,
    defaults,
    markdown_table,
    parse,
)
from {{ cookiecutter.package_name }}.model import HYPERPARAMETERS

SCHEMA = (
    Hyperparameter("epochs", int, 10, "passes", minimum=1),
    Hyperparameter("rate", float, 0.1, "step", minimum=0.0, maximum=1.0),
    Hyperparameter("shuffle", bool, True, "shuffle rows"),
    Hyperparameter("loss", str, "gini", "loss", choices=("gini", "entropy")),
)


def test_strings_become_typed_values_and_the_rest_default():
    assert parse(SCHEMA, {"epochs": "3", "rate": "0.5", "shuffle": "false"}) == {
        "epochs": 3,
        "rate": 0.5,
        "shuffle": False,
        "loss": "gini",
    }


@pytest.mark.parametrize(("text", "value"), [("4", 4), ("4.0", 4), (" 7 ", 7), ('"5"', 5)])
def test_integer_spellings(text, value):
    assert parse(SCHEMA, {"epochs": text})["epochs"] == value


def test_json_quoted_strings_are_unquoted():
    assert parse(SCHEMA, {"loss": '"entropy"'})["loss"] == "entropy"


@pytest.mark.parametrize("text", ["True", "true", "1", "yes"])
def test_true_spellings(text):
    assert parse(SCHEMA, {"shuffle": text})["shuffle"] is True


def test_unknown_names_are_refused_with_the_allowed_ones():
    with pytest.raises(HyperparameterError, match=r"unknown hyperparameter\(s\) epoch; allowed: epochs, loss"):
        parse(SCHEMA, {"epoch": "3"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"epochs": "ten"}, "epochs='ten' is not a valid int"),
        ({"epochs": "2.5"}, "epochs='2.5' is not a valid int"),
        ({"epochs": "0"}, "epochs=0 is below the minimum 1"),
        ({"rate": "1.5"}, "rate=1.5 is above the maximum 1.0"),
        ({"shuffle": "maybe"}, "shuffle='maybe' is not a valid bool"),
        ({"loss": "hinge"}, "loss='hinge' is not one of: gini, entropy"),
    ],
)
def test_ill_typed_values_name_the_field(raw, message):
    with pytest.raises(HyperparameterError, match=message):
        parse(SCHEMA, raw)


def test_as_strings_spells_values_as_sagemaker_does():
    assert as_strings({"a": True, "b": 3, "c": 0.5, "d": "x"}) == {"a": "true", "b": "3", "c": "0.5", "d": "x"}


def test_defaults_round_trip_through_strings():
    project_defaults = defaults(HYPERPARAMETERS)
    assert parse(HYPERPARAMETERS, as_strings(project_defaults)) == project_defaults


def test_the_table_lists_every_hyperparameter_with_its_default():
    table = markdown_table(SCHEMA).splitlines()
    assert table[0].startswith("| Name | Type | Default |")
    assert [row.split("|")[1].strip() for row in table[2:]] == [f"`{spec.name}`" for spec in SCHEMA]
    assert "| `shuffle` | bool | `true` |" in table[4]
