"""`make run`: a local control plane with the example tenant and the operator running on it.

Prints `export KUBECONFIG=...` as soon as the API is ready, shows what the operator did, then
follows the operator's log until Ctrl-C (or SIGTERM), and stops everything it started.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tenant_registry.localcluster import BuildError, ControlPlane, StartError
from tenant_registry.localcluster.harness import REPO, OperatorProcess, install


def _show(cp: ControlPlane, title: str, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)}    # {title}")
    out = cp.kubectl(*args, check=False)
    print((out.stdout or out.stderr).rstrip())


def _ready(cp: ControlPlane) -> bool:
    out = cp.kubectl("get", "treg", "acme", "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


LOCK_NAME = "make-run.lock"


def _hold_state_dir(state_dir: Path) -> IO[str] | str:
    """Lock the state directory for this run's lifetime (fcntl; released when the process
    ends, however it ends), then empty it but for the lock. Another run holding it: its pid,
    and nothing here is touched."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(state_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip() or "unknown"
        lock.close()
        return pid
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    for entry in state_dir.iterdir():  # every run starts from a clean cluster
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenant_registry.demo")
    parser.add_argument("--state-dir", type=Path, default=REPO / ".run")
    parser.add_argument(
        "--exit-after",
        type=float,
        default=None,
        help="stop after this many seconds of following the log (for tests)",
    )
    args = parser.parse_args(argv)

    held = _hold_state_dir(args.state_dir)
    if isinstance(held, str):
        print(
            f"make run is already running in this checkout (pid {held}, state in "
            f"{args.state_dir}): stop it first, or pass --state-dir",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cp = ControlPlane(args.state_dir)
    op: OperatorProcess | None = None
    try:
        cp.start()
        print(f"control plane up: {cp.server} (Kubernetes v1.37.2)")
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        install(cp)
        print("applied the CRD, the operator's namespace and RBAC (deploy/) with kubectl")
        op = OperatorProcess(cp).start()
        print(
            f"operator running as ServiceAccount tenant-registry-system/"
            f"tenant-registry-operator (log: {op.log})"
        )
        cp.kubectl("apply", "-f", str(REPO / "examples"))
        print("applied examples/: a credentials Secret, two namespaces, TenantRegistry acme")
        deadline = time.monotonic() + 30
        while not _ready(cp) and time.monotonic() < deadline:
            time.sleep(0.2)
        _show(cp, "the tenant, with counts", "get", "treg", "-o", "wide")
        _show(
            cp,
            "the copies",
            "get",
            "secrets",
            "-A",
            "-l",
            "app.kubernetes.io/managed-by=tenant-registry-operator",
        )
        _show(
            cp,
            "the patched ServiceAccount",
            "get",
            "serviceaccount",
            "default",
            "-n",
            "acme-web",
            "-o",
            'jsonpath={.imagePullSecrets}{"\\n"}',
        )
        _show(
            cp,
            "Events",
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            "involvedObject.kind=TenantRegistry",
        )
        print(
            "\nTry it from another terminal (after the export line above):\n"
            "  kubectl create namespace acme-new     # onboarded within a second\n"
            "  kubectl get treg -w\n"
            "Following the operator's log; Ctrl-C stops the operator and the cluster.\n",
            flush=True,
        )
        _follow(op.log, stop, args.exit_after)
        return 0
    except (BuildError, StartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if op is not None:
            op.stop()
        cp.stop()
        print("stopped the operator and the control plane", flush=True)
        held.close()


def _follow(path: Path, stop: threading.Event, limit: float | None) -> None:
    started = time.monotonic()
    with open(path, errors="replace") as f:
        while not stop.is_set():
            if limit is not None and time.monotonic() - started > limit:
                return
            line = f.readline()
            if line:
                print(line.rstrip(), flush=True)
            else:
                stop.wait(0.2)


if __name__ == "__main__":
    sys.exit(main())
