"""Yours: the columns your model learns from, and the sample data set.

Training reads every `*.csv` file of a channel (`train`, and `validation` when the job has one).
A file may start with a header row naming its columns, in any order; a file without one holds the
label, then the features in the order below (SageMaker's built-in algorithms' convention). The
schema is saved with the model, and the rows it is asked to predict are checked against it.

To train on your own table: list its feature columns and their types (`float` or `int`) in
FEATURES, name its label column in LABEL, and make `sample_data()` return a small part of it
(the tests and `python -m <package> sample-data` use it). For classification the label is a class
index (an integer from 0); for regression any number (model.py's TASK says which).
"""

import numpy as np

from ._runtime import Table

FEATURES = {
    "sepal_length": float,
    "sepal_width": float,
    "petal_length": float,
    "petal_width": float,
}
LABEL = "species"  # 0 setosa, 1 versicolor, 2 virginica


def sample_data() -> Table:
    """Fisher's iris data as bundled with scikit-learn: 150 rows, 3 classes."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    return Table((*FEATURES, LABEL), np.column_stack([iris.data, iris.target]))
