"""The template's runtime: everything model.py and data.py do not say. A template update replaces it.

Your files import only these names from here.
"""

from .contract import Table
from .hyperparameters import Hyperparameter

__all__ = ["Hyperparameter", "Table"]
