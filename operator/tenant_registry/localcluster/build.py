"""Build (once per pinned version) and cache the local cluster's binaries.

Two sets, each cached and locked on its own so that building one never invalidates or waits
for the other: the control plane (kube-apiserver, kube-controller-manager, kubectl, etcd) and
the node (kubelet, kube-scheduler), all from the Kubernetes module and version of versions.py.

The cache lives outside the repository, under `$TRO_CACHE_DIR` or
`~/.cache/tenant-registry-operator/`. A build goes into a staging directory that is renamed
into place only after every binary exists and reports the pinned version, under a file lock,
so concurrent runs neither build twice nor see a half-built cache.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tenant_registry.localcluster.versions import (
    BINARIES,
    ETCD_VERSION,
    K8S_VERSION,
    NODE_BINARIES,
)

BUILD_SCRIPT = Path(__file__).with_name("build.sh")


class BuildError(RuntimeError):
    """The binaries could not be built; the message says what to do."""


@dataclass(frozen=True)
class BinarySet:
    """Binaries built together by build.sh, cached in one directory under one lock."""

    name: str  # build.sh's first argument, and the cache's subdirectory
    binaries: tuple[str, ...]
    version_dir: str  # one directory per pinned version
    what: str  # for the first-build message
    cold_minutes: str

    @property
    def dir(self) -> Path:
        return cache_root() / self.name / self.version_dir


CONTROL_PLANE = BinarySet(
    "control-plane",
    BINARIES,
    f"k8s-v{K8S_VERSION}-etcd-v{ETCD_VERSION}",
    f"Kubernetes v{K8S_VERSION} and etcd v{ETCD_VERSION}",
    "about 6 minutes",
)
NODE = BinarySet(
    "node",
    NODE_BINARIES,
    f"k8s-v{K8S_VERSION}",
    f"kubelet and kube-scheduler v{K8S_VERSION}",
    "about 1-2 minutes after the control plane's build, 6 from a cold Go cache",
)


def cache_root() -> Path:
    env = os.environ.get("TRO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tenant-registry-operator"


def bin_dir() -> Path:
    """The control plane's cached binaries."""
    return CONTROL_PLANE.dir


def _complete(path: Path, binaries: tuple[str, ...]) -> bool:
    return all(os.access(path / name, os.X_OK) for name in binaries)


def ensure_binaries(*, quiet: bool = False) -> Path:
    """Return the directory with the control plane's binaries, building them first if needed."""
    return ensure(CONTROL_PLANE, quiet=quiet)


def ensure_node_binaries(*, quiet: bool = False) -> Path:
    """Return the directory with kubelet and kube-scheduler, building them first if needed."""
    return ensure(NODE, quiet=quiet)


def ensure(binary_set: BinarySet, *, quiet: bool = False) -> Path:
    """Return the set's cached directory, building it first if needed (under its lock)."""
    dest = binary_set.dir
    if _complete(dest, binary_set.binaries):
        return dest
    if shutil.which("go") is None:
        raise BuildError(
            "the Go toolchain is not on PATH: install Go >= 1.26 (it builds the local "
            f"{binary_set.name.replace('-', ' ')} from the Go module proxy), then run this again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent run waits here, then finds it built
        if _complete(dest, binary_set.binaries):
            return dest
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
        try:
            _run_build(binary_set, staging, quiet=quiet)
            _verify(binary_set, staging)
            if dest.exists():  # an incomplete leftover from an older layout
                shutil.rmtree(dest)
            staging.chmod(0o755)  # mkdtemp makes it private
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _run_build(binary_set: BinarySet, staging: Path, *, quiet: bool) -> None:
    env = dict(os.environ, K8S_VERSION=K8S_VERSION, ETCD_VERSION=ETCD_VERSION)
    log = staging.parent / "build.log"
    if not quiet:
        print(
            f"building {binary_set.what} from the Go module proxy (first time only, "
            f"{binary_set.cold_minutes} on 2 cores; log: {log})",
            file=sys.stderr,
            flush=True,
        )
    with open(log, "w") as out:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), binary_set.name, str(staging / "bin")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        raise BuildError(
            f"building the {binary_set.name} binaries failed (exit {proc.returncode}); log: "
            f"{log}. Check that the Go module proxy is reachable (GOPROXY) and that ~6 GB of "
            f"disk is free.\n{tail}"
        )
    for name in binary_set.binaries:
        (staging / "bin" / name).rename(staging / name)
    (staging / "bin").rmdir()


def _verify(binary_set: BinarySet, staging: Path) -> None:
    first = binary_set.binaries[0]
    out = subprocess.run(
        [str(staging / first), "--version"], capture_output=True, text=True, check=False
    ).stdout
    if f"v{K8S_VERSION}" not in out:
        raise BuildError(f"{first} reports {out.strip()!r}, expected v{K8S_VERSION}")
