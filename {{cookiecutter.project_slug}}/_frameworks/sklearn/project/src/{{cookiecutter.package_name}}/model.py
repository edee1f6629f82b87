"""Yours: the model. The template's runtime (`_runtime/`) fits it, saves it, loads it and answers with it.

Change TASK, HYPERPARAMETERS and `build_estimator` to train another scikit-learn estimator; the
contract is written down in `_runtime/contract.py`. For regression, set TASK = "regression" and
return a regressor: training then prints RMSE and MAE, and predictions are numbers.
"""

from typing import Any

from sklearn.tree import DecisionTreeClassifier

from ._runtime import Hyperparameter

TASK = "classification"

HYPERPARAMETERS = (
    Hyperparameter("max_depth", int, 5, "Deepest level of the tree; 0 means no limit.", minimum=0, maximum=32),
    Hyperparameter("min_samples_leaf", int, 1, "Fewest training rows a leaf may hold.", minimum=1, maximum=100),
    Hyperparameter("criterion", str, "gini", "How a split is scored.", choices=("gini", "entropy", "log_loss")),
    Hyperparameter("random_state", int, 0, "Seed, for repeatable trees.", minimum=0),
)


def build_estimator(params: dict[str, Any]) -> DecisionTreeClassifier:
    """An unfitted estimator, configured from the job's hyperparameters (typed, defaults filled in)."""
    return DecisionTreeClassifier(
        max_depth=params["max_depth"] or None,
        min_samples_leaf=params["min_samples_leaf"],
        criterion=params["criterion"],
        random_state=params["random_state"],
    )
