"""The TensorFlow runtime under the contract, for whatever network, columns and task model.py and data.py declare."""

import dataclasses
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from {{ cookiecutter.package_name }} import model
from {{ cookiecutter.package_name }}._runtime.batches import BatchPlan
from {{ cookiecutter.package_name }}._runtime.contract import DefinitionError, TrainedModel, TrainingJob
from {{ cookiecutter.package_name }}._runtime.framework import (
    LITERT_FILE,
    MODEL_VERSION,
    RUNTIME_HYPERPARAMETERS,
    FrameworkModel,
    LiteRTNetwork,
    litert_installed,
)
from {{ cookiecutter.package_name }}._runtime.hyperparameters import defaults
from {{ cookiecutter.package_name }}._runtime.sample_tree import sample_split

from .support import CLASSIFICATION, FEATURES, PACKAGE, child_environment, good_enough, sample_rows


def same_answers(loaded, trained):
    """Class indices exactly; a regression's numbers to float32's rounding (LiteRT's kernels round the last
    bits differently from TensorFlow's)."""
    if CLASSIFICATION:
        np.testing.assert_array_equal(loaded, trained)
    else:
        np.testing.assert_allclose(loaded, trained, rtol=1e-5, atol=1e-6)


needs_litert = pytest.mark.skipif(not litert_installed(), reason="LiteRT is not installed (a GPU project's lock)")

# Enough to tell two models apart by their weights, not to learn anything.
FEW_EPOCHS = 2


@pytest.fixture(scope="module")
def parts():
    return sample_split()


def fit(train, **changes):
    return FrameworkModel.fit(
        train.features, train.labels, {**defaults(model.HYPERPARAMETERS), **changes}, TrainingJob.single_host()
    )


@pytest.fixture(scope="module")
def trained(parts):
    return fit(parts[0])


def weights(trained):
    return [variable.numpy() for variable in trained.network.weights]


def test_implements_the_contract(trained):
    assert isinstance(trained, TrainedModel)


def test_learns_the_sample_data(parts, trained):
    train, validation = parts
    assert good_enough(trained.predict(validation.features), validation.labels, train.labels)


def test_answers_one_value_per_row_of_the_tasks_kind(parts, trained):
    rows = sample_rows(5)
    predicted = trained.predict(rows)
    assert predicted.shape == (len(rows),)
    if CLASSIFICATION:
        num_classes = int(parts[0].labels.max()) + 1
        assert predicted.dtype == np.int64
        np.testing.assert_array_equal(trained.classes, np.arange(num_classes))
        probabilities = trained.probabilities(rows)
        assert probabilities.shape == (len(rows), num_classes)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(probabilities.argmax(axis=1), predicted)
    else:
        assert predicted.dtype == np.float64
        assert trained.classes is None
        with pytest.raises(ValueError, match="not class probabilities"):
            trained.probabilities(rows)


