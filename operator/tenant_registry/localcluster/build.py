"""Build (once per pinned version) and cache the control-plane binaries.

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
from pathlib import Path

from tenant_registry.localcluster.versions import BINARIES, ETCD_VERSION, K8S_VERSION

BUILD_SCRIPT = Path(__file__).with_name("build.sh")


class BuildError(RuntimeError):
    """The binaries could not be built; the message says what to do."""


def cache_root() -> Path:
    env = os.environ.get("TRO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tenant-registry-operator"


def bin_dir(k8s: str = K8S_VERSION, etcd: str = ETCD_VERSION) -> Path:
    return cache_root() / "control-plane" / f"k8s-v{k8s}-etcd-v{etcd}"


def _complete(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in BINARIES)


def ensure_binaries(*, quiet: bool = False) -> Path:
    """Return the directory with the pinned binaries, building them first if needed."""
    dest = bin_dir()
    if _complete(dest):
        return dest
    if shutil.which("go") is None:
        raise BuildError(
            "the Go toolchain is not on PATH: install Go >= 1.26 (it builds the local "
            "control plane from the Go module proxy), then run this again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent run waits here, then finds it built
        if _complete(dest):
            return dest
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
        try:
            _run_build(staging, quiet=quiet)
            _verify(staging)
            if dest.exists():  # an incomplete leftover from an older layout
                shutil.rmtree(dest)
            staging.chmod(0o755)  # mkdtemp makes it private
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _run_build(staging: Path, *, quiet: bool) -> None:
    env = dict(os.environ, K8S_VERSION=K8S_VERSION, ETCD_VERSION=ETCD_VERSION)
    log = staging.parent / "build.log"
    if not quiet:
        print(
            f"building Kubernetes v{K8S_VERSION} and etcd v{ETCD_VERSION} from the Go module "
            f"proxy (first time only, about 6 minutes on 2 cores; log: {log})",
            file=sys.stderr,
            flush=True,
        )
    with open(log, "w") as out:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), str(staging / "bin")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        raise BuildError(
            f"building the control plane failed (exit {proc.returncode}); log: {log}. "
            "Check that the Go module proxy is reachable (GOPROXY) and that ~6 GB of disk is "
            f"free.\n{tail}"
        )
    for name in BINARIES:
        (staging / "bin" / name).rename(staging / name)
    (staging / "bin").rmdir()


def _verify(staging: Path) -> None:
    out = subprocess.run(
        [str(staging / "kube-apiserver"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    if f"v{K8S_VERSION}" not in out:
        raise BuildError(f"kube-apiserver reports {out.strip()!r}, expected v{K8S_VERSION}")
