import json

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.data import DataError, read_channel, sample_dataset, write_sample_tree


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_every_csv_file_is_read_in_name_order(tmp_path):
    write(tmp_path / "b.csv", "1,3.0,4.0\n")
    write(tmp_path / "a.csv", "0,1.0,2.0\n2,5,6\n")
    write(tmp_path / "nested" / "c.csv", "1,7,8\n")
    write(tmp_path / "notes.txt", "not data")
    dataset = read_channel("train", tmp_path)
    assert dataset.labels.tolist() == [0, 2, 1, 1]
    assert dataset.features.tolist() == [[1, 2], [5, 6], [3, 4], [7, 8]]
    assert dataset.num_features == 2


def test_missing_channel_folder(tmp_path):
    with pytest.raises(DataError, match="channel 'train' is missing"):
        read_channel("train", tmp_path / "absent")


def test_channel_without_csv_files(tmp_path):
    write(tmp_path / "data.parquet", "")
    with pytest.raises(DataError, match=r"holds no \.csv files"):
        read_channel("train", tmp_path)


def test_channel_of_empty_files(tmp_path):
    write(tmp_path / "a.csv", "")
    with pytest.raises(DataError, match="has no rows"):
        read_channel("train", tmp_path)


def test_non_numeric_cell_names_the_file(tmp_path):
    write(tmp_path / "bad.csv", "0,1.0,2.0\n1,abc,3\n")
    with pytest.raises(DataError, match=r"bad\.csv is not numeric CSV"):
        read_channel("train", tmp_path)


def test_unreadable_file_names_the_file(tmp_path):
    (tmp_path / "image.csv").write_bytes(bytes(range(256)))  # binary, not text
    with pytest.raises(DataError, match=r"image\.csv is not numeric CSV"):
        read_channel("train", tmp_path)


def test_files_with_different_widths(tmp_path):
    write(tmp_path / "a.csv", "0,1,2\n")
    write(tmp_path / "b.csv", "0,1,2,3\n")
    with pytest.raises(DataError, match=r"different column counts \(a\.csv: 3, b\.csv: 4\)"):
        read_channel("train", tmp_path)


@pytest.mark.parametrize("row", ["-1,1,2", "0.5,1,2"])
def test_labels_must_be_whole_numbers_from_zero(tmp_path, row):
    write(tmp_path / "a.csv", row + "\n")
    with pytest.raises(DataError, match="labels must be integers"):
        read_channel("train", tmp_path)


def test_label_only_rows_are_refused(tmp_path):
    write(tmp_path / "a.csv", "0\n1\n")
    with pytest.raises(DataError, match="at least one feature column"):
        read_channel("train", tmp_path)


def test_sample_tree_is_a_complete_sagemaker_tree(sagemaker_tree):
    config = sagemaker_tree / "input" / "config"
    assert set(json.loads((config / "inputdataconfig.json").read_text())) == {"train", "validation"}
    assert json.loads((config / "resourceconfig.json").read_text())["current_host"] == "algo-1"
    assert all(isinstance(value, str) for value in json.loads((config / "hyperparameters.json").read_text()).values())
    train = read_channel("train", sagemaker_tree / "input" / "data" / "train")
    validation = read_channel("validation", sagemaker_tree / "input" / "data" / "validation")
    assert len(train.labels) + len(validation.labels) == len(sample_dataset().labels)
    assert set(validation.labels.tolist()) == set(train.labels.tolist())
    payload = np.loadtxt(sagemaker_tree / "sample-requests" / "payload.csv", delimiter=",", ndmin=2)
    assert payload.shape[1] == train.num_features


def test_sample_train_channel_in_one_file_per_host_holds_the_same_rows(tmp_path, sagemaker_tree):
    write_sample_tree(tmp_path / "split", {}, train_files=3)
    split_dir = tmp_path / "split" / "input" / "data" / "train"
    assert sorted(path.name for path in split_dir.iterdir()) == [f"train-{n}-of-3.csv" for n in (1, 2, 3)]
    whole = read_channel("train", sagemaker_tree / "input" / "data" / "train")
    parts = read_channel("train", split_dir)
    assert sorted(map(tuple, parts.features.tolist())) == sorted(map(tuple, whole.features.tolist()))
    with pytest.raises(ValueError, match="train_files must be at least 1"):
        write_sample_tree(tmp_path / "none", {}, train_files=0)
