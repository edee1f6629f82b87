"""Training throughput: a rendered project's training job against a bare loop of its framework, same data.

For each framework it renders the default project (once), writes a synthetic classification data set
of each size that follows the project's own data.py (its FEATURES and LABEL, as many classes as its
sample data; features of several scales, labels from a seeded random linear rule, so it is learnable)
as a CSV train channel with a header, in a SageMaker tree, and measures, each in a fresh process so
that peak memory (ru_maxrss: ours through the whole job, bare through its fit) is that case's alone:

- ours: the project's training as a job runs it (`python -m <package> train` against that tree, with
  epochs and batch_size in hyperparameters.json); the whole job's wall clock from process start to
  exit, and, by wrapping the runtime's functions in that process, its phases: reading the channel
  (`read_channel`, or `load_channel` where the runtime has it), `FrameworkModel.fit`, and evaluating
  (`evaluate`). A phase the runtime no longer calls shows as "-".
- bare: the framework on the same arrays in memory, standardised once, with model.py's builders:
  PyTorch, `build_network` and `build_optimizer` in a plain loop (no DistributedDataParallel);
  TensorFlow, Keras `model.fit` on `build_network` compiled with `build_optimizer`; scikit-learn,
  `build_estimator(...).fit`. Same batch size, epochs and seed.

Rows per second of a fit are rows x epochs / fit seconds (scikit-learn: one pass, no batches); the
ratio is our fit's seconds over the bare fit's. Both sides run in this interpreter's environment with
one math thread per process (`--threads`; 0 keeps the frameworks' defaults: on a shared 2-core machine
two threads per tiny step measure the scheduler, not the code: the same bare PyTorch fit took 2.3 s
with one and 15.7 s with two at load 3); the load average is recorded before and after every case.
`--stream` sets STREAM_DATA_ABOVE_MB=0 for our runs (the runtime then reads the channel out of core,
where it supports that; a runtime without the setting ignores it). The figures also go to
bench/results/training-<time>.json, or to --json PATH.

    .venv/bin/python bench/training.py                  # 3 frameworks x 10^4, 10^5, 10^6 rows: 7-10 minutes
    mkdir -p /tmp/head && git archive HEAD | tar -x -C /tmp/head    # a committed runtime, not the work tree
    .venv/bin/python bench/training.py --template /tmp/head
    .venv/bin/python bench/training.py --frameworks pytorch --rows 1000000 --epochs 1 --stream
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
FRAMEWORKS = ("sklearn", "pytorch", "tensorflow")
DEFAULT_ROWS = (10_000, 100_000, 1_000_000)
# Enough steps that the fixed costs of a fit (torch's first optimizer imports torch._dynamo, about
# 1-2 s; Keras traces its step) do not swamp the per-step ones at 10^4 rows, while the default run
# (three frameworks, three sizes, ours and bare) stays under 10 minutes on 2 cores (7 at load 1-2).
DEFAULT_EPOCHS = 15
DATA_SEED = 20261201
CHILD_TIMEOUT_S = 1800
EVALUATION_ROWS = 65_536  # rows the bare side scores at once, after its fit


def default_batch_size(rows: int) -> int:
    """32 below 30,000 rows, 128 below 300,000, else 512: about 300, 800 and 2,000 steps an epoch at 10^4-10^6."""
    if rows < 30_000:
        return 32
    return 128 if rows < 300_000 else 512


# ---------------------------------------------------------------------------------------------------
# The parent: render, prepare, run the children, print the table.


def render(framework: str, output_dir: Path, template: Path = TEMPLATE_DIR) -> Path:
    """The framework's default project (every other answer at its default)."""
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(output_dir), str(template)]
    finished = subprocess.run(
        [*command, f"framework={framework}"], capture_output=True, text=True, timeout=300, check=False
    )
    if finished.returncode != 0:
        raise RuntimeError(f"rendering {framework} failed:\n{finished.stdout}\n{finished.stderr}")
    (root,) = (path for path in output_dir.iterdir() if (path / ".cookiecutter.json").is_file())
    return root


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
TF_THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def child_environment(project: Path, threads: int, **variables: str) -> dict[str, str]:
    """PYTHONPATH for the project; `threads` math threads per process (0: the frameworks' own defaults)."""
    environ = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "STREAM_DATA_ABOVE_MB")}
    if threads:
        environ |= dict.fromkeys((*THREAD_VARIABLES, *TF_THREAD_VARIABLES), str(threads))
    return {**environ, "PYTHONPATH": str(project / "src"), "TF_CPP_MIN_LOG_LEVEL": "2", **variables}


