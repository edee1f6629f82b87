"""Channel CSV files against a schema: with or without a header, and every way a file can be wrong."""

import json

import numpy as np
import pytest

from {{ cookiecutter.package_name }}._runtime.contract import Table
from {{ cookiecutter.package_name }}._runtime.sample_tree import sample_split, write_sample_tree
from {{ cookiecutter.package_name }}._runtime.tables import DataError, Schema, dataset_from_table, read_channel

from .support import FEATURES, SCHEMA, TWO, channel, write

REGRESSION = Schema(features=(("a", "float"), ("b", "int")), label="y", task="regression")


def test_files_without_a_header_are_label_then_features_in_name_order(tmp_path):
    write(tmp_path / "b.csv", "1,3.0,4\n")
    write(tmp_path / "a.csv", "0,1.0,2\n2,5,6\n")
    write(tmp_path / "nested" / "c.csv", "1,7,8\n")
    write(tmp_path / "notes.txt", "not data")
    dataset = read_channel("train", tmp_path, TWO)
    assert dataset.labels.tolist() == [0, 2, 1, 1]
    assert dataset.features.tolist() == [[1, 2], [5, 6], [3, 4], [7, 8]]


def test_a_header_matches_columns_by_name_in_any_order(tmp_path):
    write(tmp_path / "a.csv", "b,y,a\n2,1,0.5\n4,0,1.5\n")
    write(tmp_path / "b.csv", "y,a,b\n2,9.5,7\n")
    dataset = read_channel("train", tmp_path, TWO)
    assert dataset.labels.tolist() == [1, 0, 2]
    assert dataset.features.tolist() == [[0.5, 2], [1.5, 4], [9.5, 7]]


def test_a_spreadsheet_export_with_byte_order_mark_quotes_and_crlf(tmp_path):
    (tmp_path / "a.csv").write_bytes(b'\xef\xbb\xbf"a","b","y"\r\n1.5,2,1\r\n')
    dataset = read_channel("train", tmp_path, TWO)
    assert (dataset.features.tolist(), dataset.labels.tolist()) == ([[1.5, 2]], [1])


