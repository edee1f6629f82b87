"""What the benchmark runs: rendered projects, trained on their sample data, and servers as processes.

Each project runs in an environment of its own holding what its image holds: the project installed
with its pinned dependencies and nothing else (the benchmark's own packages, pandas for one, would
slow every import). A server is started as a real process on 127.0.0.1 and watched from outside:
time from start to the first 200 from /ping and to the first right answer, peak resident memory
of its processes (its session: every process it started, those reparented included), exit code
after SIGTERM.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = BENCH_DIR.parent
PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
SERVING_ANSWERS = {"scope": "train+serve", "base_image": "from-scratch", "processor": "cpu"}


def frameworks() -> list[str]:
    """Every framework folder of the template whose from-scratch CPU server the pre-gen hook accepts."""
    spec = importlib.util.spec_from_file_location("pre_gen_project", TEMPLATE_DIR / "hooks" / "pre_gen_project.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    prompts = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    defaults = {key: value[0] if isinstance(value, list) else value for key, value in prompts.items()}
    variants = sorted(path.name for path in (PROJECT_TEMPLATE / "_frameworks").iterdir() if path.is_dir())
    answers = ({**defaults, **SERVING_ANSWERS, "framework": name} for name in variants)
    return [each["framework"] for each in answers if hook.check_combination(each) is None]


@dataclass(frozen=True)
class Project:
    """A rendered project, the SageMaker tree it trains into, and the Python it runs with."""

    root: Path
    base_dir: Path
    python: Path | None = None  # None: this interpreter, with the project's sources on PYTHONPATH

    @property
    def answers(self) -> dict[str, str]:
        return json.loads((self.root / ".cookiecutter.json").read_text(encoding="utf-8"))

    @property
    def package(self) -> str:
        return self.answers["package_name"]

    @property
    def framework(self) -> str:
        return self.answers["framework"]

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def interpreter(self) -> str:
        return str(self.python or sys.executable)

    def environ(self, **variables: str) -> dict[str, str]:
        environ = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        if self.python is None:
            environ["PYTHONPATH"] = str(self.root / "src")
        return dict(environ, SAGEMAKER_BASE_DIR=str(self.base_dir), **variables)

    def command(self, *args: str) -> list[str]:
        return [self.interpreter, "-m", self.package, *args]

    def run(self, *args: str) -> None:
        finished = subprocess.run(
            self.command(*args), env=self.environ(), capture_output=True, text=True, timeout=600, check=False
        )
        if finished.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed in {self.root}:\n{finished.stdout}\n{finished.stderr}")

    def prepare(self) -> Project:
        """Write the sample data set and train on it, once."""
        if not (self.base_dir / "input" / "config" / "hyperparameters.json").exists():
            self.run("sample-data", str(self.base_dir))
        if not any(self.model_dir.glob("*")):
            self.run("train")
        return self

    def features(self, channel: str = "validation") -> np.ndarray:
        """A channel's feature columns, in the model's order (the sample requests' records name them)."""
        path = self.base_dir / "input" / "data" / channel / f"{channel}.csv"
        header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
        records = json.loads((self.base_dir / "sample-requests" / "payload.json").read_text(encoding="utf-8"))
        names = list(records["instances"][0])
        return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)[:, [header.index(name) for name in names]]


def install(project_root: Path, venv_dir: Path, *requirements: Path) -> Path:
    """A virtual environment with the project and its pinned dependencies, as its image installs them,
    plus the pinned `requirements` files (an anchor stack's)."""
    pip = [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "."]
    steps = [[sys.executable, "-m", "venv", str(venv_dir)], pip + [f"-r{path}" for path in requirements]]
    for step in steps:
        finished = subprocess.run(step, cwd=project_root, capture_output=True, text=True, timeout=1800, check=False)
        if finished.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed:\n{finished.stdout}\n{finished.stderr}")
    return venv_dir / "bin" / "python"


def render(framework: str, output_dir: Path, own_environment: bool = True) -> Project:
    """A from-scratch, train+serve, CPU project for `framework`, trained on its sample data."""
    answers = {**SERVING_ANSWERS, "framework": framework}
    slug = f"bench-{framework}"
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(output_dir), str(TEMPLATE_DIR)]
    command += [f"{key}={value}" for key, value in {**answers, "project_name": slug, "project_slug": slug}.items()]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"rendering {framework} failed:\n{finished.stdout}\n{finished.stderr}")
    root = output_dir / slug
    python = install(root, output_dir / f"{slug}-venv") if own_environment else None
    return Project(root, output_dir / f"{slug}-ml", python).prepare()


@dataclass(frozen=True)
class Payload:
    name: str
    content_type: str
    body: bytes


