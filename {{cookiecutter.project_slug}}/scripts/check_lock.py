"""Refuse a requirements.txt that no longer matches pyproject.toml's dependencies, before a build uses it.

The lock is `make lock`'s output: every dependency with its hashes, each direct one annotated
`# via ... (pyproject.toml)`. It matches when those direct entries are exactly pyproject.toml's pins
and every entry carries a hash. Standard library only: `make build` runs it with the host's python3.

    python3 scripts/check_lock.py [PROJECT_DIR]
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)\s*(?:;.*)?$")
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;.*?)?\s*\\?$")


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """`2.13.0+cpu` meets `==2.13.0` (PEP 440: a local label is ignored unless the pin names one)."""
    return version.split("+", 1)[0]


def pins(pyproject: Path) -> dict[str, str]:
    found = {}
    for dependency in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        match = PIN.match(dependency)
        if match is None:
            raise SystemExit(f"{pyproject}: {dependency!r} is not pinned as name==version; the lock needs exact pins")
        found[normalised(match.group(1))] = match.group(2)
    return found


def entries(lock: Path) -> dict[str, tuple[str, int, bool]]:
    """Each locked package: its version, how many hashes it has, whether pyproject.toml asks for it."""
    found: dict[str, tuple[str, int, bool]] = {}
    current = None
    for line in lock.read_text().splitlines():
        if match := ENTRY.match(line):
            current = normalised(match.group(1))
            found[current] = (match.group(2), 0, False)
        elif current and line.strip().startswith("--hash="):
            version, hashes, direct = found[current]
            found[current] = (version, hashes + 1, direct)
        elif current and line.lstrip().startswith("#") and "(pyproject.toml)" in line:
            version, hashes, _ = found[current]
            found[current] = (version, hashes, True)
    return found


def problems(project: Path) -> list[str]:
    lock = project / "requirements.txt"
    if not lock.exists():
        return ["there is no requirements.txt"]
    wanted = pins(project / "pyproject.toml")
    locked = entries(lock)
    found = []
    for name, version in sorted(wanted.items()):
        if name not in locked:
            found.append(f"{name}=={version} is not in the lock")
        elif version != locked[name][0] and ("+" in version or public(locked[name][0]) != version):
            found.append(f"pyproject.toml pins {name}=={version}, the lock has {locked[name][0]}")
    for name, (version, _, direct) in sorted(locked.items()):
        if direct and name not in wanted:
            found.append(f"the lock still has {name}=={version}, which pyproject.toml no longer asks for")
    found += [f"{name}=={version} has no hash" for name, (version, hashes, _) in sorted(locked.items()) if not hashes]
    return found


def main(argv: list[str]) -> int:
    project = Path(argv[1] if len(argv) > 1 else ".")
    found = problems(project)
    if found:
        print(f"requirements.txt does not match pyproject.toml: {'; '.join(found)}. Run `make lock`.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
