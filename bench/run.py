"""Serving and start-up benchmark: each framework's rendered server against AWS's BYOC reference stack.

Run from the template's root (README, "Benchmark"):  .venv/bin/python bench/run.py
For every framework the template renders from scratch: render a train+serve CPU project, train it
on its sample data, time `train` against the bare model code, time cold starts, then drive the
real server (and, for scikit-learn, the reference stack on the same model and worker count,
alternating run by run) with one- and 100-row CSV and JSON payloads. Prints a table and saves
the figures as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import harness
import load
from harness import Payload, Project, ServerProcess

RESULTS_DIR = harness.BENCH_DIR / "results"
Drive = Callable[[str, bytes, str, float, int], load.LoadResult]

# The targets: (framework, payload) -> least ratio of requests per second to the reference's.
RPS_RATIO_TARGETS = {("sklearn", "csv-1"): 3.5, ("sklearn", "csv-100"): 3.0, ("sklearn", "json-100"): 3.0}
COLD_START_TARGETS = {"sklearn": 1.5}  # seconds; every other framework: 4 s
CEILING_FRACTION_TARGET = 0.4
TRAIN_OVERHEAD_TARGET = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=harness.frameworks(), help="default: all implemented")
    parser.add_argument("--project", type=Path, action="append", default=[], help="bench this rendered project instead")
    parser.add_argument("--client", choices=("wrk", "python"), default="wrk", help="load generator (default wrk)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one load run")
    parser.add_argument("--rounds", type=int, default=3, help="load runs per stack and payload, alternated")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server workers, both stacks")
    parser.add_argument(
        "--environment",
        choices=("own", "shared"),
        default="own",
        help="own (default): each project in a fresh venv with only its pinned dependencies, as in its image; "
        "shared: this interpreter's packages (quicker to set up, slower imports)",
    )
    parser.add_argument("--cold-starts", type=int, default=5, help="starts timed per stack (0: none)")
    parser.add_argument("--train-runs", type=int, default=3, help="timed runs of train and of the bare model code")
    parser.add_argument("--ceiling-seconds", type=float, default=2.0, help="length of one in-process loop")
    parser.add_argument("--output", type=Path, help="JSON file (default: bench/results/bench-<time>.json)")
    return parser.parse_args(argv)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cold_starts(start: Callable[[], ServerProcess], count: int) -> tuple[float, float, list[int]]:
    """Median wall-clock and CPU seconds from process start to the first 200 from /ping; exit codes."""
    seconds: list[float] = []
    cpu: list[float] = []
    exits: list[int] = []
    for _ in range(count):
        server = start()
        try:
            seconds.append(server.wait_healthy())
            cpu.append(server.cpu_seconds())
        finally:
            exits.append(server.stop())
    return median(seconds), median(cpu), exits


def check_answers(servers: dict[str, ServerProcess], payload: Payload, expected: list[str]) -> None:
    for name, server in servers.items():
        status, answer = harness.post(server.port, payload)
        if status != 200 or harness.predictions(answer, payload.content_type) != expected:
            raise RuntimeError(f"{name} answered {payload.name} wrongly ({status}): {answer[:200]!r}")


def load_runs(servers: dict[str, ServerProcess], payloads: list[Payload], drive: Drive, args) -> dict:
    """Every stack on every payload, `rounds` times, the stacks' order flipped each round."""
    runs: dict[str, dict[str, list[load.LoadResult]]] = {p.name: {name: [] for name in servers} for p in payloads}
    warm_up = min(1.0, args.seconds)
    for payload in payloads:  # the reference loads its model on its first request
        for server in servers.values():
            drive(f"http://127.0.0.1:{server.port}/invocations", payload.body, payload.content_type, warm_up, 2)
    for round_index in range(args.rounds):
        order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
        for payload in payloads:
            for name in order:
                url = f"http://127.0.0.1:{servers[name].port}/invocations"
                runs[payload.name][name].append(
                    drive(url, payload.body, payload.content_type, args.seconds, args.connections)
                )
    return runs


def summarise(results: list[load.LoadResult]) -> dict:
    return {
        "rps": median([r.rps for r in results]),
        "p50_ms": median([r.p50_ms for r in results]),
        "p99_ms": median([r.p99_ms for r in results]),
        "errors": sum(r.errors for r in results),
        "requests": sum(r.requests for r in results),
        "runs_rps": [round(r.rps, 1) for r in results],
    }


