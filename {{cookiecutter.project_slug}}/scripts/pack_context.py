"""Write the Docker build context as a zip archive to stdout, for scripts/build_remote.sh to upload.

It holds what `docker build .` would send: every file .dockerignore lets in, by Docker's rules (patterns
match paths from the project root, `*` and `?` within one folder, `**` across folders; a pattern that
matches a folder matches everything in it; `!` lets a path back in; the last matching pattern wins),
plus the Dockerfile, .dockerignore and buildspec.yml, which CodeBuild runs. So nothing .dockerignore
keeps out of an image (.env, credentials, ./local, virtual environments) leaves this machine either.
The archive is the same bytes for the same files. Standard library only.

    python3 scripts/pack_context.py [PROJECT_DIR] > context.zip
"""

from __future__ import annotations

import io
import posixpath
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ALWAYS = ("Dockerfile", ".dockerignore", "buildspec.yml")
GLOB_CHARACTERS = "*?[\\"


@dataclass(frozen=True)
class Pattern:
    text: str
    regex: re.Pattern[str]
    exclusion: bool  # a `!` pattern, which lets paths back in

    def matches(self, path: str) -> bool:
        """The path, or one of the folders above it, matches."""
        parts = path.split("/")
        return any(self.regex.fullmatch("/".join(parts[:end])) for end in range(len(parts), 0, -1))


def translate(pattern: str) -> str:
    """Docker's pattern syntax (Go's filepath.Match with `**`) as a regular expression."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            out.append(re.escape(pattern[index]))
        elif char == "[" and (end := pattern.find("]", index + 2)) != -1:
            body = pattern[index + 1 : end]
            if body[0] in "!^":
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def read_patterns(dockerignore: Path) -> list[Pattern]:
    if not dockerignore.exists():
        return []
    patterns = []
    for line in dockerignore.read_text().splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        exclusion = text.startswith("!")
        cleaned = posixpath.normpath(text.removeprefix("!").strip()).lstrip("/")
        if cleaned in ("", "."):
            continue
        patterns.append(Pattern(text, re.compile(translate(cleaned)), exclusion))
    return patterns


def ignored(path: str, patterns: list[Pattern]) -> bool:
    matched = False
    for pattern in patterns:
        if pattern.matches(path):
            matched = not pattern.exclusion
    return matched


def may_hold_included(folder: str, patterns: list[Pattern]) -> bool:
    """Whether some `!` pattern could let a path inside an ignored folder back in (else skip its walk)."""
    for pattern in patterns:
        if pattern.exclusion:
            literal = re.split(r"[*?\[\\]", posixpath.normpath(pattern.text[1:].strip()).lstrip("/"))[0]
            if literal.startswith(folder + "/") or (folder + "/").startswith(literal):
                return True
    return False


def context_files(root: Path) -> list[str]:
    patterns = read_patterns(root / ".dockerignore")
    found = {name for name in ALWAYS if (root / name).is_file()}
    pending = [root]
    while pending:
        folder = pending.pop()
        for entry in sorted(folder.iterdir()):
            relative = entry.relative_to(root).as_posix()
            if entry.is_dir() and not entry.is_symlink():  # a linked folder could loop
                if not ignored(relative, patterns) or may_hold_included(relative, patterns):
                    pending.append(entry)
            elif entry.is_file() and not ignored(relative, patterns):
                found.add(relative)
    return sorted(found)


def archive(root: Path, names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in names:
            path = root / name
            # A fixed date and the file's own mode: the same files give the same archive.
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, path.read_bytes())
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else ".").resolve()
    if not (root / "Dockerfile").is_file():
        print(f"pack_context: no Dockerfile in {root}", file=sys.stderr)
        return 1
    names = context_files(root)
    data = archive(root, names)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    print(f"==> Packed {len(names)} files ({len(data) / 1024:.0f} KiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
