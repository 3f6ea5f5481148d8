"""requirements.lock (the image's pins) agrees with pyproject.toml's runtime dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCK = (ROOT / "requirements.lock").read_text()


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    return {_normal(n): v for n, v in re.findall(r"^([A-Za-z0-9][\w.-]*)==(\S+)", LOCK, re.M)}


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


def test_every_pin_has_hashes() -> None:
    blocks = re.split(r"^(?=[A-Za-z0-9])", LOCK, flags=re.M)[1:]
    assert blocks
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
