import json

import numpy as np
import pytest

from {{ cookiecutter.package_name }}._runtime.inference import (
    InferenceError,
    UnsupportedAccept,
    UnsupportedContentType,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)
from {{ cookiecutter.package_name }}._runtime.payloads import Prediction

from .support import CLASSIFICATION, FEATURES, csv_body, sample_rows

ROWS = sample_rows(3)


@pytest.fixture(scope="module")
def model(trained_tree):
    return model_fn(trained_tree / "model")


@pytest.fixture(scope="module")
def expected(model):
    return model.model.predict(ROWS)


def answer(model, body, content_type, accept="application/json"):
    return json.loads(output_fn(predict_fn(input_fn(body, content_type), model), accept))


def records(rows):
    return [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()]


def test_a_byte_order_mark_before_the_body_is_ignored(model, expected):
    body = b"\xef\xbb\xbf" + ",".join(FEATURES).encode() + b"\n" + csv_body(ROWS)
    assert answer(model, body, "text/csv") == {"predictions": expected.tolist()}


def test_csv_rows_with_a_charset_parameter(model, expected):
    assert answer(model, csv_body(ROWS), "text/csv; charset=utf-8") == {"predictions": expected.tolist()}


def test_a_csv_header_names_the_columns_in_any_order(model, expected):
    order = list(reversed(range(len(FEATURES))))
    header = ",".join(FEATURES[i] for i in order)
    body = header.encode() + b"\n" + csv_body(ROWS[:, order])
    assert answer(model, body, "text/csv") == {"predictions": expected.tolist()}


@pytest.mark.parametrize(
    "document",
    [
        lambda rows: rows.tolist(),
        lambda rows: {"instances": rows.tolist()},
        lambda rows: {"instances": records(rows)},
        lambda rows: [dict(reversed(list(record.items()))) for record in records(rows)],
    ],
    ids=["rows", "instances", "records", "records-in-another-order"],
)
def test_json_rows_and_records_by_name_agree(model, expected, document):
    body = json.dumps(document(ROWS)).encode()
    assert answer(model, body, "application/json") == {"predictions": expected.tolist()}


def test_one_json_row_is_one_record(model):
    # Compared with a batch of one: a float32 network may round a row differently within a larger batch.
    alone = model.model.predict(ROWS[:1])
    assert answer(model, json.dumps(ROWS[0].tolist()), "application/json") == {"predictions": alone.tolist()}


def test_answers_follow_the_task(model, expected):
    if CLASSIFICATION:
        assert expected.dtype.kind == "i" and set(expected.tolist()) <= set(model.model.classes.tolist())
    else:
        assert expected.dtype.kind == "f"


def test_probabilities_on_request(model, expected):
    prediction = predict_fn(input_fn(csv_body(ROWS), "text/csv"), model)
    if not CLASSIFICATION:
        with pytest.raises(UnsupportedAccept, match="classifiers only") as raised:
            output_fn(prediction, "application/json; probabilities=true")
        assert raised.value.status == 406
        return
    document = json.loads(output_fn(prediction, "application/json; probabilities=true"))
    probabilities = np.array(document["probabilities"])
    assert document["predictions"] == expected.tolist()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert np.array(document["classes"])[probabilities.argmax(axis=1)].tolist() == expected.tolist()
    csv_lines = output_fn(prediction, "text/csv; probabilities=true").decode().splitlines()
    assert len(csv_lines) == len(ROWS) and len(csv_lines[0].split(",")) == len(document["classes"])


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"1,abc,2", "text/csv", "malformed CSV: CSV body line 1: column '#2' holds 'abc', not a number"),
        (b"1,2,3\n4,5\n", "text/csv", "malformed CSV"),
        (b"", "text/csv", "no rows"),
        (b"\xff\xfe", "text/csv", "not UTF-8"),
        (b"{not json", "application/json", "malformed JSON"),
        (b'{"rows": []}', "application/json", '"instances"'),
        (b"[[1, 2], [3]]", "application/json", "same length"),
        (b'[["a", "b"]]', "application/json", "same length"),
        (b'"text"', "application/json", "list of rows"),
        (b"[]", "application/json", "no rows"),
        (b'[{"x": "tall"}]', "application/json", "record 0: feature 'x' is \"tall\", not a number"),
        (b'[{"x": true}]', "application/json", "record 0: feature 'x' is true, not a number"),
        (b'[["5.1", 2]]', "application/json", "JSON rows must all be lists of numbers"),
        (b"[[[1, 2]]]", "application/json", "JSON rows must all be lists of numbers"),
        (b'[{"x": 1' + b"0" * 400 + b"}]", "application/json", "record 0: feature 'x' is 1000"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body, content_type, message):
    with pytest.raises(InferenceError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        input_fn(body, content_type)
    assert raised.value.status == 400


def test_unsupported_content_type_is_415():
    with pytest.raises(UnsupportedContentType, match="use text/csv or application/json") as raised:
        input_fn(b"x", "application/x-npy")
    assert raised.value.status == 415


def refusal(model, body, content_type):
    with pytest.raises(InferenceError) as raised:
        predict_fn(input_fn(body, content_type), model)
    assert raised.value.status == 400
    return str(raised.value)


def test_rows_that_do_not_fit_the_saved_schema_are_refused_naming_the_features(model):
    assert f"each row needs {len(FEATURES)} features ({', '.join(FEATURES)}), got {len(FEATURES) - 1}" in refusal(
        model, csv_body(ROWS[:, 1:]), "text/csv"
    )
    assert "must be a finite number" in refusal(model, json.dumps([[float("nan")] * len(FEATURES)]), "application/json")


def test_records_missing_or_naming_unknown_features_are_refused_by_name(model):
    record = records(ROWS[:1])[0]
    missing = {key: value for key, value in record.items() if key != FEATURES[0]}
    assert f"record 0: missing '{FEATURES[0]}'" in refusal(model, json.dumps([missing]), "application/json")
    unknown = {**record, "colour": 1}
    assert "record 0: unknown 'colour'; the features are" in refusal(model, json.dumps([unknown]), "application/json")


def test_a_csv_header_with_unknown_or_missing_columns_is_refused_by_name(model):
    header = ",".join(FEATURES[1:]) + ",colour"
    message = refusal(model, header.encode() + b"\n" + csv_body(ROWS), "text/csv")
    assert f"feature columns missing from the header: {FEATURES[0]}" in message


def test_output_in_both_types():
    prediction = Prediction(np.array([0, 2]))
    assert output_fn(prediction, "text/csv") == b"0\n2\n"
    assert json.loads(output_fn(prediction, "application/json")) == {"predictions": [0, 2]}


def test_unsupported_accept_is_406():
    with pytest.raises(UnsupportedAccept) as raised:
        output_fn(Prediction(np.array([0])), "application/xml")
    assert raised.value.status == 406


def test_sample_requests_are_what_the_model_answers(sagemaker_tree, model):
    samples = sagemaker_tree / "sample-requests"
    csv_answer = answer(model, (samples / "payload.csv").read_bytes(), "text/csv")
    json_answer = answer(model, (samples / "payload.json").read_bytes(), "application/json")
    assert csv_answer == json_answer
    assert set(json.loads((samples / "payload.json").read_text())["instances"][0]) == set(FEATURES)
