"""What a tuning job searches, derived from the schema, and the launch options the notebook checks first."""

import math

import pytest

from {{ cookiecutter.package_name }}._runtime.hyperparameters import Hyperparameter, as_strings
from {{ cookiecutter.package_name }}._runtime.metrics import metric_definitions, tuning_objective
from {{ cookiecutter.package_name }}._runtime.tuning import (
    TuningError,
    as_request,
    check_job_options,
    parameter_ranges,
)
from {{ cookiecutter.package_name }}.model import HYPERPARAMETERS, TASK

SCHEMA = (
    Hyperparameter("depth", int, 5, "tree depth", minimum=0, maximum=32),
    Hyperparameter("leaf", int, 1, "rows per leaf", minimum=1, maximum=100),
    Hyperparameter("rate", float, 0.01, "step size", minimum=1e-5, maximum=1.0),
    Hyperparameter("momentum", float, 0.9, "momentum", minimum=0.0, maximum=1.0),
    Hyperparameter("loss", str, "gini", "split score", choices=("gini", "entropy", "log_loss")),
    Hyperparameter("shuffle", bool, True, "shuffle rows"),
    Hyperparameter("epochs", int, 10, "passes", minimum=1),
    Hyperparameter("tag", str, "x", "a label"),
)
OPTIONS = {
    "use_spot": False,
    "max_runtime_seconds": 3600,
    "max_wait_seconds": None,
    "keep_alive_seconds": 0,
    "tuning_jobs": 0,
    "tuning_parallel_jobs": 2,
}


def expected_default(spec: Hyperparameter) -> dict | None:
    """The range the schema implies, worked out here independently of tuning.py."""
    if spec.choices:
        values = list(dict.fromkeys(as_strings({"v": choice})["v"] for choice in spec.choices))
        return {"Name": spec.name, "Values": values} if len(values) > 1 else None
    if spec.type is bool:
        return {"Name": spec.name, "Values": ["true", "false"]}
    if spec.type not in (int, float) or spec.minimum is None or spec.maximum is None:
        return None
    low, high = float(spec.minimum), float(spec.maximum)
    if spec.type is int:
        low, high = math.ceil(low), math.floor(high)
    if low >= high:
        return None
    scaling = "Logarithmic" if low > 0 and high / low >= 100 else "Linear"
    return {"Name": spec.name, "MinValue": str(low), "MaxValue": str(high), "ScalingType": scaling}


def by_name(request: dict) -> dict[str, dict]:
    return {found["Name"]: found for ranges in request.values() for found in ranges}


# The project's own schema: whatever model.py declares.


def test_default_ranges_follow_the_declared_schema():
    expected = {spec.name: found for spec in HYPERPARAMETERS if (found := expected_default(spec))}
    assert by_name(as_request(parameter_ranges(HYPERPARAMETERS))) == expected


def test_every_bound_and_choice_is_a_value_training_accepts():
    declared = {spec.name: spec for spec in HYPERPARAMETERS}
    for name, found in parameter_ranges(HYPERPARAMETERS).items():
        for value in found.values or (found.low, found.high):
            declared[name].parse(str(value))


def test_hyperparameters_the_launch_sets_stay_static():
    assert parameter_ranges(HYPERPARAMETERS, fixed=[spec.name for spec in HYPERPARAMETERS]) == {}


def test_the_objective_is_a_validation_metric_training_prints():
    objective = tuning_objective(TASK)
    assert objective["MetricName"].startswith("validation:")
    assert objective["MetricName"] in {definition["Name"] for definition in metric_definitions(TASK)}
    assert objective["Type"] == ("Maximize" if TASK == "classification" else "Minimize")


def test_ranges_outside_the_declared_bounds_are_refused():
    for spec in HYPERPARAMETERS:
        if spec.choices or spec.type not in (int, float):
            continue
        if spec.minimum is not None:
            with pytest.raises(TuningError, match=f"'{spec.name}'.*outside the declared bounds"):
                parameter_ranges(HYPERPARAMETERS, {spec.name: [spec.minimum - 1, spec.minimum + 1]})
        if spec.maximum is not None:
            with pytest.raises(TuningError, match=f"'{spec.name}'.*outside the declared bounds"):
                parameter_ranges(HYPERPARAMETERS, {spec.name: [spec.maximum - 1, spec.maximum + 1]})


def test_choices_that_are_not_declared_are_refused():
    for spec in HYPERPARAMETERS:
        if spec.choices:
            with pytest.raises(TuningError, match=f"'{spec.name}'.*choices among"):
                parameter_ranges(HYPERPARAMETERS, {spec.name: ["surely-not-declared"]})


# Fixed cases on a schema of this file's own.


def test_defaults_on_a_known_schema():
    assert as_request(parameter_ranges(SCHEMA)) == {
        "IntegerParameterRanges": [
            {"Name": "depth", "MinValue": "0", "MaxValue": "32", "ScalingType": "Linear"},
            {"Name": "leaf", "MinValue": "1", "MaxValue": "100", "ScalingType": "Logarithmic"},
        ],
        "ContinuousParameterRanges": [
            {"Name": "rate", "MinValue": "1e-05", "MaxValue": "1.0", "ScalingType": "Logarithmic"},
            {"Name": "momentum", "MinValue": "0.0", "MaxValue": "1.0", "ScalingType": "Linear"},
        ],
        "CategoricalParameterRanges": [
            {"Name": "loss", "Values": ["gini", "entropy", "log_loss"]},
            {"Name": "shuffle", "Values": ["true", "false"]},
        ],
    }


