"""The anchor stacks: AWS's generic inference servers, each serving the project's own handlers.

- mms: the sagemaker-inference toolkit on Multi Model Server, every framework. The user module is
  the template's own toolkit/inference.py, which extend-prebuilt projects ship as code/inference.py
  for AWS's prebuilt images (the project's model_fn, input_fn, predict_fn, output_fn), written for
  the project's package; the handler service is bench/anchors/mms/handler_service.py
  (DefaultHandlerService with a Transformer), started by the toolkit's start_model_server.
- torchserve: TorchServe, PyTorch projects only, with bench/anchors/torchserve/handler.py.

Each runs in a virtual environment of its own: the project with its pins, as harness.install makes
it, plus bench/anchors/<stack>/requirements.txt. Both answer /ping and /invocations.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import harness
from harness import Project, ServerProcess

ANCHORS_DIR = harness.BENCH_DIR / "anchors"
STACKS = ("ours", "reference", "mms", "torchserve")
ANCHOR_STACKS = ("mms", "torchserve")
# What extend-prebuilt projects ship as code/inference.py.
TOOLKIT_HANDLERS = (
    harness.PROJECT_TEMPLATE
    / "_combinations"
    / "base_image=extend-prebuilt,scope=train+serve"
    / "toolkit"
    / "inference.py"
)
MMS_MAX_PORT = 32767  # MMS refuses ports from 32768 up (where Linux hands out ephemeral ones)


def applicable(framework: str) -> list[str]:
    """The stacks that can serve a framework's project: the reference and TorchServe load only their own."""
    wanted = {"ours": True, "reference": framework == "sklearn", "mms": True, "torchserve": framework == "pytorch"}
    return [stack for stack in STACKS if wanted[stack]]


def low_port(excluded: tuple[int, ...] = ()) -> int:
    """A free port below 32768, which Linux does not hand out to outgoing connections."""
    while True:
        port = random.randint(20000, MMS_MAX_PORT)
        if port in excluded:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def install(project: Project, stack: str, scratch: Path) -> Path:
    """The anchor's environment: the project with its pins and the anchor's released pins."""
    requirements = ANCHORS_DIR / stack / "requirements.txt"
    return harness.install(project.root, scratch / f"{project.root.name}-{stack}-venv", requirements)


def _environ(project: Project, python: Path, work_dir: Path, **variables: str) -> dict[str, str]:
    environ = project.environ(BENCH_PACKAGE=project.package, TMPDIR=str(work_dir), TEMP=str(work_dir), **variables)
    environ["PATH"] = f"{python.parent}{os.pathsep}{environ.get('PATH', '')}"  # the launchers run their own tools
    return environ


def user_module(project: Project, folder: Path) -> Path:
    """The template's toolkit/inference.py for this project's package, in `folder` (for PYTHONPATH)."""
    text = TOOLKIT_HANDLERS.read_text(encoding="utf-8").replace("{{ cookiecutter.package_name }}", project.package)
    if "{{" in text or "{%" in text:
        raise RuntimeError(f"{TOOLKIT_HANDLERS} holds template syntax the benchmark does not fill in")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inference.py").write_text(text, encoding="utf-8")
    return folder


def mms_server(project: Project, python: Path, workers: int, log_dir: Path) -> ServerProcess:
    """MMS through the toolkit, with the toolkit's own settings for the port, workers and model folder."""
    port = low_port()
    work_dir = log_dir / f"mms-{port}"
    work_dir.mkdir()
    environ = _environ(
        project,
        python,
        work_dir,
        # The user module, then the handler service.
        PYTHONPATH=os.pathsep.join([str(user_module(project, work_dir / "code")), str(ANCHORS_DIR / "mms")]),
        SAGEMAKER_BIND_TO_PORT=str(port),
        SAGEMAKER_MODEL_SERVER_WORKERS=str(workers),
        MMS_CONFIG_FILE=str(work_dir / "mms.properties"),
    )
    command = [str(python), str(ANCHORS_DIR / "mms" / "serve.py")]
    return ServerProcess("mms", command, environ, port, log_dir / f"mms-{port}.log", cwd=work_dir)


def torchserve_store(project: Project, python: Path, scratch: Path) -> Path:
    """A model store holding the handler, archived once (an image build would do it)."""
    store = scratch / f"{project.root.name}-torchserve-store"
    if not (store / "model").exists():
        store.mkdir(exist_ok=True)
        archiver = python.parent / "torch-model-archiver"
        command = [str(archiver), "--model-name", "model", "--version", "1.0", "--export-path", str(store)]
        command += ["--handler", str(ANCHORS_DIR / "torchserve" / "handler.py"), "--archive-format", "no-archive"]
        subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return store


def torchserve_server(project: Project, python: Path, workers: int, log_dir: Path) -> ServerProcess:
    """TorchServe on the project's model, `workers` workers, no token (the other stacks have none)."""
    port = low_port()
    work_dir = log_dir / f"torchserve-{port}"
    work_dir.mkdir()
    management, metrics = low_port((port,)), low_port((port,))
    settings = {
        "inference_address": f"http://127.0.0.1:{port}",
        "management_address": f"http://127.0.0.1:{management}",
        "metrics_address": f"http://127.0.0.1:{metrics}",
        "default_workers_per_model": workers,
        "decode_input_request": "false",  # bodies reach the handler as bytes, as with MMS
        "disable_token_authorization": "true",
    }
    config = work_dir / "config.properties"
    config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()), encoding="utf-8")
    store = torchserve_store(project, python, log_dir)
    # One OpenMP thread a worker, as MMS and our server give theirs: TorchServe leaves torch at one a
    # core, and two workers on two cores would then fight over them.
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    environ = _environ(project, python, work_dir, MODEL_DIR=str(project.model_dir), OMP_NUM_THREADS=threads)
    command = [str(python), str(ANCHORS_DIR / "torchserve" / "serve.py"), "--ncs", "--ts-config", str(config)]
    command += ["--model-store", str(store), "--models", "model=model"]
    return ServerProcess("torchserve", command, environ, port, log_dir / f"torchserve-{port}.log", cwd=work_dir)


def starters(
    project: Project, stacks: list[str], workers: int, scratch: Path
) -> dict[str, Callable[[], ServerProcess]]:
    """A function per stack asked for (and applicable) that starts one server; anchors' environments made here."""
    made: dict[str, Callable[[], ServerProcess]] = {}
    for stack in (each for each in applicable(project.framework) if each in stacks):
        if stack == "ours":
            made[stack] = lambda: harness.our_server(project, workers, scratch)
        elif stack == "reference":
            made[stack] = lambda: harness.reference_server(project, workers, scratch)
        else:
            print(f"installing the {stack} anchor for {project.framework} ...", file=sys.stderr, flush=True)
            python = install(project, stack, scratch)
            start = mms_server if stack == "mms" else torchserve_server
            made[stack] = lambda start=start, python=python: start(project, python, workers, scratch)
    return made
