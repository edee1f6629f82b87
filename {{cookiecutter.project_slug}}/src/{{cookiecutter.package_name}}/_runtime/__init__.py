"""The template's runtime: everything model.py and data.py do not say. `make update` brings the template's changes.

Your files import only these names from here.
"""

from .contract import Table
from .hyperparameters import Hyperparameter

__all__ = ["Hyperparameter", "Table"]
