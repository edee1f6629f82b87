"""How long a rendered project's test tiers take: `make test` (everyday) and `make test-all` (with the slow tier).

For each combination asked for, renders a project with cookiecutter, then runs its suite the way
its Makefile does (`pytest -m "not slow"`, and `pytest` for the whole suite) in this interpreter's
environment, which must hold the project's dependencies (the template's .venv does), with one math
thread per process as the template's CI gives each project. Each tier runs `--rounds` times; the
table gives the median and the range of the wall-clock seconds, the test counts and the slowest
test of the everyday tier. Figures also go to bench/results/project-tests-<time>.json.

    .venv/bin/python bench/project_tests.py                       # the three frameworks' defaults
    .venv/bin/python bench/project_tests.py --combinations pytorch:extend-prebuilt --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TIERS = {"make test": ["-m", "not slow"], "make test-all": []}
DEFAULT_COMBINATIONS = ("sklearn:from-scratch", "pytorch:from-scratch", "tensorflow:from-scratch")


def render(combination: str, output_dir: Path) -> Path:
    framework, base_image = combination.split(":")
    slug = f"{framework}-{base_image}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            str(TEMPLATE_DIR),
            "-o",
            str(output_dir),
            f"framework={framework}",
            f"base_image={base_image}",
            f"project_name={slug}",
        ],
        check=True,
        capture_output=True,
    )
    return output_dir / slug


def run_tier(project: Path, arguments: list[str]) -> dict[str, object]:
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=1", *arguments]
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=project, env=environ, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    lines = finished.stdout.strip().splitlines()
    slowest = next((line.strip() for line in lines if re.match(r"^\d+\.\d+s (call|setup|teardown)", line)), "")
    return {"seconds": seconds, "summary": lines[-1] if lines else "", "slowest": slowest, "rc": finished.returncode}


def measure(project: Path, rounds: int) -> dict[str, object]:
    tiers = {}
    for tier, arguments in TIERS.items():
        runs = [run_tier(project, arguments) for _ in range(rounds)]
        seconds = [float(run["seconds"]) for run in runs]
        tiers[tier] = {
            "median_seconds": statistics.median(seconds),
            "min_seconds": min(seconds),
            "max_seconds": max(seconds),
            "summary": runs[-1]["summary"],
            "slowest": runs[-1]["slowest"],
            "failed": any(run["rc"] != 0 for run in runs),
        }
    return tiers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combinations", nargs="+", default=list(DEFAULT_COMBINATIONS), metavar="FRAMEWORK:BASE")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    results = {"cores": os.cpu_count(), "load_average_at_start": load, "python": sys.version.split()[0], "runs": {}}
    print(f"{os.cpu_count()} cores, load average {load:.2f} at the start, {args.rounds} round(s) per tier")
    print("| project | tier | median s (min-max) | tests | slowest test |")
    print("| --- | --- | --- | --- | --- |")
    failed = False
    with tempfile.TemporaryDirectory(prefix="project-tests-") as scratch:
        for combination in args.combinations:
            project = render(combination, Path(scratch))
            tiers = measure(project, args.rounds)
            results["runs"][combination] = tiers
            for tier, figures in tiers.items():
                failed |= bool(figures["failed"])
                spread = f"{figures['min_seconds']:.1f}-{figures['max_seconds']:.1f}"
                print(
                    f"| {combination} | `{tier}` | {figures['median_seconds']:.1f} ({spread}) | {figures['summary']} "
                    f"| {figures['slowest']} |"
                )
    RESULTS_DIR.mkdir(exist_ok=True)
    target = RESULTS_DIR / f"project-tests-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"saved {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
