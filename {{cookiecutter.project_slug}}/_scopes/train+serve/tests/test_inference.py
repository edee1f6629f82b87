import json

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.inference import (
    InferenceError,
    UnsupportedAccept,
    UnsupportedContentType,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)


@pytest.fixture(scope="module")
def model(trained_tree):
    return model_fn(trained_tree / "model")


def test_one_csv_row_is_one_record():
    assert input_fn(b"5.1,3.5,1.4,0.2", "text/csv").shape == (1, 4)


def test_many_csv_rows_with_charset_parameter():
    rows = input_fn(b"5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n7.7,3.0,6.1,2.3\n", "text/csv; charset=utf-8")
    assert rows.shape == (3, 4)


@pytest.mark.parametrize(
    "body",
    [b"[5.1, 3.5, 1.4, 0.2]", b"[[5.1, 3.5, 1.4, 0.2]]", b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'],
)
def test_json_shapes(body):
    np.testing.assert_array_equal(input_fn(body, "application/json"), [[5.1, 3.5, 1.4, 0.2]])


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"5.1,abc,1.4,0.2", "text/csv", "malformed CSV"),
        (b"1,2,3\n4,5\n", "text/csv", "malformed CSV"),
        (b"", "text/csv", "no rows"),
        (b"\xff\xfe", "text/csv", "not UTF-8"),
        (b"nan,1,2,3", "text/csv", "finite"),
        (b"{not json", "application/json", "malformed JSON"),
        (b'{"rows": []}', "application/json", '"instances"'),
        (b"[[1, 2], [3]]", "application/json", "same length"),
        (b'[["a", "b"]]', "application/json", "same length"),
        (b'"text"', "application/json", "list of rows"),
        (b"[]", "application/json", "no rows"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body, content_type, message):
    with pytest.raises(InferenceError, match=message) as raised:
        input_fn(body, content_type)
    assert raised.value.status == 400


def test_unsupported_content_type_is_415():
    with pytest.raises(UnsupportedContentType, match="use text/csv or application/json") as raised:
        input_fn(b"x", "application/x-npy")
    assert raised.value.status == 415


def test_predictions_are_class_labels(model):
    prediction = predict_fn(input_fn(b"5.1,3.5,1.4,0.2\n7.7,3.0,6.1,2.3", "text/csv"), model)
    assert prediction.tolist() == [0, 2]


def test_wrong_feature_count_is_refused(model):
    with pytest.raises(InferenceError, match="each row needs 4 features, got 3"):
        predict_fn(np.ones((1, 3)), model)


def test_output_in_both_types():
    assert output_fn(np.array([0, 2]), "text/csv") == b"0\n2\n"
    assert json.loads(output_fn(np.array([0, 2]), "application/json")) == {"predictions": [0, 2]}


def test_unsupported_accept_is_406():
    with pytest.raises(UnsupportedAccept) as raised:
        output_fn(np.array([0]), "application/xml")
    assert raised.value.status == 406
