"""X-Amzn-SageMaker-Custom-Attributes: the request's, checked, for the handlers to read; the answer's, if set.

The handlers read the request's with `request_custom_attributes.get()` (None without one) while they answer
it; the answer carries the header only when a handler sets `response_custom_attributes`.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from . import inference

logger = logging.getLogger(__name__)

HEADER = b"x-amzn-sagemaker-custom-attributes"
MAX_LENGTH = 1024
request_custom_attributes: ContextVar[str | None] = ContextVar("request_custom_attributes", default=None)
response_custom_attributes: ContextVar[str | None] = ContextVar("response_custom_attributes", default=None)


def check(value: str | None) -> str | None:
    """X-Amzn-SageMaker-Custom-Attributes as SageMaker allows it: at most 1024 visible ASCII characters."""
    if value is None:
        return None
    if not (value.isascii() and value.isprintable()):
        problem = "characters that are not visible ASCII"
    elif len(value) > MAX_LENGTH:
        problem = f"{len(value)} characters"
    else:
        return value
    raise inference.InferenceError(
        f"X-Amzn-SageMaker-Custom-Attributes must be at most {MAX_LENGTH} visible ASCII characters; "
        f"this one has {problem}"
    )


def answer_headers() -> list[tuple[bytes, bytes]]:
    """The custom attributes a handler set for the answer (`response_custom_attributes`), when valid."""
    value = response_custom_attributes.get()
    if value is None:
        return []
    try:
        return [(HEADER, check(value).encode("ascii"))]
    except inference.InferenceError as error:
        logger.error("the answer goes without the custom attributes a handler set: %s", error)
        return []