def bench_serving(project: Project, scratch: Path, drive: Drive, args) -> dict:
    starters = {"ours": lambda: harness.our_server(project, args.workers, scratch)}
    if project.framework == "sklearn":  # the reference serves the same scikit-learn artifact
        starters["reference"] = lambda: harness.reference_server(project, args.workers, scratch)
    figures: dict = {"cold_start_s": {}, "cold_start_cpu_s": {}, "peak_rss_mib": {}, "exit_codes": {}, "payloads": {}}
    for name, start in starters.items():
        wall, cpu, figures["exit_codes"][name] = cold_starts(start, args.cold_starts)
        figures["cold_start_s"][name], figures["cold_start_cpu_s"][name] = wall, cpu

    payloads = harness.payloads(project.features())
    servers = {name: start() for name, start in starters.items()}
    try:
        for server in servers.values():
            server.wait_healthy()
        options = ["--model-dir", str(project.model_dir), "--seconds", str(args.ceiling_seconds)]
        for payload in payloads:
            body_file = scratch / f"{project.framework}-{payload.name}.body"
            body_file.write_bytes(payload.body)
            options += ["--payload", payload.name, payload.content_type, str(body_file)]
        ceilings = harness.in_process(project, "ceiling", *options)
        for payload in payloads:
            expected = harness.predictions(ceilings[payload.name]["answer"].encode(), payload.content_type)
            check_answers(servers, payload, expected)
        runs = load_runs(servers, payloads, drive, args)
        figures["peak_rss_mib"] = {name: server.peak_rss_mib() for name, server in servers.items()}
    finally:
        for name, server in servers.items():
            figures["exit_codes"][name].append(server.stop())

    for payload in payloads:
        stacks = {name: summarise(results) for name, results in runs[payload.name].items()}
        ceiling = ceilings[payload.name]["calls_per_second"]
        entry = {**stacks, "ceiling_calls_per_s": ceiling, "fraction_of_ceiling": stacks["ours"]["rps"] / ceiling}
        if "reference" in stacks:
            entry["rps_ratio"] = stacks["ours"]["rps"] / stacks["reference"]["rps"]
            entry["p99_ratio"] = stacks["reference"]["p99_ms"] / stacks["ours"]["p99_ms"]
        figures["payloads"][payload.name] = entry
    return figures


def bench_training(project: Project, scratch: Path, runs: int) -> dict:
    """`python -m <package> train` against the bare model code, alternated; both start a fresh interpreter."""
    inprocess = str(harness.BENCH_DIR / "inprocess.py")
    direct = [project.interpreter, inprocess, "--package", project.package, "train-direct"]
    direct += ["--data", str(project.base_dir / "input" / "data" / "train" / "train.csv")]
    direct += ["--model-dir", str(scratch / f"{project.framework}-direct-model")]
    entrypoint, bare = [], []
    for _ in range(runs):
        entrypoint.append(harness.timed(project.command("train"), project.environ()))
        bare.append(harness.timed(direct, project.environ()))
    figures = {}
    for index, kind in enumerate(("s", "cpu_s")):  # wall clock, then CPU (steady on a busy machine)
        ours, theirs = median([run[index] for run in entrypoint]), median([run[index] for run in bare])
        figures |= {f"entrypoint_{kind}": ours, f"direct_{kind}": theirs, f"overhead_{kind}": ours - theirs}
    return figures


def targets(frameworks: dict) -> list[dict]:
    found = []

    def record(name: str, value: float, threshold: float, met: bool) -> None:
        found.append({"target": name, "value": round(value, 3), "threshold": threshold, "met": bool(met)})

    for label, figures in frameworks.items():
        framework = figures["framework"]
        for (target_framework, payload), least in RPS_RATIO_TARGETS.items():
            if target_framework == framework and payload in figures["payloads"]:
                ratio = figures["payloads"][payload]["rps_ratio"]
                record(f"{label} {payload}: req/s vs reference", ratio, least, ratio >= least)
        if framework == "sklearn" and "csv-1" in figures["payloads"]:
            entry = figures["payloads"]["csv-1"]
            record(f"{label} csv-1: reference p99 / ours", entry["p99_ratio"], 3.0, entry["p99_ratio"] >= 3.0)
            fraction = entry["fraction_of_ceiling"]
            record(f"{label} csv-1: fraction of in-process ceiling", fraction, CEILING_FRACTION_TARGET, fraction >= 0.4)
        limit = COLD_START_TARGETS.get(framework, 4.0)
        cold = figures["cold_start_s"]["ours"]
        if not math.isnan(cold):  # --cold-starts 0 measures none
            record(f"{label}: cold start to first /ping 200 (s)", cold, limit, cold < limit)
        for kind in ("s", "cpu_s"):
            overhead = figures["train"][f"overhead_{kind}"]
            name = f"{label}: train entrypoint overhead ({kind.replace('_', ' ')})"
            record(name, overhead, TRAIN_OVERHEAD_TARGET, overhead < TRAIN_OVERHEAD_TARGET)
    return found


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "openblas_env": {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }


