"""requirements.lock (the image's pins) agrees with pyproject.toml's runtime dependencies, and
build-requirements.lock (the build backend of the image's project wheel) with its
[build-system] requires."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCK = (ROOT / "requirements.lock").read_text()
BUILD_LOCK = (ROOT / "build-requirements.lock").read_text()


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: str = LOCK) -> dict[str, str]:
    return {_normal(n): v for n, v in re.findall(r"^([A-Za-z0-9][\w.-]*)==(\S+)", lock, re.M)}


def test_every_runtime_dependency_is_pinned_within_its_bounds() -> None:
    pins = _pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        req = Requirement(dependency)
        assert _normal(req.name) in pins, f"{req.name} is not in requirements.lock: make lock"
        assert req.specifier.contains(pins[_normal(req.name)]), f"{dependency}: make lock"


def test_no_dev_dependency_is_locked() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev = {_normal(Requirement(d).name) for d in project["optional-dependencies"]["dev"]}
    runtime = {_normal(Requirement(d).name) for d in project["dependencies"]}
    # pyyaml is a dev dependency and also the kubernetes client's own.
    assert dev & set(_pins()) - runtime <= {"pyyaml"}


@pytest.mark.parametrize("lock", [LOCK, BUILD_LOCK], ids=["requirements", "build"])
def test_every_pin_has_hashes(lock: str) -> None:
    blocks = re.split(r"^(?=[A-Za-z0-9])", lock, flags=re.M)[1:]
    assert blocks
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_build_backend_is_pinned_within_its_bounds() -> None:
    """pip's build isolation would fetch whatever setuptools is newest, unhashed; the image's
    project wheel is built with this one instead (--no-build-isolation)."""
    pins = _pins(BUILD_LOCK)
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    for requirement in build_system["requires"]:
        req = Requirement(requirement)
        assert _normal(req.name) in pins, f"{req.name} not in build-requirements.lock: make lock"
        assert req.specifier.contains(pins[_normal(req.name)]), f"{requirement}: make lock"
