"""Regenerate the requirements.txt every rendered project ships, one per set of answers that changes it.

A project's runtime dependencies depend on its framework, processor and scope; each such set gets its
lock under `{{cookiecutter.project_slug}}/_locks/<answers>/`, which the post-generation hook moves into
the project. Every lock is made by the rendered project's own `make lock` on the template's oldest
Python: a universal lock holds markers for every later one, so one file serves both Python versions.
PyTorch's CPU build is served from this machine's wheels (tests/wheel_index.py), as the image tests do;
the lock keeps their hashes and never the index's address.

    .venv/bin/python -m tools.lock_projects [--only framework=pytorch,processor=cpu ...]   # or: make locks
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "{{cookiecutter.project_slug}}" / "_locks"
PROCESSORS = {"sklearn": ("cpu",), "pytorch": ("cpu", "gpu"), "tensorflow": ("cpu", "gpu")}
SCOPES = ("train+serve", "train-only")
OLDEST_PYTHON = "3.11"
# The sha256 PyTorch's CPU index gives for each CPU wheel this machine has no copy of (the index is out of
# reach here; the digest as public projects pinning that wheel record it, in agreement), keyed by the torch
# pin; the lock carries them beside the hash of the wheel that is here.
TORCH_CPU_HASHES = {
    "2.13.0": ["4ca4a9394b0c771238a4f73590fdbbc4debad85ed0fa63d026ae1b085da7d6e2"],  # cp312 manylinux_2_28 x86_64
}


def answer_sets() -> Iterator[dict[str, str]]:
    for framework, processors in PROCESSORS.items():
        for processor in processors:
            for scope in SCOPES:
                yield {"framework": framework, "processor": processor, "scope": scope}


def folder_name(answers: dict[str, str]) -> str:
    """The hook's `key=value,...` naming, keys in order."""
    return ",".join(f"{key}={answers[key]}" for key in sorted(answers))


def torch_cpu_index(answers: dict[str, str], workdir: Path) -> str | None:
    if (answers["framework"], answers["processor"]) != ("pytorch", "cpu"):
        return None
    sys.path.insert(0, str(ROOT))
    from tests.standins import cache_dir
    from tests.wheel_index import CpuWheelIndex

    index = CpuWheelIndex(workdir / "index", cache_dir().parent / "wheels")
    return index.url_for(pinned(workdir, "torch"), OLDEST_PYTHON)


def pinned(project: Path, name: str) -> str:
    for line in (project / "pyproject.toml").read_text().splitlines():
        if line.strip().startswith(f'"{name}=='):
            return line.split("==")[1].split('"')[0]
    raise LookupError(f"{name} is not pinned in {project / 'pyproject.toml'}")


def with_published_torch_hashes(text: str, version: str) -> str:
    """The torch entry for Linux x86-64 only, which is all its CPU build is locked for, with PyTorch's published
    digests of the CPU wheels that are not here added. On other systems pip takes torch from
    pyproject.toml's pin and the default index, whose macOS build is the CPU one."""
    entry = re.search(rf"^torch=={re.escape(version)}\+cpu \\\n((?:    --hash=sha256:\w+(?: \\)?\n)+)", text, re.M)
    if entry is None:
        raise LookupError(f"no torch=={version}+cpu entry with hashes in the lock")
    known = set(re.findall(r"sha256:(\w+)", entry.group(1)))
    digests = sorted(known | set(TORCH_CPU_HASHES.get(version, [])))
    hashes = " \\\n".join(f"    --hash=sha256:{digest}" for digest in digests) + "\n"
    head = f"torch=={version}+cpu ; sys_platform == 'linux' and platform_machine == 'x86_64' \\\n"
    return text[: entry.start()] + head + hashes + text[entry.end(1) :]


def lock(answers: dict[str, str], uv: str) -> Path:
    with tempfile.TemporaryDirectory() as workdir:
        answers_here = {**answers, "python_version": OLDEST_PYTHON}
        project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=workdir, extra_context=answers_here))
        environ = dict(os.environ)
        if index := torch_cpu_index(answers, project):
            environ["UV_INDEX"] = index
        subprocess.run(["make", "-s", "-C", str(project), "lock", f"UV={uv}"], env=environ, check=True)
        text = (project / "requirements.txt").read_text()
        if (answers["framework"], answers["processor"]) == ("pytorch", "cpu"):
            text = with_published_torch_hashes(text, pinned(project, "torch"))
        target = LOCKS / folder_name(answers) / "requirements.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="key=value,... that a set must match")
    parser.add_argument("--uv", default=shutil.which("uv") or str(Path(sys.executable).with_name("uv")))
    args = parser.parse_args(argv)
    wanted = [dict(part.split("=", 1) for part in only.split(",")) for only in args.only]
    for answers in answer_sets():
        if wanted and not any(all(answers.get(k) == v for k, v in want.items()) for want in wanted):
            continue
        print(f"{folder_name(answers)}: {lock(answers, args.uv).relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
