"""How refusals echo what they were given: after the explanation, and short.

SageMaker keeps the first 1024 characters of a failure reason, and a caller reads the first line of
a 400: an echoed value of thousands of characters must never push the explanation out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SHOWN_VALUE_LIMIT = 60
SHOWN_NAMES_LIMIT = 10


def shown(value: Any, limit: int = SHOWN_VALUE_LIMIT) -> str:
    """A value as a message echoes it: quoted when a string, cut short when long."""
    text = repr(value) if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text):,} characters)"


def listed(names: Iterable[str], limit: int = SHOWN_NAMES_LIMIT) -> str:
    """Names joined for a message, each cut short, at most `limit` of them."""
    names = list(names)
    text = ", ".join(shown(name, 30).strip("'") for name in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")