def run_child(spec: dict[str, Any], workdir: Path, environ: dict[str, str]) -> dict[str, Any]:
    """This script in child mode on `spec`; its result, with the child's wall clock from spawn to exit."""
    name = spec["kind"]
    spec_path, result_path, log_path = (workdir / f"{name}.{suffix}" for suffix in ("spec.json", "result.json", "log"))
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({**spec, "result": str(result_path)}), encoding="utf-8")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)]
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        finished = subprocess.run(
            command, env=environ, stdout=log, stderr=subprocess.STDOUT, timeout=CHILD_TIMEOUT_S, check=False
        )
    wall = time.perf_counter() - started
    tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
    if finished.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"{name} exited with {finished.returncode}:\n{tail}")
    return {**json.loads(result_path.read_text(encoding="utf-8")), "process_wall_s": wall}


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    return {"cpu_model": model, "cores": os.cpu_count(), "python": platform.python_version()}


def template_version(template: Path) -> dict[str, Any]:
    """The template rendered: its folder, and where it is a git checkout its commit and uncommitted changes."""

    def git(*args: str) -> str | None:
        finished = subprocess.run(["git", "-C", str(template), *args], capture_output=True, text=True, check=False)
        return finished.stdout.strip() if finished.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD") if (template / ".git").exists() else None
    changed = git("status", "--porcelain", "--", ".") if commit else None
    return {
        "dir": str(template),
        "commit": commit,
        "uncommitted_files": None if changed is None else len(changed.splitlines()),
    }


def loads() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def measure_case(project: Path, case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Ours, then bare, on one prepared data set (`case`: what the prepare child wrote)."""
    framework, case_dir = case["framework"], Path(case["dir"])
    base = {"framework": framework, "package": package_of(project), "case": str(case_dir)}
    environ = child_environment(project, args.threads)
    ours_environ = child_environment(project, args.threads, STREAM_DATA_ABOVE_MB="0") if args.stream else environ
    load_before = loads()
    ours = run_child({**base, "kind": "ours"}, case_dir, ours_environ)
    bare = run_child({**base, "kind": "bare"}, case_dir, environ)
    given = {name: int(value) for name, value in case["hyperparameters"].items()}
    passes = case["rows"] * given.get("epochs", 1)  # a model.py without epochs (scikit-learn) fits in one pass
    return {
        "framework": framework,
        "rows": case["rows"],
        "batch_size": given.get("batch_size"),
        "epochs": given.get("epochs"),
        "stream": args.stream,
        "load_average_before": load_before,
        "load_average_after": loads(),
        "ours": ours,
        "bare": bare,
        "ours_rows_per_s": passes / ours["fit_s"],
        "bare_rows_per_s": passes / bare["fit_s"],
        "ratio": ours["fit_s"] / bare["fit_s"],
    }


def measure_framework(framework: str, scratch: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Render once, write every size's data set, measure each; a case that fails is recorded as such."""
    project = render(framework, scratch / framework, args.template)
    cases = [
        {
            "rows": rows,
            "batch_size": args.batch_size or default_batch_size(rows),
            "dir": str(scratch / framework / f"rows-{rows}"),
        }
        for rows in args.rows
    ]
    spec = {"kind": "prepare", "framework": framework, "package": package_of(project), "epochs": args.epochs}
    prepared = run_child({**spec, "cases": cases}, scratch / framework, child_environment(project, args.threads))
    results = []
    for case, written in zip(cases, prepared["cases"], strict=True):
        try:
            figures = measure_case(project, {**case, **written, "framework": framework}, args)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            figures = {"framework": framework, "rows": case["rows"], "error": str(error)}
            print(f"{framework} at {case['rows']:,} rows failed: {error}", file=sys.stderr)
        else:
            print(
                f"{framework:>10} {case['rows']:>9,} rows: ours {figures['ours_rows_per_s']:,.0f} rows/s, "
                f"bare {figures['bare_rows_per_s']:,.0f} rows/s (load {figures['load_average_after'][0]:.2f})",
                flush=True,
            )
        results.append(figures)
        for path in Path(case["dir"]).rglob("*.csv"):  # the data set is not needed any more
            with contextlib.suppress(OSError):
                path.unlink()
    return results


def package_of(project: Path) -> str:
    return json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))["package_name"]


