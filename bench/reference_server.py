"""The reference stack: a server built the way AWS's scikit-learn BYOC example builds one.

A Flask app under gunicorn sync workers; each worker loads the model lazily on first use;
each request body goes through `pandas.read_csv` (or, for the JSON payloads this benchmark
also sends, `pandas.DataFrame` of the decoded rows), the model predicts on the DataFrame,
and the answer is written back with pandas. Unlike the example, it does not print a log
line per request, which would only slow it down. Run it as
`gunicorn -k sync -w N -b 127.0.0.1:PORT reference_server:app` with MODEL_DIR set.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import flask
import joblib
import pandas as pd

MODEL_DIR = Path(os.environ.get("MODEL_DIR", "/opt/ml/model"))


class ScoringService:
    model: Any = None

    @classmethod
    def get_model(cls) -> Any:
        if cls.model is None:
            cls.model = joblib.load(MODEL_DIR / "model.joblib")
        return cls.model

    @classmethod
    def predict(cls, frame: pd.DataFrame) -> Any:
        return cls.get_model().predict(frame)


app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping() -> flask.Response:
    healthy = ScoringService.get_model() is not None
    return flask.Response(response="\n", status=200 if healthy else 404, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def invocations() -> flask.Response:
    if flask.request.content_type == "text/csv":
        frame = pd.read_csv(io.StringIO(flask.request.data.decode("utf-8")), header=None)
    elif flask.request.content_type == "application/json":
        frame = pd.DataFrame(json.loads(flask.request.data)["instances"])
    else:
        return flask.Response(response="This predictor supports CSV or JSON data", status=415, mimetype="text/plain")
    predictions = ScoringService.predict(frame)
    if flask.request.headers.get("Accept") == "application/json":
        return flask.Response(response=json.dumps({"predictions": predictions.tolist()}), mimetype="application/json")
    out = io.StringIO()
    pd.DataFrame({"results": predictions}).to_csv(out, header=False, index=False)
    return flask.Response(response=out.getvalue(), status=200, mimetype="text/csv")
