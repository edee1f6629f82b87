"""The image tests' own plumbing for PyTorch's CPU wheel: the index it serves, and how it refuses."""

from __future__ import annotations

import hashlib
import platform
import re
import urllib.request
from pathlib import Path

import pytest

from .standins import STAND_INS, build_derived
from .wheel_index import INDEX_VARIABLE, CpuWheelIndex, NoCpuWheel


def fake_wheel(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"not really a wheel, but served byte for byte")
    return folder / name


def test_the_index_lists_the_cached_wheel_with_its_hash(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(INDEX_VARIABLE, raising=False)
    name = f"torch-9.9.9+cpu-cp311-cp311-manylinux_2_28_{platform.machine()}.whl"
    wheel = fake_wheel(tmp_path / "wheels", name)
    index = CpuWheelIndex(tmp_path / "root", tmp_path / "wheels")
    try:
        url = index.url_for("9.9.9", "3.11")
        assert url == index.url_for("9.9.9", "3.11"), "one server for the whole run"
        page = urllib.request.urlopen(url + "torch/", timeout=10).read().decode()
        href = re.search(r'href="([^"]+)"', page).group(1)
        path, digest = href.split("#sha256=")
        assert "%2Bcpu" in path, "the + of the local version is quoted in the link"
        served = urllib.request.urlopen(url.removesuffix("/simple/") + path, timeout=10).read()
        assert served == wheel.read_bytes()
        assert digest == hashlib.sha256(served).hexdigest()
    finally:
        index.close()


def test_a_missing_cpu_wheel_is_refused_with_what_to_set(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(INDEX_VARIABLE, raising=False)
    index = CpuWheelIndex(tmp_path / "root", tmp_path / "wheels")
    with pytest.raises(NoCpuWheel, match=rf"torch==0\.0\.1\+cpu .*{INDEX_VARIABLE}"):
        index.url_for("0.0.1", "3.11")
    assert not list((tmp_path / "wheels").glob("*.whl"))


def test_a_named_index_is_used_as_given(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(INDEX_VARIABLE, "https://index.example/whl/cpu")
    assert CpuWheelIndex(tmp_path / "root", tmp_path / "wheels").url_for("0.0.1", "3.11") == (
        "https://index.example/whl/cpu"
    )


def test_a_stand_in_is_not_built_without_its_build_arguments():
    """Built without PIP_EXTRA_INDEX_URL, the PyTorch stand-in would cache a CUDA torch under its key."""
    stand_in = next(each for each in STAND_INS if each.build_args)
    with pytest.raises(ValueError, match="PIP_EXTRA_INDEX_URL"):
        build_derived(engine=None, stand_in=stand_in, image="unused", build_args={})
