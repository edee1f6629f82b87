import json
import re

import pytest

{% if cookiecutter.framework == "sklearn" %}from {{ cookiecutter.package_name }} import model
{% endif %}from {{ cookiecutter.package_name }}._runtime import metrics
from {{ cookiecutter.package_name }}._runtime.framework import FrameworkModel
{%- if cookiecutter.framework == "sklearn" %}
from {{ cookiecutter.package_name }}._runtime.hyperparameters import defaults
{%- endif %}
from {{ cookiecutter.package_name }}._runtime.tables import Schema
from {{ cookiecutter.package_name }}._runtime.training import FAILURE_REASON_LIMIT, failure_reason, main
from {{ cookiecutter.package_name }}.model import HYPERPARAMETERS, TASK

from .support import FEATURES, SCHEMA, channel, environment_for, good_enough, run_cli

METRICS = metrics.METRICS_BY_TASK[TASK]


def set_hyperparameters(tree, values):
    (tree / "input" / "config" / "hyperparameters.json").write_text(json.dumps(values))


def model_files(tree):
    return sorted(path.name for path in (tree / "model").iterdir())


def test_training_writes_model_schema_and_the_tasks_metrics(sagemaker_tree, capsys):
    assert main(environment_for(sagemaker_tree)) == 0
    trained = FrameworkModel.load(sagemaker_tree / "model")
    validation = channel(sagemaker_tree)
    assert good_enough(trained.predict(validation.features), validation.labels, channel(sagemaker_tree, "train").labels)
    assert Schema.load(sagemaker_tree / "model") == SCHEMA
    scores = json.loads((sagemaker_tree / "output" / "data" / "metrics.json").read_text())
    assert set(scores) == {f"{channel}:{name}" for channel in ("train", "validation") for name in METRICS}
    printed = capsys.readouterr().out
    for name, value in scores.items():
        assert f"{name}={value:.6f}" in printed.splitlines()
    assert not (sagemaker_tree / "output" / "failure").exists()


def recording(method, calls):
    """`method`, also keeping what each call returns in `calls`."""

    def record(self, *args):
        calls.append(method(self, *args))
        return calls[-1]

    return record
{%- if cookiecutter.framework != "sklearn" %}


def clock_seconds(shown):
    """0:07, 12:34 or 1:02:03 as seconds."""
    seconds = 0
    for part in shown.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds
{%- endif %}


def test_every_metric_definition_reads_the_figures_the_run_reports(sagemaker_tree, capsys, caplog, monkeypatch):
    reported = []  # the figures of each progress line, as training computed them
{%- if cookiecutter.framework == "sklearn" %}
    monkeypatch.setattr(metrics.FitProgress, "done", recording(metrics.FitProgress.done, reported))
{%- else %}
    monkeypatch.setattr(metrics.EpochProgress, "epoch_done", recording(metrics.EpochProgress.epoch_done, reported))
{%- endif %}
    with caplog.at_level("INFO"):
        assert main(environment_for(sagemaker_tree)) == 0
    # What a job's log holds: the metric lines training prints and the progress lines it logs.
    log = capsys.readouterr().out + caplog.text
    scores = json.loads((sagemaker_tree / "output" / "data" / "metrics.json").read_text())
    expected = {name: [value] for name, value in scores.items()}
    for figures in reported:
        for name, value in figures.items():
            expected.setdefault(name, []).append(value)
    definitions = metrics.metric_definitions(TASK)
    assert sorted(definition["Name"] for definition in definitions) == sorted(expected), "one per reported figure"
    assert len(definitions) <= 40, "SageMaker takes at most 40 metric definitions"
    for definition in definitions:
        assert len(definition["Regex"]) <= 500, definition
        found = [float(value) for value in re.findall(definition["Regex"], log)]
        # Each line shows its figure rounded: six decimals, or a whole number of rows per second.
        tolerance = 0.5 if definition["Name"].endswith("rows_per_second") else 1e-6
        assert found == pytest.approx(expected[definition["Name"]], abs=tolerance), definition
{%- if cookiecutter.framework == "sklearn" %}
    estimator = type(model.build_estimator(defaults(HYPERPARAMETERS))).__name__
    rows = len(channel(sagemaker_tree, "train").labels)
    assert len(reported) == 1
    assert log.count(f"fitting {estimator} on {rows} rows\n") == 1
    assert log.count(f"fitted {estimator} on {rows} rows: ") == 1
{%- else %}
    epochs = int(json.loads((sagemaker_tree / "input" / "config" / "hyperparameters.json").read_text())["epochs"])
    lines = re.findall(r"epoch ([0-9]+)/([0-9]+) train:loss=\S+ rows/s=\S+ elapsed=(\S+) eta=(\S+) host=(\S+)", log)
    assert [(int(epoch), int(total)) for epoch, total, *_ in lines] == [(k, epochs) for k in range(1, epochs + 1)]
    elapsed = [clock_seconds(shown) for _, _, shown, _, _ in lines]
    assert elapsed == sorted(elapsed)
    assert lines[-1][3] == "0:00", "nothing is left after the last epoch"
    assert {host for *_, host in lines} == {"algo-1"}
{%- endif %}

