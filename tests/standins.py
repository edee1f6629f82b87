"""Stand-in base images, for when the real one named by a Dockerfile's FROM cannot be pulled.

Each stand-in is chosen by the FROM name it can replace, is built by the tests themselves, is
tagged with exactly that name (so the rendered Dockerfile builds unchanged) and says in its labels
that it is a stand-in and what it carries. Root file systems are cached between runs under
BYOC_TEST_CACHE (default ~/.cache/byoc-template), keyed by a hash of everything that goes into them.

Two kinds: a root file system made from scratch (debootstrap), or an image built FROM another
stand-in by a Containerfile the tests own (AWS's prebuilt framework images: Python, the framework,
the real SageMaker toolkits). To cover a new base, add a StandIn to STAND_INS.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
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
    make_rootfs: Callable[[StandIn, Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    recipe: tuple[str, ...] = ()  # everything that shapes the root file system, for the cache key
    # Or: built FROM this (stand-in) image with these Containerfile instructions.
    parent: str | None = None
    steps: tuple[str, ...] = ()
    # Build arguments its Containerfile takes; their values are the caller's (not part of the cache key).
    build_args: tuple[str, ...] = ()
    # Made from a source outside the registries these machines are promised (Ubuntu's archive): when it
    # cannot be made, its images are reported as not built, with the error, instead of failing the run.
    optional: bool = False

    def key(self) -> str:
        digest = hashlib.sha256("\n".join([self.name, *self.recipe, *self.steps]).encode())
        if HOST_CA_BUNDLE.exists():
            digest.update(HOST_CA_BUNDLE.read_bytes())
        parent = stand_in_for(self.parent) if self.parent else None
        if parent is not None:
            digest.update(parent.key().encode())
        return digest.hexdigest()[:16]

    def labels(self) -> dict[str, str]:
        return {LABEL: "true", f"{LABEL}.name": self.name, f"{LABEL}.carries": self.carries, f"{LABEL}.key": self.key()}


DEBIAN_PYTHON_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
# Trimmed like the official slim images: no package cache, docs, man pages or translations.
TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")


def debootstrap_python(
    stand_in: StandIn,
    tarball: Path,
    suite: str = "bookworm",
    script: str | None = None,
    options: tuple[str, ...] = (),
) -> None:
    """A minbase root file system with the distribution's Python 3, set up the way the official python image is used.

    Debian bookworm by default; `script` names debootstrap's script for another family (Ubuntu), whose
    own default mirror is then used.
    """
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: apt-get install -y debootstrap (needed for stand-in bases)")
    root = tarball.with_suffix(".root")
    shutil.rmtree(root, ignore_errors=True)
    command = ["debootstrap", "--variant=minbase", *options, f"--include={','.join(DEBIAN_PYTHON_PACKAGES)}", suite]
    command += [str(root), *(["", f"/usr/share/debootstrap/scripts/{script}"] if script else [])]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
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


UBUNTU_KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")


def debootstrap_ubuntu_python(stand_in: StandIn, tarball: Path) -> None:
    """Ubuntu 24.04 (noble, main and universe) with Ubuntu's Python 3.12, through debootstrap's Ubuntu script.

    Debian's apt offers no Ubuntu keyring: without one installed, the packages are fetched unverified
    (this is a test-only base; its label says so).
    """
    options = ["--components=main,universe"]
    options += [f"--keyring={UBUNTU_KEYRING}"] if UBUNTU_KEYRING.exists() else ["--no-check-gpg"]
    debootstrap_python(stand_in, tarball, suite="noble", script="gutsy", options=tuple(options))


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
    # Python 3.12 from neither Debian bookworm (3.11) nor trixie (3.13): Ubuntu 24.04 carries it.
    StandIn(
        name="ubuntu-noble-python3.12",
        replaces=re.compile(r"^(docker\.io/)?(library/)?python:3\.12(\.\d+)?(-slim)?(-bookworm)?$"),
        carries=(
            "Ubuntu 24.04 (noble) minbase with Ubuntu's Python 3.12, pip and venv (not Debian bookworm, not the "
            "official python image)"
            + ("" if UBUNTU_KEYRING.exists() else "; packages fetched without signature checks (no Ubuntu keyring)")
        ),
        make_rootfs=debootstrap_ubuntu_python,
        optional=True,
        env={"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **CA_ENV},
        recipe=("debootstrap minbase noble main,universe v1", *DEBIAN_PYTHON_PACKAGES, *TRIMMED),
    ),
]


TEMPLATE_DIR = Path(__file__).resolve().parents[1]


def pinned(name: str) -> str:
    """`name==version` as tests/requirements.txt pins it: what the project's own tests run against."""
    for line in (TEMPLATE_DIR / "tests" / "requirements.txt").read_text().splitlines():
        if re.match(rf"^{re.escape(name)}==", line.strip(), re.I):
            return line.strip()
    raise LookupError(f"tests/requirements.txt pins no {name}")


