"""`make run`: a local control plane with the example tenant and the operator running on it.

Prints `export KUBECONFIG=...` as soon as the API is ready, shows what the operator did, then
follows the operator's log until Ctrl-C (or SIGTERM), and stops everything it started.

With `--node` (`make run NODE=1`, root): also a real node (containerd, kubelet, scheduler,
localcluster/node.py) and a password-protected registry on loopback holding a private image;
the example tenant gets that registry too, and a Pod in `acme-web` pulls the image through
the operator's Secret, while the same Pod in a namespace outside the tenant gets the 401.
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
from typing import IO, Any

from tenant_registry.localcluster import BuildError, ControlPlane, StartError
from tenant_registry.localcluster.controlplane import WORKLOAD_CONTROLLERS
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
    parser.add_argument(
        "--node",
        action="store_true",
        help="also a real node and a private registry: a Pod pulls through the operator (root)",
    )
    args = parser.parse_args(argv)
    if args.node:
        from tenant_registry.localcluster import node as node_mod
        from tenant_registry.localcluster import nodeslot

        lacking = node_mod.missing()
        if lacking:
            print(
                f"make run NODE=1 needs {', '.join(lacking)} (run as root; "
                "scripts/host-packages.sh installs the packages)",
                file=sys.stderr,
            )
            return 1
        nodeslot.sweep()  # a node a killed run left in the state directory: unmount it first

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
    cp = ControlPlane(args.state_dir, extra_controllers=WORKLOAD_CONTROLLERS if args.node else ())
    op: OperatorProcess | None = None
    shown: PullDemo | None = None
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
        if args.node:
            shown = PullDemo(cp, args.state_dir)
            shown.run()
        pull = ""
        if shown is not None:
            pull = (
                f"  kubectl run hello --image={shown.image} -n acme-new    # pulls\n"
                "  kubectl label namespace acme-batch tenant- ; kubectl run hello "
                f"--image={shown.image} -n acme-batch    # 401: not the tenant's any more\n"
            )
        print(
            "\nTry it from another terminal (after the export line above):\n"
            "  kubectl create namespace acme-new     # onboarded within a second\n"
            f"{pull}"
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
        if shown is not None:
            shown.stop()
        if op is not None:
            op.stop()
        cp.stop()
        print("stopped the operator and the control plane", flush=True)
        held.close()


def _example_credentials() -> tuple[str, str]:
    """The username and password of examples/acme.yaml's credentials Secret."""
    import yaml

    for doc in yaml.safe_load_all((REPO / "examples" / "acme.yaml").read_text()):
        if doc and doc.get("kind") == "Secret":
            data = doc["stringData"]
            return str(data["username"]), str(data["password"])
    raise RuntimeError("examples/acme.yaml has no credentials Secret")


class PullDemo:
    """The node part of `make run NODE=1`: a registry, a private image, Pods that pull it."""

    def __init__(self, cp: ControlPlane, state_dir: Path) -> None:
        from tenant_registry.localcluster.node import Node
        from tenant_registry.localcluster.registry import Registry

        self.cp = cp
        self.node = Node(cp, state_dir / "node")
        user, password = _example_credentials()  # the registry accepts the example's Secret
        self.registry = Registry(state_dir / "registry", user=user, password=password)
        self.image = ""

    def run(self) -> None:
        from tenant_registry.localcluster import nodeimages

        started = time.monotonic()
        self.node.start()
        print(
            f"\nnode tro-node up: containerd, kubelet and kube-scheduler v1.37.2 "
            f"({time.monotonic() - started:.1f} s; logs: {self.node.logs_dir})"
        )
        self.registry.start()
        self.node.allow_plain_http(self.registry.host)
        self.image = image = self.registry.push(nodeimages.ensure(nodeimages.APP), "acme/hello:v1")
        print(
            f"registry {self.registry.host} (docker-registry, htpasswd, user "
            f"{self.registry.user} only) holds the private image {image}"
        )
        # Plain HTTP on loopback, named without a scheme (as the node's containerd knows it):
        # a check would speak https to it, so it is not checked.
        server = {
            "server": self.registry.host,
            "credentialsRef": {"name": "acme-registry"},
            "verify": False,
        }
        patch = json.dumps([{"op": "add", "path": "/spec/registries/-", "value": server}])
        print(f"\n$ kubectl patch treg acme --type=json -p '{patch}'")
        self.cp.kubectl("patch", "treg", "acme", "--type=json", "-p", patch)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.registry.host not in self._copy("acme-web"):
            time.sleep(0.2)
        for namespace in ("acme-web", "default"):
            print(f"$ kubectl run hello --image={image} -n {namespace}")
            self.cp.kubectl("run", "hello", f"--image={image}", "-n", namespace, "--", namespace)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            self._waiting("acme-web") == ""
            and self._waiting("default") in ("ErrImagePull", "ImagePullBackOff")
        ):
            time.sleep(0.2)
        _show(
            self.cp,
            "acme-web's Pod pulled through the operator's Secret; default is no tenant's",
            "get",
            "pods",
            "-A",
            "--field-selector=metadata.name=hello",
        )
        _show(
            self.cp,
            "the kubelet's Events",
            "get",
            "events",
            "-n",
            "acme-web",
            "--field-selector=involvedObject.name=hello",
        )
        print(f"\n$ cat {self.node.dir}/pod-logs/acme-web_hello_*/hello/0.log    # its output")
        print(self.node.container_log("acme-web", "hello", "hello").rstrip())
        print(f"\nin default, the registry's answer: {self._message('default')}")

    def _copy(self, namespace: str) -> str:
        out = self.cp.kubectl(
            "get",
            "secret",
            "acme-pull",
            "-n",
            namespace,
            "-o",
            'go-template={{index .data ".dockerconfigjson" | base64decode}}',
            check=False,
        )
        return out.stdout if out.returncode == 0 else ""

    def _container_state(self, namespace: str) -> dict[str, Any]:
        out = self.cp.kubectl(
            "get",
            "pod",
            "hello",
            "-n",
            namespace,
            "-o",
            "jsonpath={.status.containerStatuses[0].state}",
            check=False,
        )
        try:
            return dict(json.loads(out.stdout)) if out.returncode == 0 and out.stdout else {}
        except ValueError:
            return {}

    def _waiting(self, namespace: str) -> str:
        """ "" when running, else why it waits ("pending" before the kubelet said)."""
        state = self._container_state(namespace)
        if "running" in state:
            return ""
        return str((state.get("waiting") or {}).get("reason") or "pending")

    def _message(self, namespace: str) -> str:
        waiting = self._container_state(namespace).get("waiting") or {}
        return f"{waiting.get('reason', '?')}: {waiting.get('message', '')}"

    def stop(self) -> None:
        self.node.stop()
        self.registry.stop()
        print("stopped the node and the registry", flush=True)


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
