"""A small container-engine layer for the image tests: `docker` when its engine answers, else buildah.

Both run the rendered Dockerfile unchanged and start containers the way SageMaker does
(`docker run IMAGE train|serve` with a SageMaker tree at /opt/ml). Buildah is driven the way it
works on machines without a Docker daemon: overlay (or vfs) storage, chroot isolation, the host's network
(see the template README, "Image tests").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ML_DIR = "/opt/ml"
# Where a container may write: the SageMaker tree and scratch space. Everything else must stay as built.
WRITABLE_ROOTS = (ML_DIR, "/tmp")


class EngineError(RuntimeError):
    """An engine command failed; the message holds its output."""


@dataclass(frozen=True)
class ImageInfo:
    user: str
    entrypoint: list[str]
    env: list[str]  # NAME=value
    labels: dict[str, str]
    size: int  # bytes, as the engine's own `images` listing counts them


@dataclass(frozen=True)
class RunOptions:
    mount: Path  # the SageMaker tree, mounted at /opt/ml
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None  # published on 127.0.0.1 under the same number
    network: bool = True  # False: no network at all, like a training job with network isolation
    entrypoint: Sequence[str] | None = None  # None: the image's own
    # Mount only these folders of `mount` under /opt/ml, as SageMaker training does (input, model,
    # output), so what the image keeps in /opt/ml (code/, in extend-prebuilt images) stays visible.
    subfolders: Sequence[str] = ()
    # The container's host name, resolving to the loopback address, as the job's host names resolve on SageMaker.
    hostname: str | None = None

    def volumes(self) -> list[tuple[Path, str]]:
        if not self.subfolders:
            return [(self.mount, ML_DIR)]
        return [(self.mount / folder, f"{ML_DIR}/{folder}") for folder in self.subfolders]


@dataclass
class Container:
    """One created container; `changes()` lists paths it added, changed or deleted."""

    engine: Engine
    handle: str
    command: list[str]
    process: subprocess.Popen[str] | None = field(default=None, repr=False)


# The OCI runtime seals a copy of itself in a memfd before it starts the container's process; now and then the
# kernel refuses the seal (EBUSY) and the runtime gives up with this message, before anything of the image has
# run. That failure alone is tried once more (seen once in a CI run's several hundred container starts).
RUNTIME_START_GLITCH = "sealing memfd copy: Device or resource busy"


def _check(command: Sequence[str], timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    finished = subprocess.run(
        list(command), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL, **kwargs
    )
    if finished.returncode != 0:
        raise EngineError(f"`{' '.join(command)}` exited {finished.returncode}:\n{finished.stdout}\n{finished.stderr}")
    return finished


def _build_arg_options(build_args: Mapping[str, str] | None) -> list[str]:
    return [option for name, value in (build_args or {}).items() for option in ("--build-arg", f"{name}={value}")]


def outside_writable_roots(paths: set[str]) -> list[str]:
    """Paths outside /opt/ml and /tmp, ignoring the parent folders a mount point needs."""
    parents = {str(Path(root).parents[i]) for root in WRITABLE_ROOTS for i in range(len(Path(root).parents))}
    return sorted(
        path
        for path in paths
        if path not in parents and not any(path == root or path.startswith(root + "/") for root in WRITABLE_ROOTS)
    )


class Engine(ABC):
    name: str

    @abstractmethod
    def build(
        self,
        context: Path,
        tag: str,
        timeout: float,
        build_args: Mapping[str, str] | None = None,
        base_images: Mapping[str, str] | None = None,
    ) -> str:
        """Build context/Dockerfile as tag without pulling; returns the build log.

        On the network of the host the engine runs on (the local one here), so a build argument may
        point pip at an index the tests serve on 127.0.0.1. base_images: a local image to use for a
        FROM reference (one pinned by a digest no stand-in can have), as a named build context.
        """

    @abstractmethod
    def cached_steps(self, log: str) -> list[str]:
        """The Dockerfile instructions a build's log reports as taken from the layer cache."""

    @abstractmethod
    def exists(self, image: str) -> bool: ...

    @abstractmethod
    def pull(self, image: str) -> bool: ...

    @abstractmethod
    def inspect(self, image: str) -> ImageInfo: ...

    @abstractmethod
    def remove_image(self, image: str) -> None: ...

    @abstractmethod
    def release(self, image: str) -> None:
        """Drop whatever the engine keeps around to run image (the image itself stays)."""

    @abstractmethod
    def remove_leftovers(self, stale: Callable[[str], bool]) -> None:
        """Containers of, and images whose name stale() accepts: what interrupted runs left behind."""

    @abstractmethod
    def import_rootfs(self, tarball: Path, tag: str, env: Mapping[str, str], labels: Mapping[str, str]) -> None:
        """Make image `tag` from a root file system tarball (for stand-in base images)."""

    @abstractmethod
    def create(self, image: str, args: Sequence[str], options: RunOptions) -> Container:
        """A container that will run `docker run IMAGE ARGS` as options say."""

    @abstractmethod
    def start(self, container: Container) -> None:
        """Start in the background; output goes to container.process's stdout."""

    @abstractmethod
    def terminate(self, container: Container, timeout: float) -> int:
        """Send SIGTERM to the container's main process, as SageMaker does; returns its exit status."""

    @abstractmethod
    def changes(self, container: Container) -> set[str]: ...

    @abstractmethod
    def remove(self, container: Container) -> None: ...

    def run(self, container: Container, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run to the end in the foreground; stdout and stderr together."""
        finished = self._run_once(container, timeout)
        if finished.returncode != 0 and RUNTIME_START_GLITCH in finished.stdout:
            finished = self._run_once(container, timeout)
        return finished

    def _run_once(self, container: Container, timeout: float) -> subprocess.CompletedProcess[str]:
        self.start(container)
        assert container.process is not None
        try:
            output, _ = container.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.terminate(container, timeout=10)
            output, _ = container.process.communicate()
            raise EngineError(f"{container.command} ran past {timeout} s:\n{output}") from None
        return subprocess.CompletedProcess(container.command, container.process.returncode, output, "")


class Docker(Engine):
    name = "docker"

    @staticmethod
    def answers() -> bool:
        if shutil.which("docker") is None:
            return False
        try:
            return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def build(
        self,
        context: Path,
        tag: str,
        timeout: float,
        build_args: Mapping[str, str] | None = None,
        base_images: Mapping[str, str] | None = None,
    ) -> str:
        command = ["docker", "build", "--progress", "plain", "--network", "host", "--tag", tag]
        command += [f"--build-context={name}=docker-image://{image}" for name, image in (base_images or {}).items()]
        finished = _check([*command, *_build_arg_options(build_args), str(context)], timeout=timeout)
        return finished.stdout + finished.stderr

    def cached_steps(self, log: str) -> list[str]:
        # BuildKit's plain progress: `#7 [3/5] RUN ...` and, for a step from the cache, `#7 CACHED`.
        steps = dict(re.findall(r"^(#\d+) \[[^\]]*\] (.+)$", log, re.M))
        return [steps[number] for number in re.findall(r"^(#\d+) CACHED$", log, re.M) if number in steps]

    def exists(self, image: str) -> bool:
        return subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode == 0

    def pull(self, image: str) -> bool:
        return subprocess.run(["docker", "pull", image], capture_output=True, timeout=900, check=False).returncode == 0

    def inspect(self, image: str) -> ImageInfo:
        details = json.loads(_check(["docker", "image", "inspect", image]).stdout)[0]
        config = details.get("Config") or {}
        return ImageInfo(
            user=config.get("User") or "",
            entrypoint=list(config.get("Entrypoint") or []),
            env=list(config.get("Env") or []),
            labels=dict(config.get("Labels") or {}),
            size=int(details["Size"]),
        )

    def remove_image(self, image: str) -> None:
        subprocess.run(["docker", "image", "rm", "--force", image], capture_output=True, check=False)

    def release(self, image: str) -> None:
        pass  # every docker run gets a fresh container, removed with it

    def remove_leftovers(self, stale: Callable[[str], bool]) -> None:
        listing = _check(["docker", "ps", "--all", "--format", "{{.ID}} {{.Image}}"]).stdout.split("\n")
        for handle, image in (line.split(" ", 1) for line in listing if line):
            if stale(image):
                subprocess.run(["docker", "rm", "--force", handle], capture_output=True, check=False)
        for image in _check(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout.split():
            if stale(image):
                self.remove_image(image)

    def import_rootfs(self, tarball: Path, tag: str, env: Mapping[str, str], labels: Mapping[str, str]) -> None:
        changes = [f"ENV {name}={value}" for name, value in env.items()]
        changes += [f"LABEL {name}={json.dumps(value)}" for name, value in labels.items()]
        command = ["docker", "import", *(arg for change in changes for arg in ("--change", change)), str(tarball), tag]
        _check(command)

    def create(self, image: str, args: Sequence[str], options: RunOptions) -> Container:
        command = ["docker", "create"]
        command += [arg for source, target in options.volumes() for arg in ("--volume", f"{source}:{target}")]
        if options.hostname is not None:
            command += ["--hostname", options.hostname, "--add-host", f"{options.hostname}:127.0.0.1"]
        command += [arg for name, value in options.env.items() for arg in ("--env", f"{name}={value}")]
        if options.port is not None:
            command += ["--publish", f"127.0.0.1:{options.port}:{options.port}"]
        if not options.network:
            command += ["--network", "none"]
        if options.entrypoint is not None:
            command += ["--entrypoint", options.entrypoint[0]]
            args = [*options.entrypoint[1:], *args]
        handle = _check([*command, image, *args]).stdout.strip()
        return Container(self, handle, [image, *args])

    def start(self, container: Container) -> None:
        container.process = subprocess.Popen(
            ["docker", "start", "--attach", container.handle],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def terminate(self, container: Container, timeout: float) -> int:
        subprocess.run(["docker", "kill", "--signal", "TERM", container.handle], capture_output=True, check=False)
        status = _check(["docker", "wait", container.handle], timeout=timeout).stdout.strip()
        return int(status)

    def changes(self, container: Container) -> set[str]:
        entries = [line.split(" ", 1) for line in _check(["docker", "diff", container.handle]).stdout.splitlines()]
        paths = {path for _, path in entries}
        # A folder is listed as changed (C) when an entry inside it is; like buildah's diff, count the entry.
        return {
            path
            for kind, path in entries
            if not (kind == "C" and any(other.startswith(path.rstrip("/") + "/") for other in paths))
        }

    def remove(self, container: Container) -> None:
        subprocess.run(["docker", "rm", "--force", container.handle], capture_output=True, check=False)


# Files buildah itself puts into a chroot container to run it (docker keeps these out of `docker diff`).
BUILDAH_RUNTIME_FILES = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv"}
# Kernel file systems buildah mounts into the container while it runs.
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev")


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under a container's root file system, with what a change would alter."""
    seen: dict[str, tuple[int, int, int]] = {}
    for directory, folders, files in os.walk(root):
        relative = "/" + os.path.relpath(directory, root) if directory != str(root) else "/"
        relative = os.path.normpath(relative)
        if relative.startswith(PSEUDO_FILE_SYSTEMS) or relative in ("/opt/ml", "/tmp"):
            folders.clear()
            continue
        for name in folders + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            seen[os.path.join(relative, name)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return seen


@dataclass
class _BuildahContainer(Container):
    before: dict[str, tuple[int, int, int]] = field(default_factory=dict, repr=False)
    root: Path | None = None
    scratch: Path | None = None  # host-side files the run mounts (its hosts file)


# Overlay storage of the tests' own (a machine's default storage may already be set up for another driver).
OVERLAY_STORAGE = ("--root", "/var/lib/containers/byoc-overlay", "--runroot", "/run/containers/byoc-overlay")


class Buildah(Engine):
    """Buildah as root with chroot isolation: no daemon, no user namespaces needed.

    Storage is overlay where the kernel allows it (layers shared, a container made in an instant), else
    vfs, which copies the whole image for each new container and each cached layer (minutes for a 5 GB
    image); BYOC_BUILDAH_STORAGE=overlay|vfs forces one. The runs of one image share a working container.
    Each run's changes are still diffed on their own, so a stray write is caught by the run that made it.
    """

    name = "buildah"

    def __init__(self) -> None:
        self.working: dict[str, tuple[str, Path]] = {}  # image -> (container, its mounted root)
        forced = os.environ.get("BYOC_BUILDAH_STORAGE")
        overlay = forced == "overlay" or (forced is None and _overlay_works())
        self.storage = "overlay" if overlay else "vfs"
        self.base = ("buildah", *(OVERLAY_STORAGE if overlay else ()), "--storage-driver", self.storage)

    @staticmethod
    def available() -> bool:
        return shutil.which("buildah") is not None and os.geteuid() == 0

    def build(
        self,
        context: Path,
        tag: str,
        timeout: float,
        build_args: Mapping[str, str] | None = None,
        base_images: Mapping[str, str] | None = None,
    ) -> str:
        # --layers: each instruction's result is cached, so a code change rebuilds only the layers after it.
        command = [*self.base, "bud", "--layers", "--isolation", "chroot", "--network", "host", "--pull=never"]
        command += [f"--build-context={name}=container-image://{image}" for name, image in (base_images or {}).items()]
        command += ["--tag", tag, *_build_arg_options(build_args)]
        finished = _check([*command, str(context)], timeout=timeout)
        return finished.stdout + finished.stderr

    def cached_steps(self, log: str) -> list[str]:
        # `STEP 4/9: RUN ...` followed, for a step from the cache, by `--> Using cache <id>`.
        return re.findall(r"^STEP \d+/\d+: (.+)\n--> Using cache ", log, re.M)

    def exists(self, image: str) -> bool:
        command = [*self.base, "inspect", "--type", "image", image]
        return subprocess.run(command, capture_output=True, check=False).returncode == 0

    def pull(self, image: str) -> bool:
        command = [*self.base, "pull", "--quiet", image]
        return subprocess.run(command, capture_output=True, timeout=900, check=False).returncode == 0

    def inspect(self, image: str) -> ImageInfo:
        details = json.loads(_check([*self.base, "inspect", "--type", "image", image]).stdout)
        config = details["OCIv1"].get("config") or {}
        # Local storage keeps layers uncompressed, so the manifest's layer sizes are what `docker images` counts.
        layers = json.loads(details["Manifest"])["layers"]
        return ImageInfo(
            user=config.get("User") or "",
            entrypoint=list(config.get("Entrypoint") or []),
            env=list(config.get("Env") or []),
            labels=dict(config.get("Labels") or {}),
            size=sum(int(layer["size"]) for layer in layers),
        )

    def release(self, image: str) -> None:
        if image in self.working:
            subprocess.run([*self.base, "rm", self.working.pop(image)[0]], capture_output=True, check=False)

    def remove_image(self, image: str) -> None:
        self.release(image)
        subprocess.run([*self.base, "rmi", "--force", image], capture_output=True, check=False)
        # The cached layers of its build: untagged images nothing else is built on.
        subprocess.run([*self.base, "rmi", "--prune"], capture_output=True, check=False)

    def remove_leftovers(self, stale: Callable[[str], bool]) -> None:
        for container in json.loads(_check([*self.base, "containers", "--all", "--json"]).stdout) or []:
            if stale(container["imagename"]):
                subprocess.run([*self.base, "rm", container["id"]], capture_output=True, check=False)
        for image in json.loads(_check([*self.base, "images", "--json"]).stdout) or []:
            for name in image.get("names") or []:
                if stale(name):
                    self.remove_image(name)

    def import_rootfs(self, tarball: Path, tag: str, env: Mapping[str, str], labels: Mapping[str, str]) -> None:
        handle = _check([*self.base, "from", "scratch"]).stdout.strip()
        try:
            root = Path(_check([*self.base, "mount", handle]).stdout.strip())
            with tarfile.open(tarball) as archive:
                archive.extractall(root, filter="fully_trusted")  # our own debootstrap output, links included
            config = [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
            config += [arg for name, value in labels.items() for arg in ("--label", f"{name}={value}")]
            _check([*self.base, "config", *config, "--cmd", "python", handle])
            _check([*self.base, "commit", "--quiet", handle, tag])
        finally:
            subprocess.run([*self.base, "rm", handle], capture_output=True, check=False)

    def create(self, image: str, args: Sequence[str], options: RunOptions) -> Container:
        entrypoint = self.inspect(image).entrypoint if options.entrypoint is None else list(options.entrypoint)
        if image not in self.working:
            handle = _check([*self.base, "from", "--pull=never", image]).stdout.strip()
            self.working[image] = (handle, Path(_check([*self.base, "mount", handle]).stdout.strip()))
        handle, root = self.working[image]
        # Chroot isolation only shares the host's network; a fresh network namespace takes it away,
        # keeping the loopback interface up, as Docker's `--network none` and SageMaker's isolation do.
        offline = [] if options.network else ["unshare", "--net", "--", sys.executable, "-c", _LOOPBACK_UP_THEN_EXEC]
        command = [*offline, *self.base, "run", "--isolation", "chroot", "--network", "host"]
        command += [arg for source, target in options.volumes() for arg in ("--volume", f"{source}:{target}")]
        scratch = None
        if options.hostname is not None:
            # buildah run has no --add-host: its own hosts file is replaced by one naming the host.
            scratch = Path(tempfile.mkdtemp(prefix="byoc-hosts-"))
            (scratch / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.0.1\t{options.hostname}\n")
            command += ["--hostname", options.hostname, "--no-hosts", "--volume", f"{scratch / 'hosts'}:/etc/hosts:ro"]
        command += [arg for name, value in options.env.items() for arg in ("--env", f"{name}={value}")]
        # `docker run IMAGE ARGS`: the image's entrypoint with ARGS in place of CMD.
        command += [handle, "--", *entrypoint, *args]
        return _BuildahContainer(self, handle, command, before=_snapshot(root), root=root, scratch=scratch)

    def start(self, container: Container) -> None:
        container.process = subprocess.Popen(
            container.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def terminate(self, container: Container, timeout: float) -> int:
        assert container.process is not None
        main = _main_process(container.process.pid, container.command[container.command.index(container.handle) + 2 :])
        os.kill(main or container.process.pid, signal.SIGTERM)
        try:
            return container.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(container.process.pid, signal.SIGKILL)
            container.process.wait()
            raise

    def changes(self, container: Container) -> set[str]:
        assert isinstance(container, _BuildahContainer) and container.root is not None
        before, after = container.before, _snapshot(container.root)
        changed = {path for path in after.keys() | before.keys() if after.get(path) != before.get(path)}
        # Directory timestamps change when an entry inside them does; the entry itself is what counts.
        changed = {path for path in changed if not (path in after and path in before and _is_dir(after[path]))}
        return changed - BUILDAH_RUNTIME_FILES

    def remove(self, container: Container) -> None:
        """Ends the run; the working container stays for the image's next run (see remove_image)."""
        if container.process is not None and container.process.poll() is None:
            os.killpg(container.process.pid, signal.SIGKILL)
            container.process.wait()
        if isinstance(container, _BuildahContainer) and container.scratch is not None:
            shutil.rmtree(container.scratch, ignore_errors=True)


def _overlay_works() -> bool:
    """Whether buildah can mount an overlay container here (kernels in some sandboxes refuse)."""
    base = ("buildah", *OVERLAY_STORAGE, "--storage-driver", "overlay")
    made = subprocess.run([*base, "from", "scratch"], capture_output=True, text=True, timeout=120, check=False)
    if made.returncode != 0:
        return False
    handle = made.stdout.strip()
    try:
        return subprocess.run([*base, "mount", handle], capture_output=True, timeout=120, check=False).returncode == 0
    finally:
        subprocess.run([*base, "rm", handle], capture_output=True, check=False)


# Run in a fresh network namespace: bring `lo` up (SIOCGIFFLAGS, SIOCSIFFLAGS with IFF_UP), then exec argv[1:].
_LOOPBACK_UP_THEN_EXEC = """
import fcntl, os, socket, struct, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
    flags = struct.unpack("16sH", fcntl.ioctl(probe, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
    fcntl.ioctl(probe, 0x8914, struct.pack("16sH", b"lo", flags | 1))
os.execvp(sys.argv[1], sys.argv[1:])
"""


def _is_dir(entry: tuple[int, int, int]) -> bool:
    return (entry[0] & 0o170000) == 0o040000


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def _main_process(root_pid: int, command: Sequence[str], wait: float = 10) -> int | None:
    """The process running the image's entrypoint under `buildah run` (its PID 1 under docker)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        queue = [root_pid]
        while queue:
            pid = queue.pop(0)
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            except OSError:
                continue
            if pid != root_pid and argv[1:] == list(command)[1:] and Path(argv[0]).name == Path(command[0]).name:
                return pid
            queue += _children(pid)
        time.sleep(0.1)
    return None


def detect() -> Engine | None:
    """docker when an engine answers, else buildah; BYOC_TEST_ENGINE=docker|buildah forces one."""
    forced = os.environ.get("BYOC_TEST_ENGINE")
    if forced == "docker" or (forced is None and Docker.answers()):
        return Docker()
    if forced in (None, "buildah") and Buildah.available():
        return Buildah()
    return None
