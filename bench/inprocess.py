"""The project's own code without HTTP or the training entrypoint, run in the project's environment.

`ceiling`: input_fn -> predict_fn -> output_fn in a loop on one thread, the most any server
could answer per worker. `train-direct`: the model code alone (read CSV, fit, save), to set
against `python -m <package> train`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path


def ceiling(package: str, model_dir: Path, payloads: list[tuple[str, str, Path]], seconds: float) -> dict:
    """For each (name, content type, body file): calls per second and the answer."""
    inference = importlib.import_module(f"{package}._runtime.inference")
    model = inference.model_fn(model_dir)
    results = {}
    for name, content_type, body_file in payloads:
        body = body_file.read_bytes()

        def once(body: bytes = body, content_type: str = content_type) -> bytes:
            rows = inference.input_fn(body, content_type)
            return inference.output_fn(inference.predict_fn(rows, model), content_type)

        answer = once()
        calls = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            for _ in range(20):
                once()
            calls += 20
        results[name] = {"calls_per_second": calls / elapsed, "answer": answer.decode()}
    return results


def train_direct(package: str, data: Path, model_dir: Path) -> dict:
    model_module = importlib.import_module(f"{package}.model")
    runtime = {name: importlib.import_module(f"{package}._runtime.{name}") for name in ("contract", "framework")}
    hyperparameters = importlib.import_module(f"{package}._runtime.hyperparameters")
    tables = importlib.import_module(f"{package}._runtime.tables")
    schema = importlib.import_module(f"{package}._runtime.sample_tree").schema()
    dataset = tables.read_channel("train", data.parent, schema)
    params = hyperparameters.defaults(model_module.HYPERPARAMETERS)
    # The sample tree has no checkpoints/ folder, so the job does not checkpoint either: same model work.
    job = runtime["contract"].TrainingJob.single_host()
    runtime["framework"].FrameworkModel.fit(dataset.features, dataset.labels, params, job).save(model_dir)
    return {"saved": str(model_dir)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("ceiling")
    measure.add_argument("--model-dir", type=Path, required=True)
    measure.add_argument("--payload", nargs=3, action="append", metavar=("NAME", "CONTENT_TYPE", "BODY_FILE"))
    measure.add_argument("--seconds", type=float, default=2.0)
    train = commands.add_parser("train-direct")
    train.add_argument("--data", type=Path, required=True)
    train.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "ceiling":
        payloads = [(name, content_type, Path(path)) for name, content_type, path in args.payload]
        result = ceiling(args.package, args.model_dir, payloads, args.seconds)
    else:
        result = train_direct(args.package, args.data, args.model_dir)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
