"""Several models in one endpoint: SageMaker's multi-model container API (SAGEMAKER_MULTI_MODEL=true).

SageMaker downloads each model to /opt/ml/models/<name>/model and tells the container to load it
(`POST /models`), lists and describes what is loaded (`GET /models`, `GET /models/<name>`), unloads
(`DELETE /models/<name>`) and invokes one (`POST /models/<name>/invoke`). It sends each of these
once, to whichever worker takes the connection, while any worker may take the next invoke.

How the workers agree: the server's master makes a registry folder before the fork; a load is
one file in it, written by the worker that took the load once that worker has loaded the model and
the memory rule admits it, and an unload deletes the file. Before answering any request (pings
included) a worker drops its own copies of models whose file is gone, and an invoke reads the model's file:
absent is a 404 on every worker, present but not held yet means this worker loads its own copy
from the file's url first (the one the caller already got a 200 for, so it is known to load).
Checks and writes happen under a lock on the folder, so two workers taking loads of one name at
once answer 200 and 409. Multi Model Server does the same job with a Java front end that loads a
model into all its Python workers; here every worker is already a full server, and the registry
is the only thing they share, so the workers keep answering at once (one worker would serialise every
invoke). The first invoke of a model on each worker pays that worker's load. A worker the master
replaces finds every model in the registry; the master alone removes it, when the server stops.

Memory: each worker holds its own copy, so a model costs its size times the number of workers.
Its size is the larger of the worker's resident memory growth across the load and the files'
size on disk: the growth is what the load really took, but the allocator may reuse freed pages
and show almost none, while a model rarely takes less memory than its files. A load is refused
with 507 (and nothing else unloaded: SageMaker chooses what to evict, then retries) when
- MULTI_MODEL_MEMORY_LIMIT_MB is set and the models' total, this one included, would exceed it, or
- the memory the container still has (its cgroup limit less its usage, else the machine's
  MemAvailable) would fall under a tenth of its total once the other workers hold their copies.
Unloaded models leave a worker at its next request (a ping included); Python may keep the freed pages.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import json
import logging
import os
import re
import resource
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from . import inference

logger = logging.getLogger(__name__)

MEMORY_LIMIT_VARIABLE = "MULTI_MODEL_MEMORY_LIMIT_MB"
# Names become file names in the registry: one path segment of these characters, never . or ..
NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
# The registry's own files start with a character no model name has.
LOCK_FILE = "~lock"
DEFAULT_PAGE_SIZE = 100
# The share of the container's memory a load must leave free (for requests, the allocator, the OS).
HEADROOM = 0.1
MB = 1024 * 1024


class ModelApiError(Exception):
    """A /models request refused or failed; `status` is the HTTP status that says why."""

    def __init__(self, status: int, reason: str, allow: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.allow = allow  # the methods the path answers, for a 405's Allow header


@dataclass(frozen=True)
class Memory:
    total: int  # bytes the container may use
    available: int  # bytes it may still take


@dataclass(frozen=True)
class Entry:
    """A loaded model as the registry records it; `load_id` tells one load of a name from the next."""

    name: str
    url: str
    memory_bytes: int
    load_id: str

    def description(self) -> dict[str, str]:
        return {"modelName": self.name, "modelUrl": self.url}


@dataclass(frozen=True)
class MultiModelConfig:
    """What every worker's store shares: made once in the server's master, before the fork."""

    root: Path
    registry: Path
    workers: int
    memory_limit_bytes: int | None

    @classmethod
    def create(
        cls, root: Path, workers: int, environ: Mapping[str, str], temporary_dir: Path | None = None
    ) -> MultiModelConfig:
        limit = memory_limit(environ)  # a bad value stops the server before a registry is left behind
        return cls(
            root=Path(os.path.abspath(root)),
            registry=Path(tempfile.mkdtemp(prefix="multi-model-registry-", dir=temporary_dir)),
            workers=workers,
            memory_limit_bytes=limit,
        )


def memory_limit(environ: Mapping[str, str]) -> int | None:
    text = environ.get(MEMORY_LIMIT_VARIABLE, "").strip()
    if not text:
        return None
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = 0.0
    if not megabytes > 0 or megabytes == float("inf"):
        raise ValueError(f"{MEMORY_LIMIT_VARIABLE} must be a number of megabytes above 0, not {text!r}")
    return int(megabytes * MB)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in (".", ".."):
        raise ModelApiError(
            400,
            f"model name {name!r} is not allowed: use 1 to 255 letters, digits, '.', '_' or '-', "
            "with no path separators, and not '.' or '..'",
        )
    return name


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux); None where /proc does not say."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * resource.getpagesize()


def size_on_disk(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _read_number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _inactive_file(stat: Path, key: str) -> int:
    """Page cache the kernel reclaims before it runs out: not memory the container is short of."""
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def container_memory(cgroup: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")) -> Memory | None:
    """The container's memory: its cgroup's limit and what is left of it, else the machine's; None off Linux."""
    machine: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            name, _, value = line.partition(":")
            machine[name] = int(value.split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return None
    if "MemTotal" not in machine or "MemAvailable" not in machine:
        return None
    total, available = machine["MemTotal"], machine["MemAvailable"]
    version_1 = cgroup / "memory"
    for limit_file, usage_file, stat_key in (
        (cgroup / "memory.max", cgroup / "memory.current", "inactive_file"),
        (version_1 / "memory.limit_in_bytes", version_1 / "memory.usage_in_bytes", "total_inactive_file"),
    ):
        limit, usage = _read_number(limit_file), _read_number(usage_file)
        if limit is not None and usage is not None and limit < total:  # "max" or a huge number: no limit
            in_use = usage - _inactive_file(limit_file.parent / "memory.stat", stat_key)
            return Memory(limit, max(0, min(limit - in_use, available)))
    return Memory(total, available)


class ModelStore:
    """One worker's view of the loaded models: the shared registry, and this worker's own copies."""

    def __init__(
        self,
        config: MultiModelConfig,
        load: Callable[[Path], Any] = inference.model_fn,
        memory: Callable[[], Memory | None] = container_memory,
    ) -> None:
        self.config = config
        self._load = load
        self._memory = memory
        self._held: dict[str, tuple[str, Any]] = {}  # name -> (load_id, model)
        # The framework's import is the worker's, not the first model's: leave it out of that model's memory.
        importlib.import_module(".framework", __package__)

    # The registry: one JSON file per loaded model, read by every worker.

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.config.registry / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _entry(self, name: str) -> Entry | None:
        try:
            record = json.loads((self.config.registry / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return Entry(record["modelName"], record["modelUrl"], record["memoryBytes"], record["loadId"])

    def _entries(self) -> list[Entry]:
        names = sorted(name for name in os.listdir(self.config.registry) if not name.startswith("~"))
        return [entry for entry in map(self._entry, names) if entry is not None]

    def _write(self, entry: Entry) -> None:
        record = {
            "modelName": entry.name,
            "modelUrl": entry.url,
            "memoryBytes": entry.memory_bytes,
            "loadId": entry.load_id,
        }
        temporary = self.config.registry / f"~{entry.load_id}"
        temporary.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temporary, self.config.registry / entry.name)  # other workers see all of it or none

    # The container API.

    def forget_unloaded(self) -> None:
        """Drop this worker's copies of models another worker unloaded since."""
        registered = set(os.listdir(self.config.registry))
        gone = [name for name in self._held if name not in registered]
        for name in gone:
            del self._held[name]
        if gone:
            gc.collect()  # a model's objects may hold one another: free them now, not at some later collection

    def load(self, name: str, url: object) -> Entry:
        check_name(name)
        folder = self._model_folder(url)
        if self._entry(name) is not None:
            raise ModelApiError(409, f"model {name!r} is already loaded; unload it first to load it again")
        if not folder.is_dir():
            raise ModelApiError(404, f"there is no model at {url}: it is not a folder")
        on_disk = size_on_disk(folder)
        self._admit(name, on_disk)  # refuse before loading when the files alone do not fit
        before = resident_bytes()
        try:
            model = self._load(folder)
        except Exception as error:  # any reason the files are not a model of this project
            raise ModelApiError(400, f"cannot load a model from {url}: {type(error).__name__}: {error}") from None
        after = resident_bytes()
        grown = after - before if before is not None and after is not None else 0
        entry = Entry(name, str(url), max(on_disk, grown), uuid.uuid4().hex)
        with self._locked():
            if self._entry(name) is not None:  # another worker loaded it meanwhile
                raise ModelApiError(409, f"model {name!r} is already loaded; unload it first to load it again")
            self._admit(name, entry.memory_bytes)
            self._write(entry)
        self._held[name] = (entry.load_id, model)
        logger.info(
            "loaded model %s from %s: %.1f MB in each of %d workers (%s)",
            name,
            url,
            entry.memory_bytes / MB,
            self.config.workers,
            "resident memory growth" if grown > on_disk else "size on disk",
        )
        return entry

    def describe(self, name: str) -> Entry:
        entry = self._entry(check_name(name))
        if entry is None:
            raise ModelApiError(404, f"model {name!r} is not loaded")
        return entry

    def page(self, max_results: int = DEFAULT_PAGE_SIZE, after: str | None = None) -> tuple[list[Entry], str | None]:
        """Loaded models in name order, at most `max_results` after the name `after`; and the next page's token."""
        entries = [entry for entry in self._entries() if after is None or entry.name > after]
        shown = entries[:max_results]
        return shown, shown[-1].name if len(entries) > max_results else None

    def unload(self, name: str) -> Entry:
        with self._locked():
            entry = self.describe(name)
            os.unlink(self.config.registry / name)
        self._held.pop(name, None)
        logger.info("unloaded model %s", name)
        return entry

    def model(self, name: str) -> Any:
        """The model to invoke: this worker's copy, loaded from the registry's url the first time."""
        self.forget_unloaded()
        entry = self.describe(name)
        held = self._held.get(name)
        if held is not None and held[0] == entry.load_id:
            return held[1]
        try:
            model = self._load(self._model_folder(entry.url))
        except Exception as error:  # the files changed after the load that admitted them
            raise ModelApiError(
                500, f"model {name!r} is loaded but this worker cannot load it: {type(error).__name__}: {error}"
            ) from None
        self._held[name] = (entry.load_id, model)
        return model

    # The rules.

    def _model_folder(self, url: object) -> Path:
        """The url's folder, refused unless it lies inside the model root (links resolved) before anything is read."""
        root = self.config.root
        if not isinstance(url, str) or not os.path.isabs(url):
            raise ModelApiError(400, f"url must be an absolute path inside {root}, not {url!r}")
        lexical = Path(os.path.normpath(url))
        if not lexical.is_relative_to(root) or lexical == root:
            raise ModelApiError(400, f"url {url!r} is outside {root}, where models are loaded from")
        resolved = lexical.resolve()
        if not resolved.is_relative_to(root.resolve()):
            raise ModelApiError(400, f"url {url!r} leads outside {root}, where models are loaded from")
        return resolved

    def _admit(self, name: str, cost: int) -> None:
        workers = self.config.workers
        limit = self.config.memory_limit_bytes
        if limit is not None:
            in_use = sum(entry.memory_bytes for entry in self._entries()) * workers
            if in_use + cost * workers > limit:
                raise ModelApiError(
                    507,
                    f"no memory for model {name!r}: it needs {cost * workers / MB:.1f} MB ({workers} workers), "
                    f"{in_use / MB:.1f} of the {limit / MB:.1f} MB of {MEMORY_LIMIT_VARIABLE} are in use; "
                    "unload a model first",
                )
        memory = self._memory()
        if memory is not None and memory.available - cost * (workers - 1) < memory.total * HEADROOM:
            raise ModelApiError(
                507,
                f"no memory for model {name!r}: {memory.available / MB:.0f} MB of the container's "
                f"{memory.total / MB:.0f} MB are free, and {workers} workers need {cost * workers / MB:.1f} MB "
                f"for it with {HEADROOM:.0%} kept free; unload a model first",
            )


def model_path(path: str) -> tuple[str | None, bool]:
    """(model name, is an invoke) for a /models path; (None, False) for /models itself."""
    rest = path[len("/models") :].removeprefix("/")
    if not rest:
        return None, False
    if rest.endswith("/invoke"):
        return rest[: -len("/invoke")], True
    return rest, False


def answer(store: ModelStore, method: str, path: str, query: bytes, body: bytes) -> tuple[int, dict[str, Any]]:
    """Status and JSON document for a /models request other than an invoke; raises ModelApiError to refuse."""
    store.forget_unloaded()
    name, invoke = model_path(path)
    if invoke:
        raise ModelApiError(405, f"method {method} is not allowed on {path}; use POST", ("POST",))
    if name is None:
        if method == "GET":
            return 200, _list(store, query)
        if method == "POST":
            return 200, _load(store, body).description()
        raise ModelApiError(405, f"method {method} is not allowed on /models; use GET or POST", ("GET", "POST"))
    if method == "GET":
        return 200, store.describe(name).description()
    if method == "DELETE":
        return 200, store.unload(name).description()
    raise ModelApiError(405, f"method {method} is not allowed on {path}; use GET or DELETE", ("GET", "DELETE"))


def _list(store: ModelStore, query: bytes) -> dict[str, Any]:
    parameters = parse_qs(query.decode("latin-1"))
    size_text = parameters.get("max_results", [str(DEFAULT_PAGE_SIZE)])[-1]
    if not size_text.isdigit() or int(size_text) < 1:
        raise ModelApiError(400, f"max_results must be a whole number above 0, not {size_text!r}")
    token = parameters.get("next_page_token", [None])[-1]
    if token is not None:
        try:
            check_name(token)
        except ModelApiError:
            raise ModelApiError(400, f"next_page_token {token!r} is not one this server gave") from None
    entries, next_token = store.page(int(size_text), token)
    document: dict[str, Any] = {"models": [entry.description() for entry in entries]}
    if next_token is not None:
        document["nextPageToken"] = next_token
    return document


def _load(store: ModelStore, body: bytes) -> Entry:
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        request = None
    if not isinstance(request, dict) or "model_name" not in request or "url" not in request:
        raise ModelApiError(400, 'load a model with a JSON object: {"model_name": "<name>", "url": "<folder>"}')
    return store.load(request["model_name"], request["url"])