def test_ranges_are_narrowed_and_added():
    overrides = {"depth": [2, 8], "rate": [0.001, 0.1], "loss": ["entropy", "gini"], "epochs": [1, 50], "tag": ["a"]}
    ranges = by_name(as_request(parameter_ranges(SCHEMA, overrides, fixed=["shuffle"])))
    assert ranges == {
        "depth": {"Name": "depth", "MinValue": "2", "MaxValue": "8", "ScalingType": "Linear"},
        "leaf": {"Name": "leaf", "MinValue": "1", "MaxValue": "100", "ScalingType": "Logarithmic"},
        "rate": {"Name": "rate", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"},
        "momentum": {"Name": "momentum", "MinValue": "0.0", "MaxValue": "1.0", "ScalingType": "Linear"},
        "loss": {"Name": "loss", "Values": ["entropy", "gini"]},
        "epochs": {"Name": "epochs", "MinValue": "1", "MaxValue": "50", "ScalingType": "Linear"},
        "tag": {"Name": "tag", "Values": ["a"]},
    }


def test_bool_choices_are_spelled_as_sagemaker_passes_them():
    assert parameter_ranges(SCHEMA, {"shuffle": [True, "no"]})["shuffle"].values == ("true", "false")


@pytest.mark.parametrize(
    ("overrides", "fixed", "message"),
    [
        ({"dept": [1, 2]}, (), r"unknown hyperparameter\(s\) dept; declared: depth, leaf, rate"),
        ({"depth": [-1, 8]}, (), r"'depth'\]=\[-1, 8\] goes outside the declared bounds; allowed: .*>= 0, <= 32"),
        ({"rate": [0.1, 2.0]}, (), r"'rate'\]=\[0.1, 2.0\] goes outside the declared bounds"),
        ({"depth": [8, 8]}, (), r"'depth'\]=\[8, 8\] has low >= high"),
        ({"rate": [0.5, 0.1]}, (), r"'rate'\]=\[0.5, 0.1\] has low >= high"),
        ({"depth": [1.5, 8]}, (), r"'depth'\] is \[low, high\] .*, whole numbers for an int"),
        ({"depth": 8}, (), r"'depth'\] is \[low, high\] within >= 0, <= 32; not 8"),
        ({"depth": [1, 2, 3]}, (), r"'depth'\] is \[low, high\]"),
        ({"loss": ["hinge"]}, (), r"'loss'\] is a list of choices among gini / entropy / log_loss"),
        ({"loss": "gini"}, (), r"'loss'\] is a list of choices among gini / entropy / log_loss; not 'gini'"),
        ({"shuffle": ["maybe"]}, (), r"'shuffle'\] is a list of choices among true / false"),
        ({"depth": [1, 4]}, ("depth",), r"depth: set in hyperparameters and given a range in tuning_ranges"),
    ],
)
def test_bad_ranges_are_refused_naming_the_hyperparameter(overrides, fixed, message):
    with pytest.raises(TuningError, match=message):
        parameter_ranges(SCHEMA, overrides, fixed=fixed)


# The options around a job.


def test_no_spot_no_wait():
    assert check_job_options(**OPTIONS) is None


def test_spot_waits_twice_the_runtime_unless_told():
    assert check_job_options(**{**OPTIONS, "use_spot": True}) == 7200
    assert check_job_options(**{**OPTIONS, "use_spot": True, "max_wait_seconds": 3600}) == 3600


def test_a_warm_pool_and_tuning_with_spot():
    assert check_job_options(**{**OPTIONS, "keep_alive_seconds": 3600}) is None
    assert check_job_options(**{**OPTIONS, "use_spot": True, "tuning_jobs": 4}) == 7200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"use_spot": True, "keep_alive_seconds": 600}, "use_spot=True and keep_alive_seconds=600 do not go together"),
        ({"use_spot": True, "max_wait_seconds": 1800}, "max_wait_seconds=1800 is below max_runtime_seconds=3600"),
        ({"tuning_jobs": 2, "keep_alive_seconds": 600}, "tuning_jobs=2 and keep_alive_seconds=600 do not go together"),
        ({"keep_alive_seconds": 3601}, "keep_alive_seconds is a whole number, 0 to 3600; not 3601"),
        ({"tuning_jobs": -1}, "tuning_jobs is a whole number, 0 or more; not -1"),
        ({"tuning_parallel_jobs": 0}, "tuning_parallel_jobs is a whole number, 1 or more; not 0"),
        ({"max_runtime_seconds": "3600"}, "max_runtime_seconds is a whole number, 1 or more; not '3600'"),
        ({"use_spot": "yes"}, "use_spot is True or False, not 'yes'"),
    ],
)
def test_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(TuningError, match=message):
        check_job_options(**{**OPTIONS, **options})