def test_the_same_seed_gives_the_same_model_and_another_seed_another(parts):
    first, again, other = (fit(parts[0], epochs=FEW_EPOCHS, seed=seed) for seed in (3, 3, 4))
    for a, b in zip(weights(first), weights(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(weights(first), weights(other), strict=True))


def test_build_network_gets_the_columns_the_task_and_the_hyperparameters(parts, monkeypatch):
    calls = []
    build_network = model.build_network
    monkeypatch.setattr(model, "build_network", lambda *args: calls.append(args) or build_network(*args))
    fit(parts[0], epochs=1)
    ((num_features, num_outputs, params),) = calls
    assert num_features == len(FEATURES)
    assert num_outputs == (int(parts[0].labels.max()) + 1 if CLASSIFICATION else 1)
    assert params == defaults(model.HYPERPARAMETERS) | {"epochs": 1}


@pytest.mark.parametrize("name", RUNTIME_HYPERPARAMETERS)
def test_a_model_without_a_hyperparameter_the_runtime_reads_is_refused_naming_it(parts, monkeypatch, name):
    params = defaults(model.HYPERPARAMETERS)
    monkeypatch.setattr(model, "HYPERPARAMETERS", tuple(p for p in model.HYPERPARAMETERS if p.name != name))
    with pytest.raises(DefinitionError, match=f"'{name}'"):
        FrameworkModel.fit(parts[0].features, parts[0].labels, params, TrainingJob.single_host())


def test_a_network_with_the_wrong_number_of_outputs_is_refused(parts, monkeypatch):
    build_network = model.build_network
    monkeypatch.setattr(
        model, "build_network", lambda features, outputs, params: build_network(features, outputs + 1, params)
    )
    with pytest.raises(DefinitionError, match="output"):
        fit(parts[0], epochs=1)


def test_saves_a_versioned_savedmodel_that_answers_for_tensorflow_serving(trained, tmp_path):
    path = trained.save(tmp_path)
    assert path == tmp_path / MODEL_VERSION
    assert (path / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_VERSION]
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    rows = sample_rows(5)
    (answers,) = signature(tf.constant(rows, dtype=tf.float32)).values()
    # What TensorFlow Serving returns: class probabilities (n, K), or the predicted numbers (n,).
    expected = trained.probabilities(rows) if CLASSIFICATION else trained.predict(rows)
    np.testing.assert_allclose(answers.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_save_and_load_give_the_same_answers(trained, tmp_path):
    trained.save(tmp_path)
    loaded = FrameworkModel.load(tmp_path)
    rows = sample_rows()
    same_answers(loaded.predict(rows), trained.predict(rows))
    assert loaded.num_features == len(FEATURES)
    if CLASSIFICATION:
        np.testing.assert_array_equal(loaded.classes, trained.classes)
        # LiteRT's kernels round the last bits of a float32 differently from TensorFlow's.
        np.testing.assert_allclose(loaded.probabilities(rows), trained.probabilities(rows), rtol=1e-5, atol=1e-6)
    else:
        assert loaded.classes is None


@needs_litert
def test_the_export_holds_a_litert_model_that_serving_loads_without_tensorflow(trained, tmp_path):
    path = trained.save(tmp_path)
    assert (path / LITERT_FILE).is_file()
    # What the server's worker does: load the model and answer, in a fresh interpreter.
    rows = sample_rows(5)
    script = (
        "import json, sys\n"
        f"from {PACKAGE}._runtime.framework import FrameworkModel\n"
        f"loaded = FrameworkModel.load(__import__('pathlib').Path({str(tmp_path)!r}))\n"
        f"answers = loaded.predict(__import__('numpy').array({rows.tolist()!r}))\n"
        "print(json.dumps({'answers': answers.tolist(), 'tensorflow': 'tensorflow' in sys.modules}))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], env=child_environment(), capture_output=True, text=True, check=True
    )
    seen = json.loads(finished.stdout.splitlines()[-1])
    assert seen["tensorflow"] is False, "serving a LiteRT model must not import TensorFlow"
    same_answers(np.array(seen["answers"]), trained.predict(rows))


@needs_litert
def test_a_savedmodel_without_its_litert_model_is_served_by_tensorflow(trained, tmp_path):
    (trained.save(tmp_path) / LITERT_FILE).unlink()  # a SavedModel made elsewhere
    loaded = FrameworkModel.load(tmp_path)
    assert not isinstance(loaded._serve, LiteRTNetwork)
    rows = sample_rows()
    same_answers(loaded.predict(rows), trained.predict(rows))


@needs_litert
def test_a_damaged_litert_model_is_served_by_tensorflow_saying_why(trained, tmp_path, caplog):
    (trained.save(tmp_path) / LITERT_FILE).write_bytes(b"not a flatbuffer")
    with caplog.at_level(logging.WARNING):
        loaded = FrameworkModel.load(tmp_path)
    assert "answering with TensorFlow" in caplog.text
    rows = sample_rows()
    same_answers(loaded.predict(rows), trained.predict(rows))


@needs_litert
def test_a_network_litert_cannot_run_is_exported_without_it_saying_why(trained, tmp_path, monkeypatch, caplog):
    def no_such_operation(*args, **kwargs):
        raise RuntimeError("op 'SomeCustomOp' is neither a custom op nor a flex op")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", no_such_operation)
    with caplog.at_level(logging.WARNING):
        path = trained.save(tmp_path)
    assert not (path / LITERT_FILE).exists()
    assert "LiteRT cannot run this network (op 'SomeCustomOp'" in caplog.text
    assert "the server will answer with TensorFlow" in caplog.text


@needs_litert
def test_a_litert_model_that_answers_differently_is_left_out(trained, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(LiteRTNetwork, "__call__", lambda self, rows: np.zeros_like(trained._serve(rows)) + 0.5)
    with caplog.at_level(logging.WARNING):
        path = trained.save(tmp_path)
    assert not (path / LITERT_FILE).exists()
    assert "LiteRT answers differently" in caplog.text


def test_saving_twice_replaces_the_version(trained, tmp_path):
    trained.save(tmp_path)
    trained.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_VERSION]


def test_load_without_a_version_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SavedModel version folder"):
        FrameworkModel.load(tmp_path)


def test_a_finished_run_leaves_no_checkpoint(parts, tmp_path):
    train, _ = parts
    job = dataclasses.replace(TrainingJob.single_host(), checkpoint_dir=tmp_path)
    FrameworkModel.fit(train.features, train.labels, {**defaults(model.HYPERPARAMETERS), "epochs": FEW_EPOCHS}, job)
    assert tmp_path.is_dir()
    assert list(tmp_path.iterdir()) == []


def plan(rank=0, hosts=1, sharded=False, batch_size=16):
    return BatchPlan(batch_size, rank, local_replicas=1, replicas=hosts, sharded=sharded, seed=0)


@pytest.mark.parametrize("batch_size", [16, 15, 1])
def test_two_hosts_split_the_batches_one_host_takes(batch_size):
    alone = plan(batch_size=batch_size)
    one_host = list(alone.epoch(120, epoch=3, steps=alone.local_steps(120)))
    steps = plan(hosts=2, batch_size=batch_size).local_steps(120)
    assert steps == len(one_host)
    first, second = (list(plan(rank, hosts=2, batch_size=batch_size).epoch(120, 3, steps)) for rank in (0, 1))
    for alone, part_1, part_2 in zip(one_host, first, second, strict=True):
        np.testing.assert_array_equal(np.concatenate([*part_1, *part_2]), np.concatenate(alone))


def test_a_sharded_host_takes_every_row_of_its_shard_once_an_epoch():
    sharded = plan(rank=1, hosts=2, sharded=True)
    steps = sharded.local_steps(70) + 2  # another host holds more rows: the last steps send nothing
    parts = [np.concatenate(step) for step in sharded.epoch(70, epoch=0, steps=steps)]
    assert max(map(len, parts)) == 8
    assert sorted(np.concatenate(parts).tolist()) == list(range(70))
