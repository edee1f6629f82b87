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
from dataclasses import dataclass
from pathlib import Path

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)\s*(?:;.*)?$")
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;.*?)?\s*\\?$")


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(pyproject: Path) -> dict[str, str]:
    found = {}
    for dependency in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        match = PIN.match(dependency)
        if match is None:
            raise SystemExit(f"{pyproject}: {dependency!r} is not pinned as name==version; the lock needs exact pins")
        found[normalised(match.group(1))] = match.group(2)
    return found


@dataclass
class Entry:
    name: str
    version: str
    hashes: int = 0
    direct: bool = False  # pyproject.toml asks for it


def entries(lock: Path) -> list[Entry]:
    """Each locked package; one name may have several entries, one per Python version or platform."""
    found: list[Entry] = []
    for line in lock.read_text().splitlines():
        if match := ENTRY.match(line):
            found.append(Entry(normalised(match.group(1)), match.group(2)))
        elif found and line.strip().startswith("--hash="):
            found[-1].hashes += 1
        elif found and line.lstrip().startswith("#") and "(pyproject.toml)" in line:
            found[-1].direct = True
    return found


def meets(version: str, pin: str) -> bool:
    """`2.13.0+cpu` meets `==2.13.0` (PEP 440: a local label is ignored unless the pin names one)."""
    return version == pin or ("+" not in pin and version.split("+", 1)[0] == pin)


def problems(project: Path) -> list[str]:
    lock = project / "requirements.txt"
    if not lock.exists():
        return ["there is no requirements.txt"]
    wanted = pins(project / "pyproject.toml")
    locked = entries(lock)
    found = []
    for name, version in sorted(wanted.items()):
        versions = sorted({entry.version for entry in locked if entry.name == name})
        if not versions:
            found.append(f"{name}=={version} is not in the lock")
        elif not any(entry.direct for entry in locked if entry.name == name):
            found.append(f"{name}=={version} is in the lock only as another package's dependency, not pyproject.toml's")
        elif not all(meets(locked_version, version) for locked_version in versions):
            found.append(f"pyproject.toml pins {name}=={version}, the lock has {', '.join(versions)}")
    for entry in locked:
        if entry.direct and entry.name not in wanted:
            found.append(f"the lock still has {entry.name}=={entry.version}, which pyproject.toml no longer asks for")
    found += [f"{entry.name}=={entry.version} has no hash" for entry in locked if not entry.hashes]
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