# AWS's prebuilt images keep their Python and packages system-wide, with the toolkit's console scripts
# (`train`) on PATH and no ENTRYPOINT: SageMaker's `docker run IMAGE train` runs the toolkit. Its C
# extension builds from source here, as in AWS's images, which keep their compilers.
PREBUILT_STAND_IN_STEPS = (
    "RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev python3-dev"
    " && rm -rf /var/lib/apt/lists/*",
)
AWS_REGISTRY = r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
# What the prebuilt stand-ins are built FROM, and so the Python their packages are for.
PREBUILT_PARENT = "python:3.11.14-slim-bookworm"
PREBUILT_PYTHON = "3.11"
# The PyTorch stand-in's torch: the version the project's own tests run against.
PREBUILT_TORCH = pinned("torch").removeprefix("torch==")


def prebuilt_stand_in(
    name: str,
    image: str,
    framework: str,
    packages: tuple[str, ...],
    build_args: tuple[str, ...] = (),
    cuda: str = "no CUDA",
) -> StandIn:
    """build_args: the build arguments its Containerfile takes (PIP_EXTRA_INDEX_URL for torch's CPU wheel)."""
    toolkits = (pinned("sagemaker-training"), pinned("sagemaker-inference"))
    install = " ".join(f"'{package}'" for package in (*packages, *toolkits))
    arguments = tuple(f'ARG {argument}=""' for argument in build_args)
    return StandIn(
        name=name,
        replaces=re.compile(AWS_REGISTRY + re.escape(image) + "$"),
        carries=(
            f"stand-in for AWS's {image}: Python {PREBUILT_PYTHON} from {PREBUILT_PARENT} or its stand-in "
            f"(not AWS's Python), {framework} "
            f"({', '.join(packages)}), the real SageMaker toolkits ({', '.join(toolkits)}), "
            f"`train` on PATH; no model server, {cuda}"
        ),
        parent=PREBUILT_PARENT,
        steps=(*PREBUILT_STAND_IN_STEPS, *arguments, f"RUN pip install --no-cache-dir {install}", 'CMD ["/bin/bash"]'),
        build_args=build_args,
    )


STAND_INS += [
    prebuilt_stand_in(
        "aws-sklearn-1.9-cpu-stand-in",
        "sagemaker-scikit-learn:1.9-0-cpu-py3",
        "scikit-learn",
        (pinned("numpy"), pinned("scikit-learn")),
    ),
    prebuilt_stand_in(
        "aws-tensorflow-2.21-cpu-training-stand-in",
        "tensorflow-training:2.21.0-cpu-py312",
        "TensorFlow",
        (pinned("tensorflow-cpu"), pinned("numpy"), pinned("scikit-learn")),
    ),
    # torch at the project's pin (not AWS's 2.10). Its CPU build by name, from the index PIP_EXTRA_INDEX_URL
    # gives (tests/wheel_index.py): without one the build fails, rather than caching a CUDA build under this key.
    prebuilt_stand_in(
        "aws-pytorch-cpu-training-stand-in",
        "pytorch-training:2.10.0-cpu-py313",
        "PyTorch",
        (f"torch=={PREBUILT_TORCH}+cpu", pinned("numpy"), pinned("scikit-learn")),
        build_args=("PIP_EXTRA_INDEX_URL",),
    ),
    # The GPU images' stand-ins carry the framework's CUDA build from the default index (CUDA in its wheels,
    # as the from-scratch GPU images have it) and no GPU driver: training inside runs on the CPU.
    prebuilt_stand_in(
        "aws-pytorch-gpu-training-stand-in",
        "pytorch-training:2.10.0-gpu-py313",
        "PyTorch",
        (f"torch=={PREBUILT_TORCH}", pinned("numpy"), pinned("scikit-learn")),
        cuda="CUDA only as torch's wheels bring it, no GPU driver",
    ),
    prebuilt_stand_in(
        "aws-tensorflow-2.21-gpu-training-stand-in",
        "tensorflow-training:2.21.0-gpu-py312",
        "TensorFlow",
        (
            pinned("tensorflow-cpu").replace("tensorflow-cpu", "tensorflow[and-cuda]"),
            pinned("numpy"),
            pinned("scikit-learn"),
        ),
        cuda="CUDA only as tensorflow[and-cuda]'s wheels bring it, no GPU driver",
    ),
]


