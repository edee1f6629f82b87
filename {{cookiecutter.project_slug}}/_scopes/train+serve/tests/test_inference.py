import io
import json
import pickle
import re

import numpy as np
import pytest

from {{ cookiecutter.package_name }}._runtime.inference import (
    ACCEPT_TYPES,
    CONTENT_TYPES,
    InferenceError,
    UnsupportedAccept,
    UnsupportedContentType,
    check_content_type,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)
from {{ cookiecutter.package_name }}._runtime.payloads import Prediction, align, check_content_encoding

from .support import CLASSIFICATION, FEATURES, SCHEMA, TWO, csv_body, sample_rows

ROWS = sample_rows(3)
JSON_LINES = "application/jsonlines"
NPY = "application/x-npy"


@pytest.fixture(scope="module")
def model(trained_tree):
    return model_fn(trained_tree / "model")


@pytest.fixture(scope="module")
def expected(model):
    return model.model.predict(ROWS)


def respond(model, body, content_type, accept):
    return output_fn(predict_fn(input_fn(body, content_type), model), accept)


def answer(model, body, content_type, accept="application/json"):
    return json.loads(respond(model, body, content_type, accept))


def records(rows):
    return [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()]


def json_lines(items):
    return "".join(json.dumps(item) + "\n" for item in items).encode()


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_header(shape, descr="<f8"):
    """A .npy header as numpy.save writes it, for a shape and dtype of the test's choosing."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_the_server_and_the_handlers_share_one_list_of_types():
    assert CONTENT_TYPES[:2] == ("text/csv", "application/json")  # what a 415 names first
    assert {JSON_LINES, "application/x-jsonlines", NPY} <= set(CONTENT_TYPES)
    assert ACCEPT_TYPES == CONTENT_TYPES


def test_a_byte_order_mark_before_the_body_is_ignored(model, expected):
    body = b"\xef\xbb\xbf" + ",".join(FEATURES).encode() + b"\n" + csv_body(ROWS)
    assert answer(model, body, "text/csv") == {"predictions": expected.tolist()}
    assert answer(model, b"\xef\xbb\xbf" + json_lines(records(ROWS)), JSON_LINES) == {"predictions": expected.tolist()}


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "us-ascii"])
def test_csv_rows_with_a_charset_parameter(model, expected, charset):
    assert answer(model, csv_body(ROWS), f"text/csv; charset={charset}") == {"predictions": expected.tolist()}


@pytest.mark.parametrize("content_type", ["text/csv", "application/json", JSON_LINES])
@pytest.mark.parametrize("charset", ["latin-1", "ISO-8859-1", "utf-16"])
def test_another_charset_is_415_naming_it(content_type, charset):
    with pytest.raises(UnsupportedContentType, match=f"charset '{charset.lower()}' is not supported") as raised:
        input_fn("é".encode("latin-1"), f"{content_type}; charset={charset}")
    assert raised.value.status == 415


def test_a_server_can_check_the_content_type_before_reading_the_body():
    assert check_content_type("Text/CSV; charset=UTF-8; header=present") == "text/csv"
    assert check_content_type(f"{NPY}; charset=latin-1") == NPY  # a binary body has no charset to honour
    with pytest.raises(UnsupportedContentType, match="charset 'latin-1' is not supported"):
        check_content_type("application/jsonlines; charset=latin-1")
    with pytest.raises(UnsupportedContentType, match="content type '\\(none\\)' is not supported; use text/csv or "):
        check_content_type(None)


@pytest.mark.parametrize("encoding", [None, "", "identity", "Identity"])
def test_an_uncompressed_body_passes_the_content_encoding_check(encoding):
    check_content_encoding(encoding)


@pytest.mark.parametrize("encoding", ["gzip", "deflate, identity", "br"])
def test_a_compressed_body_is_415_naming_its_encoding(encoding):
    with pytest.raises(UnsupportedContentType, match=f"content encoding '{encoding}' is not supported") as raised:
        check_content_encoding(encoding)
    assert raised.value.status == 415


def test_a_csv_header_names_the_columns_in_any_order(model, expected):
    order = list(reversed(range(len(FEATURES))))
    header = ",".join(FEATURES[i] for i in order)
    body = header.encode() + b"\n" + csv_body(ROWS[:, order])
    assert answer(model, body, "text/csv") == {"predictions": expected.tolist()}
    assert answer(model, body, "text/csv; header=present") == {"predictions": expected.tolist()}


def test_header_present_takes_the_first_line_as_names_whatever_it_holds(model):
    # Undeclared, a first line of numbers is a row; declared, it names the columns (and these are unknown).
    body = csv_body(ROWS)
    assert len(answer(model, body, "text/csv")["predictions"]) == len(ROWS)
    message = refusal(model, body, "text/csv; header=present")
    assert message.startswith("the CSV header: missing ")
    assert f"unknown '{float(ROWS[0, 0])!r}'" in message


def test_header_absent_takes_every_line_as_a_row(model):
    body = ",".join(FEATURES).encode() + b"\n" + csv_body(ROWS)
    message = refusal(model, body, "text/csv; header=absent")
    assert message == f"malformed CSV: CSV body line 1: column '#1' holds '{FEATURES[0]}', not a number"


def test_rfc_4180_quoted_numbers_and_names(model, expected):
    quoted = "".join(",".join(f'"{value!r}"' for value in row) + "\r\n" for row in ROWS.tolist())
    assert answer(model, quoted.encode(), "text/csv") == {"predictions": expected.tolist()}
    header = ",".join(f'"{name}"' for name in FEATURES) + "\r\n"
    assert answer(model, (header + quoted).encode(), "text/csv") == {"predictions": expected.tolist()}


def test_csv_answers_one_line_per_row_in_order_without_a_header(model, expected):
    # What SplitType=Line with AssembleWith=Line (and JoinSource=Input) joins line by line.
    body = ",".join(FEATURES).encode() + b"\n" + csv_body(ROWS)
    lines = respond(model, body, "text/csv", "text/csv").decode().split("\n")
    assert lines == [str(value) for value in expected.tolist()] + [""]


@pytest.mark.parametrize(
    "document",
    [
        lambda rows: rows.tolist(),
        lambda rows: {"instances": rows.tolist()},
        lambda rows: {"instances": records(rows)},
        lambda rows: [dict(reversed(list(record.items()))) for record in records(rows)],
        lambda rows: [records(rows)[0], *rows[1:].tolist()],
    ],
    ids=["rows", "instances", "records", "records-in-another-order", "a-record-and-rows"],
)
def test_json_rows_and_records_by_name_agree(model, expected, document):
    body = json.dumps(document(ROWS)).encode()
    assert answer(model, body, "application/json") == {"predictions": expected.tolist()}


def test_one_json_row_is_one_record(model):
    # Compared with a batch of one: a float32 network may round a row differently within a larger batch.
    alone = model.model.predict(ROWS[:1])
    assert answer(model, json.dumps(ROWS[0].tolist()), "application/json") == {"predictions": alone.tolist()}


@pytest.mark.parametrize(
    "lines",
    [
        lambda rows: json_lines(rows.tolist()),
        lambda rows: json_lines(records(rows)),
        lambda rows: json_lines([records(rows)[0], *rows[1:].tolist()]),
        lambda rows: b"\n" + json_lines(records(rows)).replace(b"\n", b"\r\n\n  \n"),
    ],
    ids=["rows", "records", "a-record-and-rows", "blank-lines-and-crlf"],
)
@pytest.mark.parametrize("content_type", [JSON_LINES, "application/x-jsonlines"])
def test_json_lines_in_one_line_out_per_line_in_order(model, expected, lines, content_type):
    output = respond(model, lines(ROWS), content_type, content_type).decode()
    assert output.endswith("\n")
    assert [json.loads(line) for line in output.splitlines()] == expected.tolist()


def test_json_lines_with_probabilities_answer_one_object_per_line(model, expected):
    if not CLASSIFICATION:
        with pytest.raises(UnsupportedAccept, match="classifiers only"):
            respond(model, json_lines(ROWS.tolist()), JSON_LINES, f"{JSON_LINES}; probabilities=true")
        return
    output = respond(model, json_lines(ROWS.tolist()), JSON_LINES, f"{JSON_LINES}; probabilities=true").decode()
    lines = output.splitlines()
    assert len(lines) == len(ROWS) and output.count("\n") == len(ROWS)
    answers = [json.loads(line) for line in lines]
    assert [item["prediction"] for item in answers] == expected.tolist()
    probabilities = model.model.probabilities(ROWS)
    np.testing.assert_allclose([item["probabilities"] for item in answers], probabilities, rtol=1e-6)
    assert all(item["classes"] == model.model.classes.tolist() for item in answers)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32])
def test_npy_rows_in_npy_out(model, dtype):
    rows = (ROWS if np.dtype(dtype).kind == "f" else np.round(ROWS)).astype(dtype)
    output = respond(model, npy(rows), NPY, NPY)
    answers = np.load(io.BytesIO(output), allow_pickle=False)
    np.testing.assert_array_equal(answers, model.model.predict(rows.astype(np.float64)))


def test_a_one_dimensional_npy_array_is_one_row(model):
    alone = model.model.predict(ROWS[:1])
    output = respond(model, npy(ROWS[0]), NPY, NPY)
    np.testing.assert_array_equal(np.load(io.BytesIO(output), allow_pickle=False), alone)


def test_a_fortran_ordered_big_endian_npy_array_reads_as_saved(model, expected):
    rows = np.asfortranarray(ROWS.astype(">f8"))
    assert answer(model, npy(rows), NPY) == {"predictions": expected.tolist()}


def test_npy_probabilities_on_request(model):
    prediction = predict_fn(input_fn(npy(ROWS), NPY), model)
    if not CLASSIFICATION:
        with pytest.raises(UnsupportedAccept, match="classifiers only"):
            output_fn(prediction, f"{NPY}; probabilities=true")
        return
    output = output_fn(prediction, f"{NPY}; probabilities=true")
    probabilities = np.load(io.BytesIO(output), allow_pickle=False)
    np.testing.assert_allclose(probabilities, model.model.probabilities(ROWS), rtol=1e-6)


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
        (b"1,2,3\n\n4,5\n", "text/csv", "malformed CSV: CSV body line 3: 2 columns where the rows above have 3"),
        (b"1,2,3\n4\n", "text/csv", "CSV body line 2: 1 column where the rows above have 3"),
        (b"1,2\n3,4", "text/csv; header=maybe", "header=maybe must be header=present or header=absent"),
        (b"", "text/csv", "no rows"),
        (b"a,b\n", "text/csv; header=present", "no rows"),
        (b"\xff\xfe", "text/csv", "not UTF-8"),
        (b"{not json", "application/json", "malformed JSON: Expecting property name"),
        (b'{"rows": []}', "application/json", '"instances"'),
        (b"[[1, 2], [3]]", "application/json", "row 1 has 1 value where row 0 has 2"),
        (b'[["a", "b"]]', "application/json", 'row 0: value 1 is "a", not a number'),
        (b'"text"', "application/json", "list of rows"),
        (b"[]", "application/json", "no rows"),
        (b'{"instances": []}', "application/json", "no rows"),
        (b'[{"x": "tall"}]', "application/json", "record 0: feature 'x' is \"tall\", not a number"),
        (b'[{"x": true}]', "application/json", "record 0: feature 'x' is true, not a number"),
        (b"[1.5, true, 2]", "application/json", "row 0: value 2 is true, not a number"),
        (b"[[1, 2], [3, false]]", "application/json", "row 1: value 2 is false, not a number"),
        (b'[["5.1", 2]]', "application/json", 'row 0: value 1 is "5.1", not a number'),
        (b"[[[1, 2]]]", "application/json", "row 0: value 1 is [1, 2], not a number"),
        (b'[{"x": 1}, 7]', "application/json", "row 1 is 7: send each row as a list of numbers"),
        (b'[{"x": 1' + b"0" * 400 + b"}]", "application/json", "record 0: feature 'x' is 1000"),
        (b"[1" + b"0" * 5000 + b"]", "application/json", "malformed JSON: a number too long to read"),
        (b"[" * 5000, "application/json", "malformed JSON: nested too deeply"),
        (b"[1, 2]\n\n[3, 4\n", JSON_LINES, "malformed JSON Lines: line 3: Expecting ',' delimiter at column 6"),
        (b"[1, 2]\n[3, 4]\n{not json}\n", JSON_LINES, "malformed JSON Lines: line 3: Expecting property name"),
        (b"[1, 2]\n[3, true]\n", JSON_LINES, "line 2: value 2 is true, not a number"),
        (b'[1, 2]\n{"x": false}\n', JSON_LINES, "line 2: feature 'x' is false, not a number"),
        (b"[1, 2]\n\n[3]\n", JSON_LINES, "line 3 has 1 value where line 1 has 2"),
        (b"[1, 2]\n5\n", JSON_LINES, "line 2 is 5: send each row as a list of numbers"),
        (b"\n \n", JSON_LINES, "no rows"),
        (b"x", NPY, "the body is not a .npy array: send what numpy.save writes"),
        (pickle.dumps([1.0, 2.0]), NPY, "the body is not a .npy array"),
        (npy(np.zeros(4))[:-1], NPY, "the .npy body holds 31 bytes of data, but its header's shape (4,) of float64"),
        (npy(np.array([True, False])), NPY, "the .npy array holds booleans, not numbers"),
        (npy(np.array(["5.1", "3.5"])), NPY, "the .npy array holds text, not numbers"),
        (npy(np.array([1 + 2j])), NPY, "the .npy array holds complex numbers, not numbers"),
        (npy(np.zeros(2, dtype=[("a", "<f8"), ("b", "<f8")])), NPY, "holds records of named fields, not numbers"),
        (npy(np.float64(5.1)), NPY, "the .npy array has shape (): send one row (1-D) or rows of features (2-D)"),
        (npy(np.zeros((2, 2, 2))), NPY, "the .npy array has shape (2, 2, 2)"),
        (npy(np.zeros((0, 4))), NPY, "no rows"),
        ("text", NPY, "an application/x-npy body is binary"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body, content_type, message):
    with pytest.raises(InferenceError, match=re.escape(message)) as raised:
        input_fn(body, content_type)
    assert raised.value.status == 400


class LeavesAFile:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_an_object_npy_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    body = npy(np.array([LeavesAFile(marker), 1.0], dtype=object))
    with pytest.raises(InferenceError, match=r"the \.npy array holds Python objects, not numbers") as raised:
        input_fn(body, NPY)
    assert raised.value.status == 400
    assert not marker.exists()
    np.load(io.BytesIO(body), allow_pickle=True)  # the body is what it claims: loading it leaves the file
    assert marker.exists()


def test_a_header_claiming_a_huge_array_is_refused_without_allocating_it():
    body = npy_header((10**15, 4)) + bytes(32)
    with pytest.raises(InferenceError, match="holds 32 bytes of data, but its header's shape") as raised:
        input_fn(body, NPY)
    assert raised.value.status == 400


MALFORMED = [
    (b"1,2,3\n4,5\n", "text/csv"),
    (b"1,2\n3,4,5,6,7\n", "text/csv"),
    (b'"5.1,3.5\n1,2\n', "text/csv"),
    (b'1,2\n"3\n4",5\n', "text/csv"),
    (b"1;2;3;4\n5;6;7;8\n", "text/csv"),
    (b"1,,2,3\n", "text/csv"),
    (b"a,b\n1,2,3\n", "text/csv"),
    (b",".join([b"1"] * 100_000) + b"\n", "text/csv"),
    (b"1,2,3,4\n" + b"\x00,1,2,3\n", "text/csv"),
    (b"1\r2\r3\r", "text/csv"),
    (b"[1" + b"0" * 5000 + b"]", "application/json"),
    (b"[[1, 2], [3, [4]]]", "application/json"),
    (b'{"instances": {"a": 1}}', "application/json"),
    (b"[1, 2]\n[3, 4, 5]\n", JSON_LINES),
    (b"[1" + b"0" * 5000 + b"]\n", JSON_LINES),
    (npy_header((3,), descr="<x9") + bytes(24), NPY),
    (npy_header((-3,)) + bytes(24), NPY),
    (npy_header((3,), descr=[("a", "<f8")]) + bytes(24), NPY),
    (npy(np.zeros(3)).replace(b"'fortran_order'", b"'Fortran_order'"), NPY),
    (npy(np.zeros(3)).replace(b"\x01\x00", b"\x03\x00", 1), NPY),
]
# Words from numpy's, pandas' and Python's own messages: advice about their arguments, not the request's.
LIBRARY_WORDS = re.compile(
    r"usecols|dtype=|could not convert|to float64|np\.|pandas|allow_pickle|max_header_size|descr|Header|"
    r"int_max_str_digits|Exceeds the limit|Traceback"
)


@pytest.mark.parametrize(
    ("body", "content_type"), MALFORMED, ids=[f"{kind}-{number}" for number, (_, kind) in enumerate(MALFORMED)]
)
def test_malformed_bodies_get_reasons_for_the_caller_not_the_parsers(model, body, content_type):
    message = refusal(model, body, content_type)
    assert not LIBRARY_WORDS.search(message), message
    assert len(message) < 300 and "\n" not in message


def refusal(model, body, content_type):
    with pytest.raises(InferenceError) as raised:
        predict_fn(input_fn(body, content_type), model)
    assert raised.value.status == 400
    return str(raised.value)


def test_rows_that_do_not_fit_the_saved_schema_are_refused_naming_the_features(model):
    needs = f"needs {len(FEATURES)} features ({', '.join(FEATURES)}), got {len(FEATURES) - 1}"
    assert f"each row {needs}" in refusal(model, csv_body(ROWS[:, 1:]), "text/csv")
    assert f"each row {needs}" in refusal(model, npy(ROWS[:, 1:]), NPY)
    assert f"each row {needs}" in refusal(model, npy(ROWS[0, 1:]), NPY)
    mixed = json_lines([records(ROWS[:1])[0], ROWS[1, 1:].tolist()])
    assert f"line 2 {needs}" in refusal(model, mixed, JSON_LINES)
    assert "must be a finite number" in refusal(model, json.dumps([[float("nan")] * len(FEATURES)]), "application/json")
    infinite = ROWS.copy()
    infinite[1, 0] = np.inf
    assert f"row 1: feature '{FEATURES[0]}' must be a finite number" in refusal(model, npy(infinite), NPY)
    lines = b"\n" + csv_body(infinite)
    assert f"line 3: feature '{FEATURES[0]}' must be a finite number" in refusal(model, lines, "text/csv")


def test_int_features_must_be_whole_numbers():
    # A schema of its own (support.TWO: a float `a`, an int `b`), whatever data.py declares.
    assert align(input_fn(json_lines([[0.5, 2], {"b": 3.0, "a": 1}]), JSON_LINES), TWO).tolist() == [[0.5, 2], [1, 3]]
    with pytest.raises(InferenceError, match=re.escape("line 3: feature 'b' is 1.5; it must be a whole number")):
        align(input_fn(b"a,b\n0.5,2\n0.5,1.5\n", "text/csv"), TWO)
    with pytest.raises(InferenceError, match=re.escape("row 1: feature 'b' is 2.5; it must be a whole number")):
        align(input_fn(npy(np.array([[0.5, 2], [1, 2.5]])), NPY), TWO)


def test_records_missing_or_naming_unknown_features_are_refused_by_name(model):
    record = records(ROWS[:1])[0]
    missing = {key: value for key, value in record.items() if key != FEATURES[0]}
    assert f"record 0: missing '{FEATURES[0]}'" in refusal(model, json.dumps([missing]), "application/json")
    unknown = {**record, "colour": 1}
    assert "record 0: unknown 'colour'; the features are" in refusal(model, json.dumps([unknown]), "application/json")
    assert "line 3: unknown 'colour'" in refusal(model, json_lines([record, record, unknown]), JSON_LINES)
    labelled = {**record, SCHEMA.label: 0}
    assert f"record 0: '{SCHEMA.label}' is the label; send the features only" in refusal(
        model, json.dumps([labelled]), "application/json"
    )


def test_a_csv_header_with_unknown_or_missing_columns_is_refused_by_name(model):
    header = ",".join(FEATURES[1:]) + ",colour"
    message = refusal(model, header.encode() + b"\n" + csv_body(ROWS), "text/csv")
    assert message == f"the CSV header: missing '{FEATURES[0]}' and unknown 'colour'; the features are " + ", ".join(
        f"'{name}'" for name in FEATURES
    )
    twice = ",".join([FEATURES[0], *FEATURES[:-1]])
    assert "names some columns more than once" in refusal(model, twice.encode() + b"\n" + csv_body(ROWS), "text/csv")
    neither = "the first line is neither a header naming the features"
    assert neither in refusal(model, b"x,y\n1,2\n", "text/csv")


def test_output_in_every_type():
    prediction = Prediction(np.array([0, 2]))
    assert output_fn(prediction, "text/csv") == b"0\n2\n"
    assert json.loads(output_fn(prediction, "application/json")) == {"predictions": [0, 2]}
    assert output_fn(prediction, JSON_LINES) == b"0\n2\n"
    assert output_fn(Prediction(np.array([0.5, -1.25])), JSON_LINES) == b"0.5\n-1.25\n"
    npy_answer = np.load(io.BytesIO(output_fn(prediction, NPY)), allow_pickle=False)
    assert npy_answer.dtype == np.int64 and npy_answer.tolist() == [0, 2]


def test_unsupported_content_type_is_415():
    with pytest.raises(UnsupportedContentType, match="use text/csv or application/json or ") as raised:
        input_fn(b"x", "application/x-npz")
    assert raised.value.status == 415


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
