"""A local batch transform: what SageMaker does with a transform job's input files, against a running server.

SageMaker asks the container for `GET /execution-parameters` (used where the job sets nothing), splits
each input file into records (`SplitType=Line`: one per line), packs as many records as fit under
`MaxPayloadInMB` into each request (`BatchStrategy=MULTI_RECORD`; `SINGLE_RECORD`: one per request),
keeps `MaxConcurrentTransforms` requests in flight and writes the answers, in input order, to
`<file>.out` (`AssembleWith=Line`: one output line per input record). With `JoinSource=Input` each output
line is joined to its input record: appended to a CSV row, or put under `SageMakerOutput` of a JSON
object (`{"SageMakerInput": ..., "SageMakerOutput": ...}` for anything else). A request the container
refuses fails the job with its status and reason, as the job's failure reason would say.

Run as a script to transform a file:  python tests/batch_transform.py --port 8080 input.csv text/csv
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MEBIBYTE = 1024 * 1024


class TransformFailed(RuntimeError):
    """The job fails: a request was refused, or answers do not line up with the records sent."""


@dataclass(frozen=True)
class ExecutionParameters:
    max_concurrent_transforms: int
    batch_strategy: str
    max_payload_in_mb: int

    @classmethod
    def of(cls, document: dict) -> ExecutionParameters:
        return cls(
            int(document["MaxConcurrentTransforms"]),
            str(document["BatchStrategy"]),
            int(document["MaxPayloadInMB"]),
        )


@dataclass(frozen=True)
class MiniBatch:
    first_record: int  # index of its first record in the file
    records: tuple[bytes, ...]

    @property
    def body(self) -> bytes:
        return b"".join(record + b"\n" for record in self.records)


@dataclass(frozen=True)
class TransformReport:
    records: int
    requests: int
    seconds: float
    parameters: ExecutionParameters

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else float("inf")


class Connections:
    """One keep-alive connection per sending thread, as SageMaker's agent keeps its own."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.local = threading.local()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        for attempt in (1, 2):  # a keep-alive connection the server closed is opened again, once
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout
                )
            try:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                answer = response.status, response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close_mine()
                return answer
            except (ConnectionError, http.client.RemoteDisconnected):
                self.close_mine()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close_mine(self) -> None:
        connection = getattr(self.local, "connection", None)
        if connection is not None:
            connection.close()
            self.local.connection = None


def execution_parameters(connections: Connections) -> ExecutionParameters:
    status, body = connections.request("GET", "/execution-parameters")
    if status != 200:
        raise TransformFailed(f"GET /execution-parameters answered {status}: {body.decode(errors='replace')}")
    return ExecutionParameters.of(json.loads(body))


def split_lines(data: bytes) -> list[bytes]:
    """SplitType=Line: each non-empty line is a record."""
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]


def mini_batches(records: Sequence[bytes], parameters: ExecutionParameters) -> Iterator[MiniBatch]:
    """Records packed in order; a record alone over MaxPayloadInMB fails the job, as SageMaker's does."""
    if parameters.batch_strategy == "SINGLE_RECORD":
        for index, record in enumerate(records):
            yield MiniBatch(index, (record,))
        return
    limit = parameters.max_payload_in_mb * MEBIBYTE
    if limit == 0:  # no fixed limit: the whole file in one request
        yield MiniBatch(0, tuple(records))
        return
    first, size = 0, 0
    for index, record in enumerate(records):
        if len(record) + 1 > limit:
            raise TransformFailed(f"record {index + 1} is larger than MaxPayloadInMB={parameters.max_payload_in_mb}")
        if size + len(record) + 1 > limit:
            yield MiniBatch(first, tuple(records[first:index]))
            first, size = index, 0
        size += len(record) + 1
    if first < len(records):
        yield MiniBatch(first, tuple(records[first:]))


def joined(record: bytes, answer: bytes, content_type: str) -> bytes:
    """JoinSource=Input: the answer appended to its input record."""
    if content_type == "text/csv":
        return record + b"," + answer
    document = json.loads(record)
    output = json.loads(answer)
    if isinstance(document, dict):
        document["SageMakerOutput"] = output
    else:
        document = {"SageMakerInput": document, "SageMakerOutput": output}
    return json.dumps(document).encode()


def transform(
    data: bytes,
    content_type: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    accept: str | None = None,
    join_source: str = "None",
    parameters: ExecutionParameters | None = None,
    timeout: float = 600.0,  # SageMaker's time for one mini-batch
) -> tuple[bytes, TransformReport]:
    """The `.out` file for one input file (SplitType=Line, AssembleWith=Line), and how the job went."""
    connections = Connections(host, port, timeout)
    parameters = parameters or execution_parameters(connections)
    accept = accept or content_type  # JoinSource=Input needs the answer in the input's type
    records = split_lines(data)
    batches = list(mini_batches(records, parameters))
    headers = {"Content-Type": content_type, "Accept": accept}

    def send(batch: MiniBatch) -> list[bytes]:
        status, body = connections.request("POST", "/invocations", batch.body, headers)
        where = f"records {batch.first_record + 1}-{batch.first_record + len(batch.records)}"
        if status != 200:
            raise TransformFailed(f"{where}: /invocations answered {status}: {body.decode(errors='replace').strip()}")
        lines = split_lines(body)
        if len(lines) != len(batch.records):
            raise TransformFailed(f"{where}: {len(lines)} output lines for {len(batch.records)} records")
        return lines

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, parameters.max_concurrent_transforms)) as pool:
        answers = list(pool.map(send, batches))  # in input order, whatever order they finish in
    seconds = time.perf_counter() - started
    output = []
    for batch, lines in zip(batches, answers, strict=True):
        if join_source == "Input":
            output += [joined(record, line, content_type) for record, line in zip(batch.records, lines, strict=True)]
        else:
            output += lines
    report = TransformReport(len(records), len(batches), seconds, parameters)
    return b"".join(line + b"\n" for line in output), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("content_type")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--join-source", choices=("None", "Input"), default="None")
    args = parser.parse_args(argv)
    try:
        output, report = transform(args.input.read_bytes(), args.content_type, args.port, join_source=args.join_source)
    except TransformFailed as error:
        print(f"transform failed: {error}", file=sys.stderr)
        return 1
    args.input.with_name(args.input.name + ".out").write_bytes(output)
    print(
        json.dumps(
            {
                "records": report.records,
                "requests": report.requests,
                "seconds": round(report.seconds, 3),
                "records_per_second": round(report.records_per_second, 1),
                "max_concurrent_transforms": report.parameters.max_concurrent_transforms,
                "max_payload_in_mb": report.parameters.max_payload_in_mb,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