# Bases with no stand-in, and why: their images are reported as not built with this reason.
WITHOUT_STAND_IN: list[tuple[re.Pattern[str], str]] = []


def stand_in_for(image: str) -> StandIn | None:
    return next((stand_in for stand_in in STAND_INS if stand_in.replaces.match(image)), None)


@dataclass(frozen=True)
class Base:
    image: str
    stand_in: StandIn | None
    made_seconds: float = 0.0  # what making the stand-in took in this run (0: it was there already)
    pinned: str = ""  # the FROM reference with its digest, which the stand-in (tagged without it) replaces

    def overrides(self) -> dict[str, str]:
        """What a build must be told to use in place of a digest-pinned FROM (its --build-context)."""
        return {self.pinned: qualified(self.image)} if self.pinned else {}

    def describe(self) -> str:
        if self.stand_in is None:
            return self.image
        made = f", made in {self.made_seconds:.0f} s" if self.made_seconds else ""
        return f"stand-in {self.stand_in.name} for {self.image}{made}"


class NoBase(Exception):
    """The base image can be neither pulled nor stood in for; the message says which."""


def ensure_base(engine: Engine, image: str, build_args: Mapping[str, str] | None = None) -> Base:
    """The real base if the engine has it or can pull it, else a stand-in tagged with its name.

    build_args: values for the build arguments a derived stand-in takes (StandIn.build_args).
    A reference pinned by digest (`name:tag@sha256:...`) is used as it is where the engine has or can pull
    it; a stand-in cannot have that digest, so it is tagged `name:tag` and the build told to use it instead.
    """
    if "@" in image:
        if engine.exists(image) or engine.pull(image):
            return Base(image, None)
        base = ensure_base(engine, image.split("@", 1)[0], build_args)
        if base.stand_in is None:
            raise NoBase(f"{image}: the engine has {base.image}, but not by this digest")
        return dataclasses.replace(base, pinned=image)
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
        why = next((reason for pattern, reason in WITHOUT_STAND_IN if pattern.match(image)), "")
        raise NoBase(
            f"{image} cannot be pulled here and no stand-in replaces it (tests/standins.py: STAND_INS)"
            + (f": {why}" if why else "")
        )
    started = time.monotonic()
    if stand_in.parent is not None:
        build_derived(engine, stand_in, image, build_args or {})
        return Base(image, stand_in, time.monotonic() - started)
    assert stand_in.make_rootfs is not None, f"{stand_in.name} has neither a root file system nor a parent"
    tarball = cache_dir() / f"{stand_in.name}-{stand_in.key()}.tar"
    with locked(tarball):
        if not tarball.exists():
            partial = tarball.with_suffix(".partial")
            try:
                stand_in.make_rootfs(stand_in, partial)
            except RuntimeError as error:
                if not stand_in.optional:
                    raise
                raise NoBase(f"the stand-in {stand_in.name} for {image} could not be made here: {error}") from error
            partial.rename(tarball)
        engine.remove_image(image)
        engine.import_rootfs(tarball, qualified(image), stand_in.env, stand_in.labels())
    return Base(image, stand_in, time.monotonic() - started)


def qualified(image: str) -> str:
    """The full name a short Docker Hub name stands for (what FROM resolves to)."""
    if "/" not in image:
        return f"docker.io/library/{image}"
    first = image.split("/", 1)[0]
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image


def build_derived(engine: Engine, stand_in: StandIn, image: str, build_args: Mapping[str, str]) -> None:
    """FROM the parent (itself a stand-in where it cannot be pulled), then the stand-in's own steps."""
    assert stand_in.parent is not None
    missing = [name for name in stand_in.build_args if not build_args.get(name)]
    if missing:
        raise ValueError(f"the stand-in {stand_in.name} needs the build arguments {missing}")
    ensure_base(engine, stand_in.parent)
    context = cache_dir() / f"{stand_in.name}-{stand_in.key()}.context"
    with locked(context):
        if engine.exists(image) and engine.inspect(image).labels.get(f"{LABEL}.key") == stand_in.key():
            return  # another worker built it meanwhile
        engine.remove_image(image)
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir()
        labels = [f"LABEL {name}={json.dumps(value)}" for name, value in stand_in.labels().items()]
        (context / "Dockerfile").write_text("\n".join([f"FROM {stand_in.parent}", *stand_in.steps, *labels, ""]))
        try:
            arguments = {name: build_args[name] for name in stand_in.build_args}
            engine.build(context, qualified(image), timeout=1800, build_args=arguments)
        finally:
            shutil.rmtree(context, ignore_errors=True)
