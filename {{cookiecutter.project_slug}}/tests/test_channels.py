"""Channels as producers deliver them and jobs read them: linked folders, out-of-core reading, warm pools."""

import json
import logging

import numpy as np
import pytest

from {{ cookiecutter.package_name }}._runtime import tables, training
from {{ cookiecutter.package_name }}._runtime.channels import CACHE_FOLDER
from {{ cookiecutter.package_name }}._runtime.environment import WARM_POOL_CACHE_VARIABLE, ContractError
from {{ cookiecutter.package_name }}._runtime.framework import FrameworkModel
from {{ cookiecutter.package_name }}._runtime.tables import DataError, column_moments, read_channel

from .support import SCHEMA, TWO, channel, environment_for, sample_rows, write


def test_linked_files_and_folders_are_read(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "part-2.csv", "a,b,y\n3,4,1\n")
    write(elsewhere / "more" / "part-3.csv", "a,b,y\n5,6,2\n")
    channel_dir = tmp_path / "train"
    write(channel_dir / "part-1.csv", "a,b,y\n1,2,0\n")
    (channel_dir / "linked").symlink_to(elsewhere, target_is_directory=True)
    (channel_dir / "one.csv").symlink_to(elsewhere / "part-2.csv")
    (elsewhere / "loop").symlink_to(channel_dir, target_is_directory=True)  # a cycle is read once
    dataset = read_channel("train", channel_dir, TWO)
    # Each file once, by its first path in path order: linked/more/part-3, linked/part-2 (not one.csv), part-1.
    assert dataset.labels.tolist() == [2, 1, 0]


@pytest.mark.parametrize("link", ["gone.csv", "gone-folder"])
def test_a_link_to_nothing_is_refused_by_name(tmp_path, link):
    write(tmp_path / "a.csv", "a,b,y\n1,2,0\n")
    (tmp_path / link).symlink_to(tmp_path / "deleted")
    with pytest.raises(DataError, match=rf"{link} is a link to nothing"):
        read_channel("train", tmp_path, TWO)


def test_a_class_index_beyond_what_the_rows_can_hold_names_file_line_and_label(tmp_path):
    path = write(tmp_path / "a.csv", "a,b,y\n1,2,0\n1,2,1\n1,2,2147483648\n")
    with pytest.raises(DataError) as raised:
        read_channel("train", tmp_path, TWO)
    assert str(raised.value).startswith(f"{path} line 4: column 'y' (the label) holds 2.14748e+09")
    write(tmp_path / "a.csv", "a,b,y\n1,2,0\n1,2,1\n")
    write(tmp_path / "b.csv", "\n0,1,2\n\n5000,1,2\n")  # no header (the label first), blank lines: the line is exact
    with pytest.raises(
        DataError, match=r"b\.csv line 4: class index 5000 in column 'y' is beyond what the data can hold"
    ):
        read_channel("train", tmp_path, TWO)
    write(tmp_path / "b.csv", "y,a,b\n0,1,2\n\n7000,1,2\n")  # a header, then a blank line
    with pytest.raises(DataError, match=r"b\.csv line 4: class index 7000 in column 'y'"):
        read_channel("train", tmp_path, TWO)
    (tmp_path / "b.csv").unlink()
    write(tmp_path / "a.csv", "a,b,y\n1,2,0\n1,2,999\n")  # many classes, few rows: still allowed
    assert read_channel("train", tmp_path, TWO).labels.tolist() == [0, 999]


def test_the_class_bound_follows_the_train_channel_and_its_hosts(tmp_path):
    write(tmp_path / "a.csv", "a,b,y\n1,2,0\n1,2,4321\n")  # validation: 2 rows of a 5,000-class task
    with pytest.raises(DataError, match="class index 4321"):
        read_channel("validation", tmp_path, TWO)
    assert read_channel("validation", tmp_path, TWO, class_limit=5000).labels.tolist() == [0, 4321]
    write(tmp_path / "a.csv", "a,b,y\n" + "1,2,0\n" * 600 + "1,2,1100\n")  # one host's shard of two
    assert len(read_channel("train", tmp_path, TWO, hosts=2)) == 601
    with pytest.raises(DataError, match="class index 1100"):
        read_channel("train", tmp_path, TWO)


