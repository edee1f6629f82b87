"""The image tests' engine wrapper: what it tries again and what it does not."""

from __future__ import annotations

from pathlib import Path

from .containers import RUNTIME_START_GLITCH, Buildah, Container


def runs_of(tmp_path: Path, exit_codes: list[tuple[str, int]]) -> tuple[Container, Buildah, Path]:
    """A container whose Nth start prints the Nth message and exits with the Nth code; counts its starts."""
    count = tmp_path / "starts"
    script = "n=$(($(cat {0} 2>/dev/null || echo 0) + 1)); echo $n > {0}; case $n in {1} esac".format(
        count, " ".join(f"{n}) echo '{message}'; exit {code};;" for n, (message, code) in enumerate(exit_codes, 1))
    )
    engine = Buildah.__new__(Buildah)  # no engine is probed: start() runs the container's command as it is
    return Container(engine, "handle", ["sh", "-c", script]), engine, count


def test_a_runtime_that_could_not_seal_its_copy_is_started_once_more(tmp_path):
    container, engine, count = runs_of(tmp_path, [(f"Error: {RUNTIME_START_GLITCH}", 1), ("trained", 0)])
    finished = engine.run(container, timeout=30)
    assert (finished.returncode, finished.stdout.strip(), count.read_text().strip()) == (0, "trained", "2")


def test_any_other_failure_is_the_container_s_own_and_runs_once(tmp_path):
    container, engine, count = runs_of(tmp_path, [("bad hyperparameter", 2), ("trained", 0)])
    finished = engine.run(container, timeout=30)
    assert (finished.returncode, finished.stdout.strip(), count.read_text().strip()) == (2, "bad hyperparameter", "1")
