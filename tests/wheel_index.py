"""PyTorch's CPU wheel behind a package index on 127.0.0.1, for the images' PIP_EXTRA_INDEX_URL build argument.

torch on the default index is the CUDA build: several GB in an image and minutes to install. The
rendered PyTorch Dockerfile takes PyTorch's CPU wheel index as the PIP_EXTRA_INDEX_URL build
argument, and so do the tests: `BYOC_TORCH_CPU_INDEX` names that index where it can be reached;
otherwise the tests fetch the CPU build (`torch==<pin>+cpu`) with the host's own pip settings and
serve it from a PEP 503 index of their own. pip inside the build then prefers `<pin>+cpu` to the
default index's `<pin>`, as it does with PyTorch's index, and the pins in pyproject.toml stay as they are.
"""

from __future__ import annotations

import hashlib
import html
import os
import subprocess
import sys
import threading
import urllib.parse
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

INDEX_VARIABLE = "BYOC_TORCH_CPU_INDEX"


class NoCpuWheel(Exception):
    """No CPU build of torch can be had here; the message says what was tried."""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class CpuWheelIndex:
    """A package index of CPU torch wheels, fetched into `wheels` on first use and served from `root`."""

    def __init__(self, root: Path, wheels: Path) -> None:
        self.root = root
        self.wheels = wheels
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url_for(self, version: str, python_version: str) -> str:
        """An index URL from which pip can install torch==version as a CPU build for python_version."""
        if os.environ.get(INDEX_VARIABLE):
            return os.environ[INDEX_VARIABLE]
        with self._lock:
            wheel = self._fetch(version, python_version)
            self._publish(wheel)
            if self._server is None:
                handler = partial(_QuietHandler, directory=str(self.root))
                self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
                threading.Thread(target=self._server.serve_forever, daemon=True).start()
            return f"http://127.0.0.1:{self._server.server_address[1]}/simple/"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _fetch(self, version: str, python_version: str) -> Path:
        tag = "cp" + python_version.replace(".", "")
        found = sorted(self.wheels.glob(f"torch-{version}+cpu-{tag}-*.whl"))
        if found:
            return found[-1]
        self.wheels.mkdir(parents=True, exist_ok=True)
        requirement = f"torch=={version}+cpu"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--python-version", python_version, "--implementation", "cp", "--dest", str(self.wheels)]
        finished = subprocess.run([*command, requirement], capture_output=True, text=True, timeout=1800, check=False)
        found = sorted(self.wheels.glob(f"torch-{version}+cpu-{tag}-*.whl"))
        if finished.returncode != 0 or not found:
            raise NoCpuWheel(
                f"pip cannot get {requirement} for Python {python_version} with this machine's settings "
                f"(set {INDEX_VARIABLE} to PyTorch's CPU wheel index): {finished.stderr.strip()[-800:]}"
            )
        return found[-1]

    def _publish(self, wheel: Path) -> None:
        """simple/torch/index.html lists every wheel fetched so far, with its sha256 for pip to check."""
        files = self.root / "files"
        files.mkdir(parents=True, exist_ok=True)
        served = files / wheel.name
        if served.exists():
            return
        served.symlink_to(wheel)
        links = []
        for entry in sorted(files.glob("torch-*.whl")):
            digest = hashlib.sha256(entry.read_bytes()).hexdigest()
            href = f"/files/{urllib.parse.quote(entry.name)}#sha256={digest}"
            links.append(f'<a href="{html.escape(href)}">{html.escape(entry.name)}</a><br>')
        page = self.root / "simple" / "torch" / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
