"""Load generators: wrk (the benchmark's) and a small Python client (fallback, and the harness test's).

Both send the same POST body over a fixed number of keep-alive connections for a fixed time,
and report requests per second, p50 / p99 latency and errors (connection failures and any
answer that is not 200).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LUA_SCRIPT = Path(__file__).with_name("post.lua")
WRK_MISSING = (
    "wrk is not installed: install it (Debian/Ubuntu: `apt-get install -y wrk`, macOS: `brew install wrk`) "
    "or run with --client python (a slower client, which may itself be the bottleneck)"
)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, body: bytes, content_type: str, seconds: float, connections: int) -> LoadResult:
    """One wrk run: 1 thread (the server gets the other cores), `connections` connections, whole seconds."""
    if not wrk_available():
        raise RuntimeError(WRK_MISSING)
    body_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-body-{os.getpid()}"
    body_file.write_bytes(body)
    try:
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
        finished = subprocess.run(
            [*command, "-s", str(LUA_SCRIPT), url],
            env=dict(os.environ, BENCH_BODY_FILE=str(body_file), BENCH_CONTENT_TYPE=content_type),
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        body_file.unlink(missing_ok=True)
    lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr.strip() or finished.stdout.strip()}")
    # errors: connect, read, write and timeout failures plus every answer with a status over 399.
    return LoadResult(**json.loads(lines[-1]))


def run_python(url: str, body: bytes, content_type: str, seconds: float, connections: int) -> LoadResult:
    """The same load from Python threads: slower than wrk, but needs nothing installed."""
    parts = urlsplit(url)
    deadline = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    headers = {"Content-Type": content_type, "Accept": content_type}

    def drive(slot: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                connection.request("POST", parts.path, body, headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()  # reconnects on the next request
            if ok:
                latencies[slot].append(time.perf_counter() - started)
            else:
                errors[slot] += 1
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=drive, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    samples = sorted(latency for per_slot in latencies for latency in per_slot)
    return LoadResult(
        requests=len(samples) + sum(errors),
        seconds=elapsed,
        p50_ms=_percentile(samples, 50) * 1e3,
        p99_ms=_percentile(samples, 99) * 1e3,
        errors=sum(errors),
    )


def _percentile(samples: list[float], percent: float) -> float:
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(percent) - 1]
