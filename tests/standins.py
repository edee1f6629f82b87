"""Stand-in base images, for when the real one named by a Dockerfile's FROM cannot be pulled.

Each stand-in is chosen by the FROM name it can replace, is built by the tests themselves, is
tagged with exactly that name (so the rendered Dockerfile builds unchanged) and says in its labels
that it is a stand-in and what it carries. Root file systems are cached between runs under
BYOC_TEST_CACHE (default ~/.cache/byoc-template), keyed by a hash of everything that goes into them.

To cover a new base (a CUDA image, AWS's prebuilt framework images), add a StandIn to STAND_INS.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .containers import Engine

LABEL = "org.byoc-template.stand-in"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "byoc-template"
    path = Path(os.environ.get("BYOC_TEST_CACHE") or default) / "stand-ins"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One maker per stand-in at a time, across pytest-xdist workers and parallel runs."""
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class StandIn:
    name: str
    replaces: re.Pattern[str]
    carries: str
    make_rootfs: Callable[[StandIn, Path], None]
    env: dict[str, str] = field(default_factory=dict)
    recipe: tuple[str, ...] = ()  # everything that shapes the root file system, for the cache key

    def key(self) -> str:
        digest = hashlib.sha256("\n".join([self.name, *self.recipe]).encode())
        if HOST_CA_BUNDLE.exists():
            digest.update(HOST_CA_BUNDLE.read_bytes())
        return digest.hexdigest()[:16]

    def labels(self) -> dict[str, str]:
        return {LABEL: "true", f"{LABEL}.name": self.name, f"{LABEL}.carries": self.carries, f"{LABEL}.key": self.key()}


DEBIAN_PYTHON_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
# Trimmed like the official slim images: no package cache, docs, man pages or translations.
TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")


def debootstrap_python(stand_in: StandIn, tarball: Path) -> None:
    """Debian bookworm (minbase) with its Python 3.11, set up the way the official python image is used."""
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: apt-get install -y debootstrap (needed for stand-in bases)")
    root = tarball.with_suffix(".root")
    shutil.rmtree(root, ignore_errors=True)
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PYTHON_PACKAGES)}", "bookworm"]
    finished = subprocess.run([*command, str(root)], capture_output=True, text=True, timeout=1200, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"debootstrap failed:\n{finished.stdout[-3000:]}\n{finished.stderr[-3000:]}")
    for folder in TRIMMED:
        for entry in (root / folder).glob("*"):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    # The official image's pip installs system-wide; Debian's marks its Python as externally managed.
    for marker in (root / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        (root / "usr/local/bin" / name).symlink_to(target)
    if HOST_CA_BUNDLE.exists():
        # HTTPS from inside a build may pass a proxy that this machine trusts; the stand-in trusts what it does.
        shutil.copyfile(HOST_CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
    with tarfile.open(tarball, "w") as archive:
        archive.add(root, arcname=".", filter=_without_device_files)
    shutil.rmtree(root)


def _without_device_files(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Engines provide /dev, /proc and /sys at run time; their contents do not belong in an image."""
    return None if re.match(r"^\./(dev|proc|sys)/.", member.name) else member


CA_ENV = {name: str(HOST_CA_BUNDLE) for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}

STAND_INS = [
    StandIn(
        name="debian-bookworm-python3.11",
        replaces=re.compile(r"^(docker\.io/)?(library/)?python:3\.11(\.\d+)?(-slim)?(-bookworm)?$"),
        carries="Debian bookworm minbase with Debian's Python 3.11, pip and venv (not the official python image)",
        make_rootfs=debootstrap_python,
        env={"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **CA_ENV},
        recipe=("debootstrap minbase bookworm v1", *DEBIAN_PYTHON_PACKAGES, *TRIMMED),
    ),
]


def stand_in_for(image: str) -> StandIn | None:
    return next((stand_in for stand_in in STAND_INS if stand_in.replaces.match(image)), None)


@dataclass(frozen=True)
class Base:
    image: str
    stand_in: StandIn | None

    def describe(self) -> str:
        return f"stand-in {self.stand_in.name} for {self.image}" if self.stand_in else self.image


class NoBase(Exception):
    """The base image can be neither pulled nor stood in for; the message says which."""


def ensure_base(engine: Engine, image: str) -> Base:
    """The real base if the engine has it or can pull it, else a stand-in tagged with its name."""
    stand_in = stand_in_for(image)
    if engine.exists(image):
        labels = engine.inspect(image).labels
        if labels.get(LABEL) != "true":
            return Base(image, None)
        if stand_in is not None and labels.get(f"{LABEL}.key") == stand_in.key():
            return Base(image, stand_in)
    elif engine.pull(image):
        return Base(image, None)
    if stand_in is None:
        raise NoBase(f"{image} cannot be pulled here and no stand-in replaces it (tests/standins.py: STAND_INS)")
    tarball = cache_dir() / f"{stand_in.name}-{stand_in.key()}.tar"
    with locked(tarball):
        if not tarball.exists():
            partial = tarball.with_suffix(".partial")
            stand_in.make_rootfs(stand_in, partial)
            partial.rename(tarball)
        engine.remove_image(image)
        engine.import_rootfs(tarball, qualified(image), stand_in.env, stand_in.labels())
    return Base(image, stand_in)


def qualified(image: str) -> str:
    """The full name a short Docker Hub name stands for (what FROM resolves to)."""
    if "/" not in image:
        return f"docker.io/library/{image}"
    first = image.split("/", 1)[0]
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image
