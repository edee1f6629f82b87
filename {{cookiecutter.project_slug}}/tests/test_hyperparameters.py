import pytest

from {{ cookiecutter.package_name }}._runtime.hyperparameters import (
    RESERVED,
    Hyperparameter,
    HyperparameterError,
    as_strings,
    checkpoint_key,
    defaults,
    markdown_table,
    parse,
    reserved_given,
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
        ({"epochs": "ten"}, "epochs must be a valid int; given 'ten'"),
        ({"epochs": "2.5"}, "epochs must be a valid int; given '2.5'"),
        ({"epochs": "1e999"}, "epochs must be a valid int; given '1e999'"),
        ({"epochs": "0"}, "epochs is below its minimum 1; given 0"),
        ({"rate": "1.5"}, "rate is above its maximum 1.0; given 1.5"),
        ({"shuffle": "maybe"}, "shuffle must be a valid bool; given 'maybe'"),
        ({"loss": "hinge"}, "loss must be one of: gini, entropy; given 'hinge'"),
    ],
)
def test_ill_typed_values_name_the_field(raw, message):
    with pytest.raises(HyperparameterError, match=message):
        parse(SCHEMA, raw)


@pytest.mark.parametrize(
    "name",
    [
        "_tuning_objective_metric",
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_job_name",
        "sagemaker_estimator_class_name",
        "sagemaker_distributed_dataparallel_enabled",
    ],
)
def test_names_sagemaker_adds_are_accepted_and_left_out(name):
    raw = {"epochs": "3", name: '"validation:accuracy"'}
    assert parse(SCHEMA, raw) == {**defaults(SCHEMA), "epochs": 3}
    assert reserved_given(SCHEMA, raw) == [name]


def test_reserved_names_are_listed_with_their_origin():
    assert "_tuning_objective_metric" in RESERVED
    assert all(origin.strip() for origin in RESERVED.values())


def test_a_long_value_is_echoed_short_after_the_explanation():
    with pytest.raises(HyperparameterError) as raised:
        parse(SCHEMA, {"epochs": "9" * 5000 + "x"})
    message = str(raised.value)
    assert message.startswith("hyperparameter epochs must be a valid int; given '999")
    assert "(5,003 characters)" in message
    assert len(message) < 150


def test_many_unknown_names_are_listed_short():
    with pytest.raises(HyperparameterError) as raised:
        parse(SCHEMA, {f"knob_{index:04d}_{'y' * 200}": "1" for index in range(1000)})
    message = str(raised.value)
    assert message.startswith("unknown hyperparameter(s) knob_0000_")
    assert "and 990 more; allowed: epochs, loss, rate, shuffle" in message
    assert len(message) < 600


def test_checkpoint_keys_differ_by_every_value_but_epochs():
    values = defaults(SCHEMA)
    key = checkpoint_key(values)
    assert checkpoint_key({**values, "epochs": 99}) == key, "more epochs resume the same run"
    assert checkpoint_key({**values, "rate": 0.2}) != key
    assert checkpoint_key({**values, "loss": "entropy"}) != key
    assert checkpoint_key(dict(reversed(values.items()))) == key
    # The jobs of a tuning job may differ in epochs alone, and run side by side: told apart then.
    assert checkpoint_key({**values, "epochs": 99}, with_epochs=True) != checkpoint_key(values, with_epochs=True)


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
