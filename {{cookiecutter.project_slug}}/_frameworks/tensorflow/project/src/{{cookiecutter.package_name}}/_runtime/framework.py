"""TensorFlow / Keras under the contract: trains model.py's network, exports a SavedModel, answers with it.

This is the only runtime module that knows the framework, with the four beside it: network.py (the
training loop and the export), distributed.py (joining the hosts), checkpoints.py (resuming a
stopped job) and batches.py (which rows each step takes). The artifact is a SavedModel under a
numeric version folder (`model/1/`), which is what TensorFlow Serving loads and what
`FrameworkModel.load` reads back. Its serving signature takes rows of raw features (float32, in the
schema's order) and returns class probabilities, shape (n, K), for classification, or the predicted
numbers, shape (n,), for regression: the standardisation of the inputs (and of a regression target)
is inside it, so TensorFlow Serving answers directly.

Where LiteRT (TensorFlow's runtime for inference) is installed, as a CPU train+serve lock has it, the
version folder also holds the network converted for it (`model/1/model.tflite`), and this project's
server answers with that: LiteRT imports in a tenth of a second where TensorFlow takes seconds (at
every worker's start, and a serverless endpoint's every cold start), and runs a small network in
microseconds where a TensorFlow function call takes hundreds. The export checks that LiteRT answers
as TensorFlow does; a network it cannot run (an operation LiteRT lacks) is exported without it and
served by TensorFlow, as is a SavedModel made elsewhere, and every model of a GPU project (whose lock
leaves LiteRT out: its endpoint runs the network on the GPU). This module imports TensorFlow
(network.py) only to train, to export, or to serve a SavedModel.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .contract import DefinitionError, TrainingJob

MODEL_VERSION = "1"
BUILDERS = ("build_network", "build_optimizer")
# The hyperparameters this runtime reads itself; model.py's builders read the others.
RUNTIME_HYPERPARAMETERS = ("epochs", "batch_size", "seed")
LITERT_FILE = "model.tflite"

logger = logging.getLogger(__name__)


def check_hyperparameters() -> None:
    from .. import model  # model.py imports Keras, and so TensorFlow: only training needs it

    declared = {parameter.name for parameter in model.HYPERPARAMETERS}
    missing = [name for name in RUNTIME_HYPERPARAMETERS if name not in declared]
    if missing:
        raise DefinitionError(
            f"model.py's HYPERPARAMETERS must declare {', '.join(map(repr, missing))}: the TensorFlow runtime "
            f"reads {', '.join(RUNTIME_HYPERPARAMETERS)} to train"
        )


def litert_installed() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


class LiteRTNetwork:
    """An exported network on LiteRT's interpreter: numpy rows (float32) -> numpy answers."""

    def __init__(self, converted: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter

        # The server sets this to each worker's share of the CPUs (server.share_cores).
        threads = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
        count = int(threads) if threads.isdigit() and int(threads) > 0 else None  # 0 or unset: LiteRT chooses
        interpreter = Interpreter(model_content=converted, num_threads=count)
        self._run = interpreter.get_signature_runner("serving_default")
        ((self._input, rows),) = self._run.get_input_details().items()
        ((self._output, answers),) = self._run.get_output_details().items()
        self.num_features = int(rows["shape_signature"][-1])
        # Probabilities (n, K) for a classifier, values (n,) for a regression.
        self.num_classes = int(answers["shape_signature"][-1]) if len(answers["shape_signature"]) == 2 else None
        self._lock = threading.Lock()  # the interpreter's tensors are its own: one call at a time

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._run(**{self._input: np.asarray(rows, dtype=np.float32)})[self._output]


@dataclass(frozen=True)
class Trained:
    """What training leaves for the export: the Keras model, the statistics it standardises with, its serving
    function."""

    network: Any
    stats: Any
    serve: Any


class FrameworkModel:
    def __init__(
        self, serve: Callable[[np.ndarray], np.ndarray], num_features: int, num_classes: int | None, owner: Any
    ):
        self._serve = serve  # rows -> the serving signature's answer: probabilities, or values
        self._num_features = num_features
        self._num_classes = num_classes  # None for regression
        # What owns the variables: what training left (exportable), or the loaded model (kept
        # referenced, or TensorFlow frees the variables `serve` reads).
        self._owner = owner

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, params: Mapping[str, Any], job: TrainingJob
    ) -> FrameworkModel:
        check_hyperparameters()
        from . import network

        trained, stats, serve = network.fit(features, labels, params, job)
        num_classes = int(trained.output_shape[-1]) if network.is_classification() else None
        return cls(network.answers(serve), int(features.shape[1]), num_classes, Trained(trained, stats, serve))

    @property
    def network(self) -> Any:
        """The trained Keras model (standardisation, then model.py's network); None once loaded."""
        return self._owner.network if isinstance(self._owner, Trained) else None

    @property
    def num_features(self) -> int:
        return self._num_features

    @property
    def classes(self) -> np.ndarray | None:
        return None if self._num_classes is None else np.arange(self._num_classes)

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self._num_classes is None:
            return self._serve(features).astype(np.float64)
        return np.argmax(self._serve(features), axis=1).astype(np.int64)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        if self._num_classes is None:
            raise ValueError("a regression model gives numbers, not class probabilities")
        return self._serve(features)

    def save(self, model_dir: Path) -> Path:
        """Export the model atomically: a reader never sees half of it."""
        if self.network is None:
            raise ValueError("a loaded model cannot be exported again; train a model to save one")
        from . import network

        trained = self._owner
        model_dir.mkdir(parents=True, exist_ok=True)
        target = model_dir / MODEL_VERSION
        partial = model_dir / f".{MODEL_VERSION}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        network.export_savedmodel(trained.network, trained.serve, partial)
        if litert_installed():
            self._export_litert(partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        return target

    def _export_litert(self, savedmodel: Path) -> None:
        from . import network

        # Rows spread around the training data's centre: what LiteRT must answer as TensorFlow does.
        stats = self._owner.stats
        spread = np.random.default_rng(0).standard_normal((16, len(stats.mean)))
        probe = (stats.mean + np.sqrt(stats.variance) * spread).astype(np.float32)
        converted = network.litert_model(savedmodel, probe, self._serve(probe))
        if converted is not None:
            (savedmodel / LITERT_FILE).write_bytes(converted)

    @classmethod
    def load(cls, model_dir: Path) -> FrameworkModel:
        versions = sorted((path for path in model_dir.iterdir() if path.name.isdigit()), key=lambda p: int(p.name))
        if not versions:
            raise FileNotFoundError(f"no SavedModel version folder (e.g. {MODEL_VERSION}/) in {model_dir}")
        converted = versions[-1] / LITERT_FILE
        if converted.is_file() and litert_installed():
            try:
                lite = LiteRTNetwork(converted.read_bytes())
            except (RuntimeError, ValueError) as error:  # a damaged file, or one a newer LiteRT wrote
                logger.warning("cannot run %s with LiteRT (%s): answering with TensorFlow", converted, error)
            else:
                return cls(lite, lite.num_features, lite.num_classes, lite)
        from . import network

        return cls(*network.load_savedmodel(versions[-1]))