{%- if cookiecutter.framework == "sklearn" %}


def test_the_fit_lines_show_rows_and_time():
    ticks = iter([10.0, 12.5])
    progress = metrics.FitProgress("Ridge", 1000, timer=lambda: next(ticks))
    assert progress.done() == {"train:rows_per_second": 400.0, "train:fit_seconds": 2.5}
{%- else %}


def test_the_estimate_of_the_time_left_averages_this_jobs_epochs(caplog):
    # Resumed after 2 of 6 epochs; this job's epochs take 30 s, then 90 s, then 30 s, then 30 s.
    ticks = iter([0.0, 30.0, 120.0, 150.0, 180.0])
    progress = metrics.EpochProgress(2, 6, "algo-2", timer=lambda: next(ticks))
    with caplog.at_level("INFO"):
        figures = [progress.epoch_done(epoch, 0.5, 300) for epoch in range(3, 7)]
    assert [figure["train:rows_per_second"] for figure in figures] == [10.0, 300 / 90, 10.0, 10.0]
    assert [line.split(" elapsed=")[1] for line in caplog.messages] == [
        "0:30 eta=1:30 host=algo-2",
        "2:00 eta=2:00 host=algo-2",
        "2:30 eta=0:50 host=algo-2",
        "3:00 eta=0:00 host=algo-2",
    ]


def test_durations_show_as_minutes_and_seconds_or_hours():
    shown = [metrics.clock(seconds) for seconds in (0, 7.4, 59.6, 754, 3723)]
    assert shown == ["0:00", "0:07", "1:00", "12:34", "1:02:03"]
{%- endif %}


def test_validation_channel_is_optional(sagemaker_tree):
    config = sagemaker_tree / "input" / "config" / "inputdataconfig.json"
    config.write_text(json.dumps({"train": {"ContentType": "text/csv"}}))
    assert main(environment_for(sagemaker_tree)) == 0
    scores = json.loads((sagemaker_tree / "output" / "data" / "metrics.json").read_text())
    assert not any(name.startswith("validation:") for name in scores)


def test_bad_hyperparameter_fails_with_a_reason_and_no_model(sagemaker_tree):
    name = next(spec.name for spec in HYPERPARAMETERS if spec.type is int)
    set_hyperparameters(sagemaker_tree, {name: "deep"})
    assert main(environment_for(sagemaker_tree)) == 1
    reason = (sagemaker_tree / "output" / "failure").read_text()
    assert reason.startswith(f"HyperparameterError: hyperparameter {name} must be a valid int; given 'deep'")
    assert model_files(sagemaker_tree) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda header: header.replace(SCHEMA.label, "target"), "label column '{label}' is missing from the header"),
        (
            lambda header: header + ",extra",
            "columns not in the schema (data.py's FEATURES and LABEL; remove them or declare them): extra",
        ),
        (lambda header: "x" * len(header), "neither a header naming data.py's columns"),
    ],
)
def test_a_bad_header_in_validation_fails_before_training_naming_the_column(sagemaker_tree, change, message):
    path = sagemaker_tree / "input" / "data" / "validation" / "validation.csv"
    header, *rows = path.read_text().splitlines()
    extra = ",0" if "extra" in change("") else ""
    path.write_text("\n".join([change(header), *(row + extra for row in rows)]) + "\n")
    assert main(environment_for(sagemaker_tree)) == 1
    reason = (sagemaker_tree / "output" / "failure").read_text()
    assert reason.startswith("DataError: ") and str(path) in reason
    assert message.format(label=SCHEMA.label) in reason
    assert model_files(sagemaker_tree) == [], "nothing half-written"


