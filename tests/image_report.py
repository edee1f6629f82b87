"""The image tests' part of the terminal summary: each image, whether it was built and run, its size."""

from __future__ import annotations

import json
import re
from collections import defaultdict

TEST_FILE = "test_images.py::"
# A step skipped with a reason holding this does not exist for that kind of image: left out of its line.
DOES_NOT_APPLY = "does not apply"
STEPS = {
    "test_train_writes_the_model": "train",
    "test_train_with_a_broken_hyperparameter_fails_clearly": "failing train",
    "test_serve_answers_and_stops_on_sigterm": "serve",
    "test_artifact_handlers_answer_in_the_image": "handlers",
    "test_image_runs_as_the_user_sagemaker_runs_it": "user",
    "test_image_holds_no_credentials_or_local_files": "no secrets",
    "test_image_holds_exactly_the_locked_dependencies": "locked",
    "test_image_size_within_budget": "size",
    "test_a_code_change_rebuilds_only_the_code": "code-only rebuild",
}


def image_summary(stats: dict[str, list]) -> list[str]:
    """One line per image id, from the reports pytest kept (xdist carries user_properties too)."""
    outcomes: dict[str, dict[str, str]] = defaultdict(dict)
    facts: dict[str, dict[str, object]] = defaultdict(dict)
    skipped: dict[str, str] = {}
    for reports in stats.values():
        for report in reports:
            if not hasattr(report, "when"):  # deselected items and warnings share the stats
                continue
            match = re.search(r"::(\w+)\[(.+)\]$", report.nodeid)
            if TEST_FILE not in report.nodeid or not match or match.group(1) not in STEPS:
                continue
            test, image = match.groups()
            if report.skipped and isinstance(report.longrepr, tuple) and DOES_NOT_APPLY in report.longrepr[2]:
                continue
            if report.when == "call" or report.outcome != "passed":
                outcomes[image][STEPS[test]] = report.outcome
            if report.skipped and isinstance(report.longrepr, tuple):
                skipped[image] = report.longrepr[2].removeprefix("Skipped: ")
            for name, value in report.user_properties:
                if name == "image":
                    facts[image].update(json.loads(value))
    lines = []
    for image in sorted(outcomes):
        steps = ", ".join(f"{step} {outcome}" for step, outcome in outcomes[image].items())
        if image in skipped and all(outcome == "skipped" for outcome in outcomes[image].values()):
            lines.append(f"{image}: NOT BUILT, skipped: {skipped[image]}")
            continue
        fact = facts[image]
        size = (
            f"{fact['size_mb']} MB ({fact['added_mb']} MB over base {fact['base_mb']} MB: {fact['base']}; "
            f"budget {fact['budget_mb']} MB), built in {fact['build_seconds']} s with {fact['engine']}"
            if "size_mb" in fact
            else "size not measured"
        )
        if "rebuild_seconds" in fact:
            over = " OVER" if fact["rebuild_seconds"] > fact["rebuild_budget_seconds"] else ""
            budget = f"budget {fact['rebuild_budget_seconds']} s{over}"
            size += f", rebuilt after a code change in {fact['rebuild_seconds']} s ({budget})"
        timings = ", ".join(
            f"{label} {fact[key]} s"
            for key, label in (("train_seconds", "train"), ("ready_seconds", "ready"), ("stop_seconds", "stop"))
            if key in fact
        )
        lines.append(f"{image}: {size}; {steps}" + (f"; {timings}" if timings else ""))
    return lines
