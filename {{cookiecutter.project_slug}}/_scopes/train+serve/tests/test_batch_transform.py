"""Batch transform as SageMaker runs it (tests/batch_transform.py): 100,000 records through the real server."""

import json

import numpy as np
import pytest

from {{ cookiecutter.package_name }}._runtime.inference import model_fn

from .batch_transform import MEBIBYTE, ExecutionParameters, TransformFailed, mini_batches, split_lines, transform
from .support import CLASSIFICATION, FEATURES, csv_body, sample_rows
from .test_server import FLOATS, Server

# The slow tier (`make test-all`): hosting modes and HTTP's edges, template code that model.py and data.py
# leave as it is; the everyday tier serves the model through the same server (test_server.py).
pytestmark = pytest.mark.slow

RECORDS = 100_000
MAX_PAYLOAD_IN_MB = 1  # the smallest a job can set: 100,000 records take several mini-batches
WORKERS = 2


@pytest.fixture(scope="module")
def server(trained_tree):
    running = Server(trained_tree, SAGEMAKER_MAX_PAYLOAD_IN_MB=str(MAX_PAYLOAD_IN_MB))
    status, _, _ = running.wait_until_listening()
    assert status == 200
    yield running
    code, log = running.stop()
    assert code == 0, log
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """The sample rows drawn at random, their float features moved a little so that records differ."""
    generator = np.random.default_rng(15)
    sample = sample_rows()
    drawn = sample[generator.integers(0, len(sample), RECORDS)]
    drawn[:, FLOATS] += generator.normal(0, 0.05, (RECORDS, int(FLOATS.sum())))
    return drawn


@pytest.fixture(scope="module")
def model(trained_tree):
    return model_fn(trained_tree / "model")


@pytest.fixture(scope="module")
def expected(model, rows) -> np.ndarray:
    return model.model.predict(rows)


def assert_answers(answers: list, expected: np.ndarray, model, rows: np.ndarray) -> None:
    """One right answer per record, in order. A float32 network may round a row differently in another
    batch: a label may then differ only where the model's two likeliest classes are all but tied."""
    assert len(answers) == RECORDS
    if not CLASSIFICATION:
        np.testing.assert_allclose(np.asarray(answers, dtype=np.float64), expected, rtol=1e-5, atol=1e-6)
        return
    differ = np.flatnonzero(np.asarray(answers) != expected)
    if differ.size:
        top_two = np.sort(model.model.probabilities(rows[differ]), axis=1)[:, -2:]
        assert np.all(top_two[:, 1] - top_two[:, 0] < 1e-5), f"{differ.size} wrong answers, first at record {differ[0]}"


def test_the_server_tells_the_job_its_execution_parameters(server):
    status, content_type, body = server.request("GET", "/execution-parameters")
    assert (status, content_type.split(";")[0]) == (200, "application/json")
    assert json.loads(body) == {
        "MaxConcurrentTransforms": WORKERS,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": MAX_PAYLOAD_IN_MB,
    }


def test_a_large_csv_file_gets_one_answer_line_per_record(server, rows, expected, model):
    data = csv_body(rows)
    output, report = transform(data, "text/csv", server.port)
    assert report.parameters == ExecutionParameters(WORKERS, "MULTI_RECORD", MAX_PAYLOAD_IN_MB)
    assert report.requests > 1 and report.requests >= len(data) / (MAX_PAYLOAD_IN_MB * MEBIBYTE)
    lines = output.decode().splitlines()
    assert_answers([float(line) if not CLASSIFICATION else int(line) for line in lines], expected, model, rows)


def test_a_large_json_lines_file_of_rows_and_records(server, rows, expected, model):
    # Half the records by position, half by name: a producer may write either.
    half = RECORDS // 2
    lines = [json.dumps(row) for row in rows[:half].tolist()]
    lines += [json.dumps(dict(zip(FEATURES, row, strict=True))) for row in rows[half:].tolist()]
    output, report = transform("\n".join(lines).encode(), "application/jsonlines", server.port)
    assert report.requests > 1
    answers = [json.loads(line) for line in output.decode().splitlines()]
    assert_answers(answers, expected, model, rows)


def test_csv_output_joined_to_its_input(server, rows, expected, model):
    data = csv_body(rows[:5000])
    output, _ = transform(data, "text/csv", server.port, join_source="Input")
    joined = output.decode().splitlines()
    records = data.decode().splitlines()
    assert len(joined) == len(records)
    assert all(line.startswith(record + ",") for line, record in zip(joined, records, strict=True))
    answers = [line.rsplit(",", 1)[1] for line in joined]
    assert answers[:5] == [str(value) for value in model.model.predict(rows[:5]).tolist()]


def test_json_lines_output_joined_to_its_input(server, rows):
    records = [dict(zip(FEATURES, row, strict=True)) for row in rows[:2000].tolist()]
    lists = rows[2000:2010].tolist()
    data = "\n".join(json.dumps(item) for item in [*records, *lists]).encode()
    output, _ = transform(data, "application/jsonlines", server.port, join_source="Input")
    joined = [json.loads(line) for line in output.decode().splitlines()]
    assert len(joined) == len(records) + len(lists)
    # An object keeps its keys and gains SageMakerOutput; anything else is wrapped.
    assert all(item.keys() == {*FEATURES, "SageMakerOutput"} for item in joined[: len(records)])
    assert [item["SageMakerInput"] for item in joined[len(records) :]] == lists


def test_a_bad_record_fails_the_job_with_the_servers_reason(server, rows):
    lines = csv_body(rows[:1000]).decode().splitlines()
    lines[700] = "1,not-a-number"
    with pytest.raises(TransformFailed, match=r"records 1-1000: /invocations answered 400: .*line 701"):
        transform("\n".join(lines).encode(), "text/csv", server.port)


def test_mini_batches_stay_under_the_payload_limit_in_order():
    records = [b"x" * size for size in (300_000, 400_000, 500_000, 200_000, 1_000_000, 10)]
    batches = list(mini_batches(records, ExecutionParameters(4, "MULTI_RECORD", 1)))
    assert [batch.first_record for batch in batches] == [0, 2, 4]
    assert all(len(batch.body) <= MEBIBYTE for batch in batches)
    assert [record for batch in batches for record in batch.records] == records


def test_a_record_over_the_payload_limit_fails_the_job():
    with pytest.raises(TransformFailed, match="record 2 is larger than MaxPayloadInMB=1"):
        list(mini_batches([b"1", b"x" * MEBIBYTE], ExecutionParameters(1, "MULTI_RECORD", 1)))


def test_single_record_and_unlimited_strategies():
    records = split_lines(b"1\n\n2\r\n3\n")
    assert records == [b"1", b"2", b"3"]
    single = list(mini_batches(records, ExecutionParameters(1, "SINGLE_RECORD", 6)))
    assert [batch.records for batch in single] == [(b"1",), (b"2",), (b"3",)]
    unlimited = list(mini_batches(records, ExecutionParameters(1, "MULTI_RECORD", 0)))
    assert [batch.body for batch in unlimited] == [b"1\n2\n3\n"]