def cell(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def seconds(value: float | None) -> str:
    """Three significant digits: a read of a few hundred rows takes well under a millisecond."""
    return "-" if value is None else f"{value:#.3g}".rstrip(".")


def table(results: dict[str, Any]) -> str:
    info, template = results["machine"], results["template"]
    threads = results["settings"]["threads"] or "the frameworks' default"
    inputs = {case["ours"]["fit_features"] for case in results["cases"] if "ours" in case}
    lines = [
        f"{info['cpu_model']}, {info['cores']} cores, Python {info['python']}; load average (1, 5, 15 min) "
        f"{results['load_average_at_start']} at the start, {results.get('load_average_at_end')} at the end"
        + ("; ours with STREAM_DATA_ABOVE_MB=0" if results["settings"]["stream"] else "")
        + f"; our fit was given {', '.join(sorted(inputs)) or 'nothing'}",
        f"template {template['dir']}"
        + (
            f" at {template['commit']} ({template['uncommitted_files']} files changed since)"
            if template["commit"]
            else ""
        )
        + f"; {threads} math thread(s) per process",
        "",
        "| framework | rows | batch | epochs | ours rows/s | bare rows/s | ours/bare time | read s | job s "
        "| peak MiB ours | peak MiB bare | load before-after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in results["cases"]:
        if "error" in case:
            lines.append(f"| {case['framework']} | {case['rows']:,} | failed: {case['error'].splitlines()[0]} |")
            continue
        ours, bare = case["ours"], case["bare"]
        lines.append(
            f"| {case['framework']} | {case['rows']:,} | {case['batch_size'] or '-'} "
            f"| {case['epochs'] or '-'} | {cell(case['ours_rows_per_s'], 0)} "
            f"| {cell(case['bare_rows_per_s'], 0)} | {cell(case['ratio'])} | {seconds(ours['phases'].get('read_s'))} "
            f"| {seconds(ours['process_wall_s'])} | {cell(ours['peak_mib'], 0)} | {cell(bare['peak_mib'], 0)} "
            f"| {case['load_average_before'][0]:.2f}-{case['load_average_after'][0]:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--rows", nargs="+", type=int, default=list(DEFAULT_ROWS), metavar="N")
    parser.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help=f"passes over the data (default {DEFAULT_EPOCHS})"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows per step (default per size: 32 below 30,000 rows, 128 below 300,000, else 512)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="math threads per process, both sides (default 1: on a shared machine more measure the scheduler; "
        "0: the frameworks' defaults)",
    )
    parser.add_argument("--stream", action="store_true", help="STREAM_DATA_ABOVE_MB=0 for our runs (read out of core)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="where to write the figures")
    parser.add_argument(
        "--template",
        type=Path,
        default=TEMPLATE_DIR,
        metavar="DIR",
        help="the template to render (default: this checkout, as it is now; e.g. a `git archive` of a commit)",
    )
    args = parser.parse_args(argv)
    if min(args.rows) < 10 or args.epochs < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser.error("--rows must be at least 10, --epochs and --batch-size at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        return child_main(Path(argv[1]))
    args = parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine(),
        "load_average_at_start": loads(),
        "settings": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "stream": args.stream,
            "threads": args.threads,
        },
        "template": template_version(args.template),
        "cases": [],
    }
    print(f"{results['machine']['cpu_model']}, {os.cpu_count()} cores, load {results['load_average_at_start']}")
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        for framework in args.frameworks:
            try:
                results["cases"] += measure_framework(framework, Path(scratch), args)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                results["cases"] += [{"framework": framework, "rows": rows, "error": str(error)} for rows in args.rows]
                print(f"{framework} failed: {error}", file=sys.stderr)
    results["load_average_at_end"] = loads()
    results["seconds"] = time.perf_counter() - started
    print()
    print(table(results))
    print(f"\n{results['seconds']:.0f} s in all")
    target = args.json or RESULTS_DIR / f"training-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"saved {target}")
    return 1 if any("error" in case for case in results["cases"]) else 0


# ---------------------------------------------------------------------------------------------------
# The children: each runs in a fresh interpreter with the rendered project's src/ on PYTHONPATH.


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synthetic(features: dict[str, str], classes: int, task: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature columns of several scales and offsets (4 decimals; int columns whole), labels from a linear rule."""
    rng = np.random.default_rng([seed, rows])
    columns = []
    for kind in features.values():
        if kind == "int":
            columns.append(rng.integers(0, 20, rows).astype(np.float64))
        else:
            columns.append(np.round(rng.normal(rng.uniform(-10, 10), rng.uniform(0.5, 5), rows), 4))
    table = np.column_stack(columns)
    standard = (table - table.mean(axis=0)) / (table.std(axis=0) + 1e-9)
    if task == "classification":
        # The class whose random linear score is highest, with a little noise: learnable, not trivial.
        scores = standard @ rng.normal(size=(table.shape[1], classes)) + rng.normal(0, 0.3, (rows, classes))
        labels = np.argmax(scores, axis=1).astype(np.int64)
    else:
        labels = np.round(standard @ rng.normal(size=table.shape[1]) + rng.normal(0, 0.3, rows), 4)
    return table, labels


def write_tree(
    case_dir: Path,
    columns: dict[str, str],
    label: str,
    task: str,
    data: tuple[np.ndarray, np.ndarray],
    hyperparameters: dict[str, str],
) -> None:
    """A SageMaker tree: config files, and the train channel as one CSV file with a header (label first)."""
    config = case_dir / "tree" / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    channel = {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
    files = {
        "hyperparameters.json": hyperparameters,
        "inputdataconfig.json": {"train": channel},
        "resourceconfig.json": {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"},
    }
    for name, content in files.items():
        (config / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    train = case_dir / "tree" / "input" / "data" / "train"
    train.mkdir(parents=True, exist_ok=True)
    table, labels = data
    label_format = "%d" if task == "classification" else "%.4f"
    formats = [label_format, *("%d" if kind == "int" else "%.4f" for kind in columns.values())]
    np.savetxt(
        train / "train.csv",
        np.column_stack([labels, table]),
        fmt=formats,
        delimiter=",",
        header=",".join([label, *columns]),
        comments="",
    )
    for folder in ("model", "output/data"):
        (case_dir / "tree" / folder).mkdir(parents=True, exist_ok=True)
    # The bare loop's copy of the same values, outside the channel.
    np.save(case_dir / "features.npy", table)
    np.save(case_dir / "labels.npy", labels)


def prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """Every case's data set, following the package's data.py (and model.py's hyperparameters)."""
    import importlib

    package = spec["package"]
    data = importlib.import_module(f"{package}.data")
    model = importlib.import_module(f"{package}.model")
    kinds = {name: kind.__name__ for name, kind in data.FEATURES.items()}
    sample = data.sample_data()
    classes = int(np.max(sample.column(data.LABEL))) + 1 if model.TASK == "classification" else 1
    declared = {parameter.name for parameter in model.HYPERPARAMETERS}
    written = []
    for case in spec["cases"]:
        generated = synthetic(kinds, classes, model.TASK, case["rows"], DATA_SEED)
        wanted = {"epochs": spec["epochs"], "batch_size": case["batch_size"]}
        hyperparameters = {name: str(value) for name, value in wanted.items() if name in declared}
        write_tree(Path(case["dir"]), kinds, data.LABEL, model.TASK, generated, hyperparameters)
        written.append({"rows": case["rows"], "hyperparameters": hyperparameters})
    return {"features": kinds, "label": data.LABEL, "task": model.TASK, "classes": classes, "cases": written}


def run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """`python -m <package> train` in this process, its runtime's phases timed from outside."""
    import importlib
    import runpy

    package, tree = spec["package"], Path(spec["case"]) / "tree"
    os.environ["SAGEMAKER_BASE_DIR"] = str(tree)
    training = importlib.import_module(f"{package}._runtime.training")
    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(function: Any, phase: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wall, processor = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - wall
                cpu[phase] = cpu.get(phase, 0.0) + time.process_time() - processor

        return wrapper

    # Whichever of these the runtime's training module calls (load_channel: with STREAM_DATA_ABOVE_MB).
    for name, phase in (("read_channel", "read_s"), ("load_channel", "read_s"), ("evaluate", "evaluate_s")):
        if callable(getattr(training, name, None)):
            setattr(training, name, timed(getattr(training, name), phase))
    framework_model, original_fit = training.FrameworkModel, training.FrameworkModel.fit
    given: dict[str, str] = {}

    def fit(features: Any, *args: Any, **kwargs: Any) -> Any:
        given["fit_features"] = type(features).__name__  # ndarray in memory; memmap when the runtime streams
        return original_fit(features, *args, **kwargs)

    framework_model.fit = staticmethod(timed(fit, "fit_s"))
    sys.argv = [package, "train"]
    try:
        runpy.run_module(package, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    failure = tree / "output" / "failure"
    if code != 0 or failure.exists():
        reason = failure.read_text(encoding="utf-8") if failure.exists() else "no failure file"
        raise RuntimeError(f"training exited with {code}: {reason}")
    if not any((tree / "model").iterdir()):
        raise RuntimeError("training wrote no model")
    metrics = json.loads((tree / "output" / "data" / "metrics.json").read_text(encoding="utf-8"))
    return {
        "fit_s": phases["fit_s"],
        "fit_cpu_s": cpu["fit_s"],
        "fit_features": given.get("fit_features"),
        "phases": phases,
        "metrics": metrics,
        "peak_mib": peak_mib(),
    }


def bare_sklearn(model: Any, params: dict[str, Any], features: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
    estimator = model.build_estimator(params).fit(features, labels)
    return (lambda rows: estimator.predict(rows)), None


def bare_pytorch(model: Any, params: dict[str, Any], features: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
    import torch

    classification = model.TASK == "classification"
    torch.manual_seed(params["seed"])
    inputs = torch.as_tensor(features, dtype=torch.float32)
    mean, scale = inputs.mean(dim=0), inputs.std(dim=0) + 1e-6
    inputs = (inputs - mean) / scale
    targets = torch.as_tensor(labels, dtype=torch.long if classification else torch.float32)
    outputs = int(targets.max()) + 1 if classification else 1
    network = model.build_network(inputs.shape[1], outputs, params)
    optimizer = model.build_optimizer(network.parameters(), params)
    loss_fn = torch.nn.CrossEntropyLoss() if classification else torch.nn.MSELoss()
    generator = torch.Generator().manual_seed(params["seed"])
    network.train()
    loss = torch.zeros(())
    for _ in range(params["epochs"]):
        for rows in torch.randperm(len(inputs), generator=generator).split(params["batch_size"]):
            optimizer.zero_grad()
            predicted = network(inputs[rows])
            loss = loss_fn(predicted if classification else predicted[:, 0], targets[rows])
            loss.backward()
            optimizer.step()
    network.eval()

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            answers = network((torch.as_tensor(rows, dtype=torch.float32) - mean) / scale)
        return (answers.argmax(dim=1) if classification else answers[:, 0]).numpy()

    return predict, float(loss.detach())


def bare_tensorflow(model: Any, params: dict[str, Any], features: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
    import keras

    classification = model.TASK == "classification"
    keras.utils.set_random_seed(params["seed"])
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    inputs = ((features - mean) / scale).astype("float32")
    outputs = int(labels.max()) + 1 if classification else 1
    network = model.build_network(inputs.shape[1], outputs, params)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) if classification else "mse"
    network.compile(optimizer=model.build_optimizer(params), loss=loss)
    history = network.fit(
        inputs, labels, batch_size=params["batch_size"], epochs=params["epochs"], shuffle=True, verbose=0
    )

    def predict(rows: np.ndarray) -> np.ndarray:
        answers = network(((rows - mean) / scale).astype("float32"), training=False).numpy()
        return answers.argmax(axis=1) if classification else answers[:, 0]

    return predict, float(history.history["loss"][-1])


def run_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """The framework alone on the same arrays, loaded before the clock starts."""
    import importlib

    model = importlib.import_module(f"{spec['package']}.model")
    hyperparameters = importlib.import_module(f"{spec['package']}._runtime.hyperparameters")
    case = Path(spec["case"])
    given = json.loads((case / "tree" / "input" / "config" / "hyperparameters.json").read_text(encoding="utf-8"))
    params = hyperparameters.parse(model.HYPERPARAMETERS, given)
    features, labels = np.load(case / "features.npy"), np.load(case / "labels.npy")
    fit = {"sklearn": bare_sklearn, "pytorch": bare_pytorch, "tensorflow": bare_tensorflow}[spec["framework"]]
    wall, processor = time.perf_counter(), time.process_time()
    predict, loss = fit(model, params, features, labels)
    fit_s, fit_cpu_s = time.perf_counter() - wall, time.process_time() - processor
    peak = peak_mib()  # through the fit: scoring the rows afterwards is no part of a bare loop
    chunks = range(0, len(features), EVALUATION_ROWS)
    predicted = np.concatenate([predict(features[start : start + EVALUATION_ROWS]) for start in chunks])
    if model.TASK == "classification":
        score = {"train:accuracy": float(np.mean(predicted == labels))}
    else:
        score = {"train:rmse": float(np.sqrt(np.mean((predicted - labels) ** 2)))}
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "final_loss": loss, "metrics": score, "peak_mib": peak}


def child_main(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    run = {"prepare": prepare, "ours": run_ours, "bare": run_bare}[spec["kind"]]
    result = run(spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