def payloads(features: np.ndarray) -> list[Payload]:
    """One row and 100 rows of real feature values, as CSV and as JSON."""
    made = []
    for count in (1, 100):
        rows = np.resize(features, (count, features.shape[1]))
        csv = "\n".join(",".join(f"{value:.6g}" for value in row) for row in rows) + "\n"
        made.append(Payload(f"csv-{count}", "text/csv", csv.encode()))
        made.append(Payload(f"json-{count}", "application/json", json.dumps({"instances": rows.tolist()}).encode()))
    return made


def predictions(answer: bytes, content_type: str) -> list[str]:
    """An /invocations answer as a list of labels, whichever stack and format gave it."""
    if content_type == "application/json":
        return [str(value) for value in json.loads(answer)["predictions"]]
    return answer.decode().split()


def post(port: int, payload: Payload, path: str = "/invocations") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": payload.content_type, "Accept": payload.content_type}
        connection.request("POST", path, payload.body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _session_members(session: int) -> list[int]:
    """Every process of a session, those a launcher left to init included (MMS's Java frontend)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[3]) == session:
            found.append(int(stat.parent.name))
    return found


def _high_water_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


class ServerProcess:
    """A server as a process of its own: start, wait for /ping, measure, SIGTERM."""

    def __init__(
        self,
        name: str,
        command: list[str],
        environ: dict[str, str],
        port: int,
        log_path: Path,
        cwd: Path | None = None,  # where a server writes files of its own (MMS and TorchServe: logs/)
        invocation_path: str = "/invocations",
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self.invocation_path = invocation_path
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            env=environ,
            cwd=cwd,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so nothing is left behind
        )

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds from process start to the first 200 from /ping."""
        while time.perf_counter() - self.started < timeout:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code} before answering /ping:\n{self.log_tail()}")
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                connection.request("GET", "/ping")
                if connection.getresponse().status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not answer /ping within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_answered(self, payload: Payload, expected: list[str], timeout: float = 120.0) -> float:
        """Seconds from process start to the first right answer to `payload` (MMS answers /ping before its
        workers have loaded the model)."""
        answer = b""
        while time.perf_counter() - self.started < timeout:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code} before answering:\n{self.log_tail()}")
            try:
                status, answer = post(self.port, payload, self.invocation_path)
                if status == 200 and predictions(answer, payload.content_type) == expected:
                    return time.perf_counter() - self.started
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
                pass  # not listening yet, or an answer that is not one yet
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} gave no right answer within {timeout:.0f} s (last {answer[:200]!r})")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's processes have used so far: what a start costs, however busy
        the machine is."""
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(_cpu_ticks(pid) for pid in _session_members(self.process.pid)) / ticks

    def peak_rss_mib(self) -> float:
        """The sum of the high-water marks of the server's processes (shared pages counted in each)."""
        return sum(_high_water_kib(pid) for pid in _session_members(self.process.pid)) / 1024

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as SageMaker stops a container; the exit code, or an error if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise RuntimeError(f"{self.name} did not stop within {timeout:.0f} s of SIGTERM") from None
        finally:
            # Workers a crashed master left behind would skew the next measurement.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def our_server(project: Project, workers: int, log_dir: Path) -> ServerProcess:
    """The project's own server, as the container starts it (only the port and worker count set)."""
    port = free_port()
    environ = project.environ(SAGEMAKER_BIND_TO_PORT=str(port), SAGEMAKER_MODEL_SERVER_WORKERS=str(workers))
    return ServerProcess("ours", project.command("serve"), environ, port, log_dir / f"ours-{port}.log")


def reference_server(project: Project, workers: int, log_dir: Path) -> ServerProcess:
    """AWS's BYOC example stack (bench/reference_server.py) on the same model and worker count."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-k", "sync", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    command += ["--chdir", str(BENCH_DIR), "reference_server:app"]
    environ = dict(os.environ, MODEL_DIR=str(project.model_dir))
    return ServerProcess("reference", command, environ, port, log_dir / f"reference-{port}.log")


# The math libraries' thread settings: one thread each makes the in-process ceiling a single-thread rate
# (left at one a core, a busy machine's other processes stall OpenMP's threads, PyTorch's most of all).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def in_process(project: Project, *args: str) -> dict:
    """bench/inprocess.py in the project's environment, one math thread unless the caller set them; its JSON answer."""
    threads = {name: os.environ.get(name, "1") for name in THREAD_VARIABLES}
    finished = subprocess.run(
        [project.interpreter, str(BENCH_DIR / "inprocess.py"), "--package", project.package, *args],
        env=project.environ(**threads),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"inprocess.py {args[0]} failed:\n{finished.stderr}")
    return json.loads(finished.stdout.splitlines()[-1])


def timed(command: list[str], environ: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of `command`, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stdout}\n{finished.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