def table(results: dict) -> str:
    settings = results["settings"]
    width = max([11, *(len(label) + 2 for label in results["frameworks"])])
    lines = [
        f"Serving: {settings['workers']} workers per stack, {settings['client']} with {settings['connections']} "
        f"connections, {settings['seconds']:g} s x {settings['rounds']} rounds per figure (median); "
        f"{results['machine']['cpus']} CPUs, load average {results['machine']['load_average'][0]:.2f} at start",
        f"{'framework':<{width}}{'payload':<10}{'ours req/s':>11}{'ref req/s':>11}{'ratio':>8}"
        f"{'ours p50/p99 ms':>17}{'ref p50/p99 ms':>16}{'p99 ref/ours':>13}{'errors':>8}"
        f"{'ceiling/s':>11}{'of ceil.':>9}",
    ]
    for framework, figures in results["frameworks"].items():
        for name, entry in figures["payloads"].items():
            ours, ref = entry["ours"], entry.get("reference")
            errors = f"{ours['errors']}/{ref['errors']}" if ref else str(ours["errors"])
            lines.append(
                f"{framework:<{width}}{name:<10}{ours['rps']:>11,.0f}"
                + (f"{ref['rps']:>11,.0f}{entry['rps_ratio']:>7.2f}x" if ref else f"{'-':>11}{'-':>8}")
                + f"{ours['p50_ms']:>9.2f} /{ours['p99_ms']:>6.2f}"
                + (f"{ref['p50_ms']:>8.2f} /{ref['p99_ms']:>6.2f}" if ref else f"{'-':>16}")
                + (f"{entry['p99_ratio']:>12.2f}x" if ref else f"{'-':>13}")
                + f"{errors:>8}{entry['ceiling_calls_per_s']:>11,.0f}{entry['fraction_of_ceiling']:>9.0%}"
            )
    lines += [
        "",
        f"{'framework':<{width}}{'cold start ours/ref (s)':>25}{'(CPU s)':>16}{'peak RSS ours/ref (MiB)':>26}"
        f"{'train: entrypoint/direct/overhead (s)':>40}{'(CPU s)':>24}{'exit codes':>14}",
    ]
    for framework, figures in results["frameworks"].items():
        cold, cpu, rss, train = (figures[key] for key in ("cold_start_s", "cold_start_cpu_s", "peak_rss_mib", "train"))
        exits = "all 0" if all(code == 0 for codes in figures["exit_codes"].values() for code in codes) else "NOT 0"
        lines.append(
            f"{framework:<{width}}{cold['ours']:>16.2f} / {cold.get('reference', float('nan')):>5.2f}"
            f"{cpu['ours']:>9.2f} / {cpu.get('reference', float('nan')):>4.2f}"
            f"{rss['ours']:>17.0f} / {rss.get('reference', float('nan')):>5.0f}"
            f"{train['entrypoint_s']:>24.2f} / {train['direct_s']:.2f} / {train['overhead_s']:+.2f}"
            f"{train['entrypoint_cpu_s']:>11.2f} / {train['direct_cpu_s']:.2f} / {train['overhead_cpu_s']:+.2f}"
            f"{exits:>14}"
        )
    lines += ["", "Targets:"]
    lines += [
        f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']:g} (target {t['threshold']:g})"
        for t in results["targets"]
    ]
    return "\n".join(lines)


def failures(results: dict) -> list[str]:
    """What makes the run itself invalid: errors under load, or a server that did not exit 0."""
    found = []
    for framework, figures in results["frameworks"].items():
        for name, entry in figures["payloads"].items():
            for stack in ("ours", "reference"):
                if stack in entry and entry[stack]["errors"]:
                    found.append(f"{framework} {name} {stack}: {entry[stack]['errors']} errors")
        for stack, codes in figures["exit_codes"].items():
            if any(code != 0 for code in codes):
                found.append(f"{framework} {stack}: exit codes {codes} after SIGTERM")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client == "wrk" and not load.wrk_available():
        print(load.WRK_MISSING, file=sys.stderr)
        return 2
    drive: Drive = load.run_wrk if args.client == "wrk" else load.run_python
    results: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {key: value for key, value in vars(args).items() if key not in ("project", "output")},
        "frameworks": {},
    }
    with tempfile.TemporaryDirectory(prefix="byoc-bench-") as scratch_name:
        scratch = Path(scratch_name)
        if args.project:
            projects = []
            for path in (path.resolve() for path in args.project):
                own = args.environment == "own"
                python = harness.install(path, scratch / f"{path.name}-venv") if own else None
                projects.append(Project(path, scratch / f"{path.name}-ml", python).prepare())
        else:
            projects = [harness.render(framework, scratch, args.environment == "own") for framework in args.frameworks]
        for project in projects:
            print(f"benchmarking {project.framework} ({project.root.name}) ...", file=sys.stderr, flush=True)
            figures = {"framework": project.framework, "train": bench_training(project, scratch, args.train_runs)}
            figures.update(bench_serving(project, scratch, drive, args))
            label = f"{project.framework}:{project.root.name}" if args.project else project.framework
            results["frameworks"][label] = figures
    results["targets"] = targets(results["frameworks"])
    results["failures"] = failures(results)
    output = args.output or RESULTS_DIR / f"bench-{results['date'].replace(':', '')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nfigures saved to {output}")
    for failure in results["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