def test_a_label_of_the_wrong_type_names_the_column(sagemaker_tree):
    path = sagemaker_tree / "input" / "data" / "train" / "train.csv"
    header, first, *rows = path.read_text().splitlines()
    cells = dict(zip(header.split(","), first.split(","), strict=True))
    cells[SCHEMA.label] = "not-a-label"
    path.write_text("\n".join([header, ",".join(cells.values()), *rows]) + "\n")
    assert main(environment_for(sagemaker_tree)) == 1
    assert (
        f"line 2: column '{SCHEMA.label}' holds 'not-a-label', not a number"
        in (sagemaker_tree / "output" / "failure").read_text()
    )


def test_headerless_label_first_files_keep_working(sagemaker_tree):
    for name in ("train", "validation"):
        path = sagemaker_tree / "input" / "data" / name / f"{name}.csv"
        dataset = channel(sagemaker_tree, name)
        path.write_text(
            "".join(
                ",".join(map(str, [label, *row])) + "\n"
                for label, row in zip(dataset.labels.tolist(), dataset.features.tolist(), strict=True)
            )
        )
    assert main(environment_for(sagemaker_tree)) == 0
    assert len(FEATURES) == len(Schema.load(sagemaker_tree / "model").features)


def test_missing_train_channel_is_named(sagemaker_tree):
    (sagemaker_tree / "input" / "config" / "inputdataconfig.json").write_text(json.dumps({"validation": {}}))
    assert main(environment_for(sagemaker_tree)) == 1
    assert "no 'train' channel (channels given: validation)" in (sagemaker_tree / "output" / "failure").read_text()


def test_a_successful_retry_clears_the_old_failure(sagemaker_tree):
    failure = sagemaker_tree / "output" / "failure"
    failure.write_text("old reason")
    assert main(environment_for(sagemaker_tree)) == 0
    assert not failure.exists()


def test_a_huge_bad_value_leaves_the_explanation_in_sagemakers_reason(sagemaker_tree):
    name = next(spec.name for spec in HYPERPARAMETERS if spec.type is int)
    set_hyperparameters(sagemaker_tree, {name: "7" * 3000 + "!"})
    assert main(environment_for(sagemaker_tree)) == 1
    reason = (sagemaker_tree / "output" / "failure").read_text()
    assert len(reason) < FAILURE_REASON_LIMIT
    assert reason.startswith(f"HyperparameterError: hyperparameter {name} must be a valid int; given '777")


def test_a_tuning_jobs_reserved_hyperparameters_train(sagemaker_tree, caplog):
    # What automatic model tuning and the SDK add to each training job a tuning job starts.
    set_hyperparameters(
        sagemaker_tree,
        {"_tuning_objective_metric": "validation:accuracy", "sagemaker_estimator_module": "sagemaker.estimator"},
    )
    with caplog.at_level("INFO"):
        assert main(environment_for(sagemaker_tree)) == 0
    assert "left out SageMaker's own hyperparameter(s): _tuning_objective_metric, sagemaker_estimator_module" in (
        caplog.text
    )
    assert (sagemaker_tree / "model" / "schema.json").exists()


def test_failure_reason_keeps_the_start_and_fits_sagemakers_limit():
    reason = failure_reason(ValueError("x" * 5000))
    assert reason.startswith("ValueError: xxx")
    assert len(reason) == FAILURE_REASON_LIMIT


def test_container_command_exit_codes(sagemaker_tree):
    finished = run_cli("train", base_dir=sagemaker_tree)
    assert finished.returncode == 0, finished.stderr
    assert f"validation:{METRICS[0]}=" in finished.stdout
    set_hyperparameters(sagemaker_tree, {"no_such_knob": "1"})
    failed = run_cli("train", base_dir=sagemaker_tree)
    assert failed.returncode == 1
    assert "unknown hyperparameter(s) no_such_knob" in (sagemaker_tree / "output" / "failure").read_text()