def test_files_are_read_in_chunks_with_true_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CHUNK_LINES", 3)
    rows = [f"{index}.5,{index},{index % 3}" for index in range(10)]
    write(tmp_path / "a.csv", "\n".join(["a,b,y", *rows, "", "", "7,8,1"]) + "\n")
    dataset = read_channel("train", tmp_path, TWO)
    assert dataset.features[:, 1].tolist() == [*range(10), 8]
    write(tmp_path / "a.csv", "\n".join(["a,b,y", *rows, "1,x,0"]) + "\n")
    with pytest.raises(DataError, match="line 12: column 'b' holds 'x', not a number"):
        read_channel("train", tmp_path, TWO)
    write(tmp_path / "a.csv", "\n".join(["a,b,y", *rows[:3], "1,2", *rows[3:]]) + "\n")  # starts chunk 2
    with pytest.raises(DataError, match="line 5: the row has 2 columns, but the header names 3"):
        read_channel("train", tmp_path, TWO)
    write(tmp_path / "a.csv", "0,1.5,1\n1,2.5,2\n2,3.5,0\n\n1,x,0\n")  # no header (the label first), a blank line
    with pytest.raises(DataError, match="line 5: column 'a' holds 'x'"):
        read_channel("train", tmp_path, TWO)


def test_a_huge_bad_cell_is_echoed_short(tmp_path):
    write(tmp_path / "a.csv", f"a,b,y\n1,{'z' * 5000},0\n")
    with pytest.raises(DataError) as raised:
        read_channel("train", tmp_path, TWO)
    assert "column 'b' holds 'zzz" in str(raised.value)
    assert len(str(raised.value)) < 300


def test_memory_mapped_rows_equal_rows_in_memory(tmp_path, sagemaker_tree):
    in_memory = channel(sagemaker_tree, "train")
    mapped = read_channel("train", sagemaker_tree / "input" / "data" / "train", SCHEMA, tmp_path / "train.npy")
    assert isinstance(mapped.features, np.memmap)
    np.testing.assert_array_equal(mapped.features, in_memory.features)
    np.testing.assert_array_equal(mapped.labels, in_memory.labels)


def test_column_moments_in_blocks_match_numpy(monkeypatch):
    monkeypatch.setattr(tables, "MOMENT_ROWS", 7)
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 3))
    labels = np.arange(50.0)
    count, mean, variance = column_moments(values, labels)
    whole = np.column_stack([values, labels])
    assert count == 50
    np.testing.assert_allclose(mean, whole.mean(axis=0))
    np.testing.assert_allclose(variance, whole.var(axis=0))


def predictions_after_training(tree, **variables):
    assert training.main(environment_for(tree, **variables)) == 0
    return FrameworkModel.load(tree / "model").predict(sample_rows())


def test_training_out_of_core_gives_the_model_trained_in_memory(sagemaker_tree, tmp_path, caplog, monkeypatch):
    expected = predictions_after_training(sagemaker_tree)
    given = []
    monkeypatch.setattr(FrameworkModel, "fit", spy_on_fit(FrameworkModel.fit, given))
    temporary = tmp_path / "tmp"
    with caplog.at_level(logging.INFO):
        streamed = predictions_after_training(sagemaker_tree, STREAM_DATA_ABOVE_MB="0", TMPDIR=str(temporary))
    assert "read memory-mapped (above STREAM_DATA_ABOVE_MB)" in caplog.text
    assert given == [np.memmap], "the framework was handed the rows in memory"
    np.testing.assert_array_equal(streamed, expected)
    assert list(temporary.iterdir()) == [], "the memory-mapped copies are removed after the job"


def spy_on_fit(fit, given):
    def spied(features, labels, params, job):
        given.append(type(features))
        return fit(features, labels, params, job)

    return spied


@pytest.mark.parametrize("value", ["-1", "lots", "nan"])
def test_a_bad_threshold_is_refused_naming_it(sagemaker_tree, value):
    with pytest.raises(ContractError, match="STREAM_DATA_ABOVE_MB must be a number of megabytes"):
        _ = environment_for(sagemaker_tree, STREAM_DATA_ABOVE_MB=value).stream_data_above_bytes