def test_regression_labels_are_numbers(tmp_path):
    write(tmp_path / "a.csv", "y,a,b\n-2.5,1,2\n")
    dataset = read_channel("train", tmp_path, REGRESSION)
    assert dataset.labels.dtype == np.float64
    assert dataset.labels.tolist() == [-2.5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x,z,w\n1,2,3\n", r"neither a header naming data.py's columns \('a', 'b', 'y'\) nor a row of numbers"),
        ("a,b\n1,2\n", "the label column 'y' is missing from the header"),
        ("a,y\n1,2\n", "feature columns missing from the header: b"),
        (
            "a,b,y,extra\n1,2,0,9\n",
            r"columns not in the schema \(data.py's FEATURES and LABEL; remove them or declare them\): extra",
        ),
        ("a,a,b,y\n1,1,2,0\n", "the header names some columns more than once: a"),
        ("a,b,y\n1,2,0\n1,two,0\n", "line 3: column 'b' holds 'two', not a number"),
        ("a,b,y\n1,2.5,0\n", r"line 2: column 'b' \(a feature\) holds 2.5; it must be a whole number"),
        ("a,b,y\nnan,2,0\n", "column 'a' .* it must be a finite number"),
        ("a,b,y\n1,2,0.5\n", r"column 'y' \(the label\) holds 0.5; it must be a class index"),
        ("a,b,y\n1,2,-1\n", r"column 'y' \(the label\) holds -1; it must be a class index"),
        ("a,b,y\n1,2,setosa\n", "column 'y' holds 'setosa', not a number"),
        ("0,1\n", "has no header and 2 columns; a file without a header holds the label, then data.py's 2 features"),
        ("a,b,y\n1,2\n", "line 2: the row has 2 columns, but the header names 3"),
        ("a,b,y\n1,2,0,7\n", "line 2: the row has 4 columns, but the header names 3"),
        ("a,b,y\n1,2,0\n\n\n1,x,0\n", "line 5: column 'b' holds 'x', not a number"),
        ("a,b,y\n1,2,0\n\n1.5,2.5,0\n", r"line 4: column 'b' \(a feature\) holds 2.5"),
        (
            "a,bee,y,extra\n1,2,0,9\n",
            r"feature columns missing from the header: b; columns not in the schema .*: bee, extra",
        ),
        (
            "a,b,y\n1,2,1e30\n",
            r"column 'y' \(the label\) holds 1e\+30; it must be a class index \(an integer from 0 to",
        ),
        ("0,1,2\n1,2\n", "line 2: 2 columns where the rows above have 3"),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_column(tmp_path, text, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=message) as raised:
        read_channel("train", tmp_path, TWO)
    assert str(path) in str(raised.value)


def test_a_binary_file_is_refused_naming_it(tmp_path):
    (tmp_path / "image.csv").write_bytes(bytes(range(256)))
    with pytest.raises(DataError, match=r"image\.csv is not UTF-8 text"):
        read_channel("train", tmp_path, TWO)


def test_missing_channel_folder(tmp_path):
    with pytest.raises(DataError, match="channel 'train' is missing"):
        read_channel("train", tmp_path / "absent", TWO)


def test_channel_without_csv_files(tmp_path):
    write(tmp_path / "data.parquet", "")
    with pytest.raises(DataError, match=r"holds no \.csv files"):
        read_channel("train", tmp_path, TWO)


@pytest.mark.parametrize("text", ["", "a,b,y\n"])
def test_channel_of_empty_or_header_only_files(tmp_path, text):
    write(tmp_path / "a.csv", text)
    with pytest.raises(DataError, match="has no rows"):
        read_channel("train", tmp_path, TWO)


def test_sample_data_is_checked_against_the_schema():
    with pytest.raises(DataError, match="sample_data"):
        dataset_from_table(Table(("a", "y"), np.ones((2, 2))), TWO)


def test_sample_tree_is_a_complete_sagemaker_tree(sagemaker_tree):
    config = sagemaker_tree / "input" / "config"
    assert set(json.loads((config / "inputdataconfig.json").read_text())) == {"train", "validation"}
    assert json.loads((config / "resourceconfig.json").read_text())["current_host"] == "algo-1"
    assert all(isinstance(value, str) for value in json.loads((config / "hyperparameters.json").read_text()).values())
    header = (sagemaker_tree / "input" / "data" / "train" / "train.csv").read_text().splitlines()[0]
    assert sorted(header.split(",")) == sorted([*FEATURES, SCHEMA.label]), "the sample data is written with a header"
    train, validation = channel(sagemaker_tree, "train"), channel(sagemaker_tree)
    expected_train, expected_validation = sample_split()
    np.testing.assert_array_equal(train.features, expected_train.features)
    np.testing.assert_array_equal(validation.labels, expected_validation.labels)
    if SCHEMA.is_classification:
        assert set(validation.labels.tolist()) == set(train.labels.tolist()), "a stratified split"


def test_sample_train_channel_in_one_file_per_host_holds_the_same_rows(tmp_path, sagemaker_tree):
    write_sample_tree(tmp_path / "split", {}, train_files=3)
    split_dir = tmp_path / "split" / "input" / "data" / "train"
    assert sorted(path.name for path in split_dir.iterdir()) == [f"train-{n}-of-3.csv" for n in (1, 2, 3)]
    whole = channel(sagemaker_tree, "train")
    parts = read_channel("train", split_dir, SCHEMA)
    assert sorted(map(tuple, parts.features.tolist())) == sorted(map(tuple, whole.features.tolist()))
    with pytest.raises(ValueError, match="train_files must be at least 1"):
        write_sample_tree(tmp_path / "none", {}, train_files=0)
