import numpy as np
import pytest
import tensorflow as tf

from {{ cookiecutter.package_name }}.data import sample_dataset, split
from {{ cookiecutter.package_name }}.hyperparameters import defaults
from {{ cookiecutter.package_name }}.model import HYPERPARAMETERS, MODEL_VERSION, BatchPlan, Model


@pytest.fixture(scope="module")
def datasets():
    return split(sample_dataset(), 0.2, seed=7)


@pytest.fixture(scope="module")
def model(datasets):
    train, _ = datasets
    return Model.fit(train.features, train.labels, defaults(HYPERPARAMETERS))


def test_learns_the_sample_data(datasets, model):
    _, validation = datasets
    assert np.mean(model.predict(validation.features) == validation.labels) > 0.85
    assert model.num_features == 4


def test_hyperparameters_reach_the_network(datasets):
    train, _ = datasets
    small = Model.fit(train.features, train.labels, {**defaults(HYPERPARAMETERS), "hidden_units": 7, "epochs": 1})
    assert small._owner.layers[1].units == 7


def test_saves_a_versioned_savedmodel_for_tensorflow_serving(model, tmp_path):
    path = model.save(tmp_path)
    assert path == tmp_path / MODEL_VERSION
    assert (path / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_VERSION]
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert signature.structured_input_signature[1]


def test_save_and_load_give_the_same_predictions(model, tmp_path):
    model.save(tmp_path)
    features = sample_dataset().features
    np.testing.assert_array_equal(Model.load(tmp_path).predict(features), model.predict(features))


def test_saving_twice_replaces_the_version(model, tmp_path):
    model.save(tmp_path)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_VERSION]


def test_load_without_a_version_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SavedModel version folder"):
        Model.load(tmp_path)


def test_a_finished_run_leaves_no_backup(datasets, tmp_path):
    train, _ = datasets
    Model.fit(train.features, train.labels, {**defaults(HYPERPARAMETERS), "epochs": 2}, checkpoint_dir=tmp_path)
    assert tmp_path.is_dir()
    assert not (tmp_path / "training").exists()


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