def test_a_warm_pools_cache_keeps_parsed_channels_for_the_next_job(sagemaker_tree, tmp_path, caplog):
    cache = tmp_path / "warmpoolcache"
    cache.mkdir()
    first = predictions_after_training(sagemaker_tree, **{WARM_POOL_CACHE_VARIABLE: str(cache)})
    entries = sorted(path.name.split("-")[0] for path in (cache / CACHE_FOLDER).iterdir())
    assert entries == ["train", "validation"]
    with caplog.at_level(logging.INFO):
        second = predictions_after_training(sagemaker_tree, **{WARM_POOL_CACHE_VARIABLE: str(cache)})
    assert caplog.text.count("parsed rows from the warm pool's cache") == 2
    np.testing.assert_array_equal(second, first)
    # Changed data is parsed anew, and replaces its channel's entry.
    train_file = next((sagemaker_tree / "input" / "data" / "train").glob("*.csv"))
    header, *rows = train_file.read_text().splitlines()
    train_file.write_text("\n".join([header, *rows[:-1]]) + "\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        predictions_after_training(sagemaker_tree, **{WARM_POOL_CACHE_VARIABLE: str(cache)})
    assert caplog.text.count("parsed rows from the warm pool's cache") == 1, "validation only"
    assert len(list((cache / CACHE_FOLDER).glob("train-*.npy"))) == 1


def test_a_warm_pools_cache_serves_memory_mapped_rows_and_drops_a_killed_jobs_leftovers(sagemaker_tree, tmp_path):
    cache = tmp_path / "warmpoolcache"
    (cache / CACHE_FOLDER).mkdir(parents=True)
    leftover = cache / CACHE_FOLDER / ".train-0123.npy.partial"  # what a job killed while parsing leaves
    leftover.write_bytes(b"half")
    variables = {WARM_POOL_CACHE_VARIABLE: str(cache), "STREAM_DATA_ABOVE_MB": "0", "TMPDIR": str(tmp_path)}
    expected = predictions_after_training(sagemaker_tree)
    assert np.array_equal(predictions_after_training(sagemaker_tree, **variables), expected)
    assert not leftover.exists()
    assert np.array_equal(predictions_after_training(sagemaker_tree, **variables), expected), "from the cache"


@pytest.mark.parametrize("cache", ["missing", "a-file"])
def test_without_a_warm_pools_folder_nothing_is_cached(sagemaker_tree, tmp_path, cache):
    # SageMaker sets the variable only on a warm pool, and the folder exists then; anything else is no cache.
    target = tmp_path / cache
    if cache == "a-file":
        target.write_text("not a folder")
    before = sorted(path.relative_to(sagemaker_tree) for path in sagemaker_tree.rglob("*"))
    predictions_after_training(
        sagemaker_tree, STREAM_DATA_ABOVE_MB="0", TMPDIR=str(tmp_path), **{WARM_POOL_CACHE_VARIABLE: str(target)}
    )
    after = sorted(path.relative_to(sagemaker_tree) for path in sagemaker_tree.rglob("*"))
    assert target.exists() == (cache == "a-file") and not target.is_dir()
    made = {path.parts[0] for path in set(after) - set(before)}
    assert made <= {"model", "output"}, json.dumps(sorted(map(str, set(after) - set(before))))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["ml", *([cache] if cache == "a-file" else [])])


def set_input_mode(tree, mode):
    config = tree / "input" / "config" / "inputdataconfig.json"
    channels = json.loads(config.read_text())
    config.write_text(json.dumps({name: {**value, "TrainingInputMode": mode} for name, value in channels.items()}))


def test_fast_file_channels_are_read_as_files(sagemaker_tree):
    set_input_mode(sagemaker_tree, "FastFile")
    assert training.main(environment_for(sagemaker_tree)) == 0


def test_pipe_mode_is_refused_naming_the_channel(sagemaker_tree):
    set_input_mode(sagemaker_tree, "Pipe")
    assert training.main(environment_for(sagemaker_tree)) == 1
    reason = (sagemaker_tree / "output" / "failure").read_text()
    assert reason.startswith(
        "DataError: channel 'train' uses input mode Pipe; this container reads its channels as files"
    )
