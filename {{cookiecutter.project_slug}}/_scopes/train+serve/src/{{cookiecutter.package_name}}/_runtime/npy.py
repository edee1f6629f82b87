"""NumPy's .npy format, read without `numpy.load` and so without unpickling anything a request sends.

The header is read first, then the data only when the dtype is plain numbers and the body holds exactly
the bytes the header's shape needs (so a small body claiming a huge shape allocates nothing). Every
refusal is a NotNumbers whose message is written for the caller.
"""

from __future__ import annotations

import io
import math

import numpy as np
from numpy.lib import format as npy_format

# .npy bodies hold integers or floats; not booleans, complex numbers, text, dates, objects or records.
NUMBER_KINDS = "iuf"
KIND_NAMES = {
    "O": "Python objects",
    "b": "booleans",
    "c": "complex numbers",
    "U": "text",
    "S": "bytes",
    "M": "dates",
    "m": "time spans",
    "V": "records of named fields",
}
HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
NOT_NPY = "the body is not a .npy array: send what numpy.save writes for an array of numbers"


class NotNumbers(ValueError):
    """A body that is not a .npy array of numbers."""


def read(body: bytes | bytearray) -> np.ndarray:
    """A .npy body's array as float64, in the shape it was saved in."""
    stream = io.BytesIO(body)
    try:
        version = npy_format.read_magic(stream)
        if version not in HEADER_READERS:
            raise NotNumbers(f"{NOT_NPY} (format version 1.0 or 2.0; this is {version[0]}.{version[1]})")
        shape, fortran_order, dtype = HEADER_READERS[version](stream)
    except NotNumbers:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError):
        raise NotNumbers(NOT_NPY) from None
    if dtype.kind not in NUMBER_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        held = KIND_NAMES.get(dtype.kind, f"values of type {dtype.name}")
        raise NotNumbers(f"the .npy array holds {held}, not numbers: send an array of integers or floats")
    if any(size < 0 for size in shape):
        raise NotNumbers(f"{NOT_NPY} (its header's shape {shape} is not an array's)")
    data = memoryview(body)[stream.tell() :]
    needed = math.prod(shape) * dtype.itemsize
    if len(data) != needed:
        raise NotNumbers(
            f"the .npy body holds {len(data):,} bytes of data, but its header's shape {shape} of {dtype.name} "
            f"needs {needed:,}: is the body cut short?"
        )
    values = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
    return values.reshape(shape, order="F" if fortran_order else "C").astype(np.float64)


def to_bytes(values: np.ndarray) -> bytes:
    """An array as `numpy.save` writes it: what the SDK's NumpyDeserializer reads."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values), allow_pickle=False)
    return buffer.getvalue()
