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
import platform
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .standins import locked

INDEX_VARIABLE = "BYOC_TORCH_CPU_INDEX"


class NoCpuWheel(Exception):
    """No CPU build of torch can be had here; the message says what was tried."""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class CpuWheelIndex:
    """A package index of CPU torch wheels: fetched into `wheels` (a cache shared by runs), served from `root`."""

    def __init__(self, root: Path, wheels: Path) -> None:
        self.root = root
        self.wheels = wheels
        self._server: ThreadingHTTPServer | None = None

    def url_for(self, version: str, python_version: str) -> str:
        """An index URL from which pip can install torch==version as a CPU build for python_version."""
        if os.environ.get(INDEX_VARIABLE):
            return os.environ[INDEX_VARIABLE]
        self._publish(self._fetch(version, python_version))
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
        pattern = f"torch-{version}+cpu-{tag}-{tag}-*_{platform.machine()}.whl"
        self.wheels.mkdir(parents=True, exist_ok=True)
        # The cache is shared by parallel runs and pytest-xdist workers: one fetch at a time, moved in whole.
        with locked(self.wheels / "torch"):
            if found := sorted(self.wheels.glob(pattern)):
                return found[-1]
            requirement = f"torch=={version}+cpu"
            with tempfile.TemporaryDirectory(dir=self.wheels) as download:
                command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
                command += ["--python-version", python_version, "--implementation", "cp", "--dest", download]
                finished = subprocess.run(
                    [*command, requirement], capture_output=True, text=True, timeout=1800, check=False
                )
                fetched = sorted(Path(download).glob(pattern))
                if finished.returncode != 0 or not fetched:
                    errors = [line for line in finished.stderr.splitlines() if line.startswith("ERROR")]
                    raise NoCpuWheel(
                        f"pip cannot get {requirement} for Python {python_version} on {platform.machine()} with this "
                        f"machine's settings (set {INDEX_VARIABLE} to PyTorch's CPU wheel index): "
                        + (" ".join(errors) or finished.stderr.strip())[-800:]
                    )
                wheel = self.wheels / fetched[-1].name
                os.replace(fetched[-1], wheel)
            return wheel

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
            with entry.open("rb") as stream:
                digest = hashlib.file_digest(stream, "sha256").hexdigest()
            href = f"/files/{urllib.parse.quote(entry.name)}#sha256={digest}"
            links.append(f'<a href="{html.escape(href)}">{html.escape(entry.name)}</a><br>')
        page = self.root / "simple" / "torch" / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        partial_page = page.with_suffix(".partial")
        partial_page.write_text("<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
        os.replace(partial_page, page)  # a build may be reading the page while another wheel is added
