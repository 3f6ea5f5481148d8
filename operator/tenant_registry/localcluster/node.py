"""A real Kubernetes node next to the local control plane: containerd, kubelet, kube-scheduler.

For the end-to-end pull tests and `make run NODE=1`. Root only (the kubelet and containerd
manage cgroups, mounts and network namespaces). Two halves:

- `Node`, the handle the tests and the demo use: it starts the keeper, waits until the Node
  is Ready and schedulable, imports images into containerd, trusts plain-HTTP registries on
  loopback, reads container output from the kubelet's pod log directory (never `kubectl
  logs`: the API server is never asked to reach the kubelet), and stops the node.
- the keeper (`python -m tenant_registry.localcluster.node keep SPEC`), a process of its own
  session that owns one node: it starts containerd, the kubelet and the scheduler, and tears
  everything down when told to stop (SIGTERM/SIGINT) or when its parent dies
  (PR_SET_PDEATHSIG delivers SIGTERM), so a killed test run or Ctrl-C leaves nothing behind.

What the node owns on the machine (its slot: a cgroup, a bridge, a runtime directory) and
its teardown are in nodeslot.py; its configuration files in nodeconfig.py.

The gotchas of this kind of machine, each handled here or in nodeconfig.py: the kubelet
refuses cgroup v1 unless `failCgroupV1: false`; containerd 1.6 lacks the CRI RuntimeConfig
call, so the kubelet's `cgroupDriver: cgroupfs` is what counts; root without
CAP_SYS_RESOURCE cannot lower oom_score_adj, so containerd runs with
`restrict_oom_score_adj = true`; the kubelet registers with the taint
node.kubernetes.io/not-ready:NoSchedule, which only the node-lifecycle controller (not run by
the local control plane) removes, so the keeper removes it once the Node is Ready; the
kubelet sets six kernel sysctls (kernel.panic among them), so the keeper records them first
and the last node to stop restores them; `makeIPTablesUtilChains: false` keeps the kubelet
out of the machine's iptables.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from tenant_registry.localcluster import nodeimages
from tenant_registry.localcluster import pki as pki_mod
from tenant_registry.localcluster.build import ensure_node_binaries
from tenant_registry.localcluster.controlplane import ControlPlane, _free_port
from tenant_registry.localcluster.nodeconfig import (
    CNI_BIN_DIR,
    Spec,
    cni_config,
    containerd_config,
    kubeconfig_text,
    kubelet_config,
)
from tenant_registry.localcluster.nodeslot import (
    SLOTS,
    Slot,
    cgroup_pids,
    join_cgroup,
    machine_lock,
    make_cgroups,
    save_kernel_tunables,
    slot_lock,
    slot_record,
    sweep,
    teardown,
    teardown_recorded,
    tracking_mount,
    try_lock,
)

KEEPER = (sys.executable, "-m", "tenant_registry.localcluster.node", "keep")
TOOLS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "podman", "gcc", "htpasswd")


class NodeError(RuntimeError):
    """The node could not start; the message says why and where the logs are."""


def missing() -> list[str]:
    """What this machine lacks to run a node (empty when it can)."""
    lacking = [t for t in TOOLS if shutil.which(t) is None]
    if not Path(CNI_BIN_DIR, "bridge").exists():
        lacking.append("containernetworking-plugins")
    if os.geteuid() != 0:
        lacking.append("root")
    return lacking


# -- the keeper ----------------------------------------------------------------------------
class Keeper:
    """Runs one node until told to stop, then tears it down (see the module docstring)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.state = Path(spec.state_dir)
        self.logs = self.state / "logs"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()
        self.slot: Slot | None = None
        self._lock: IO[str] | None = None
        self._join = ""  # the slot's cgroup.procs that every child joins
        self.ready_seconds = 0.0

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stopping.set())
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self._claim_slot()
            self._start()
        except Exception as e:
            (self.state / "error.txt").write_text(f"{e}\n")
            self._teardown()
            return 1
        self._write_ready()
        code = 0
        while not self.stopping.wait(0.5):
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                (self.state / "error.txt").write_text(
                    f"{', '.join(dead)} exited; logs: {self.logs}\n"
                )
                code = 1
                break
        self._teardown()
        return code

    # -- start -----------------------------------------------------------------------------
    def _claim_slot(self) -> None:
        sweep()
        with machine_lock():
            for i in range(SLOTS):
                held = try_lock(slot_lock(i))
                if held is None:
                    continue
                if slot_record(i).exists():  # a keeper that was SIGKILLed
                    teardown_recorded(i)
                self._lock, self.slot = held, Slot(i, str(self.state))
                slot_record(i).write_text(
                    json.dumps(
                        {
                            "state_dir": str(self.state),
                            "keep_logs": self.spec.keep_logs,
                            "pid": os.getpid(),
                        }
                    )
                )
                save_kernel_tunables()
                return
        raise NodeError(f"all {SLOTS} node slots are in use on this machine")

    def _start(self) -> None:
        slot = self.slot
        assert slot is not None
        spec = self.spec
        for sub in ("cni", "certs.d", "pki", "kubelet", "volume-plugins", "pod-logs"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        slot.run_dir.mkdir(parents=True, exist_ok=True)
        make_cgroups(slot)
        self._join = str(tracking_mount() / slot.cgroup.lstrip("/") / "node" / "cgroup.procs")
        ca = str(Path(spec.ca_dir) / "ca.crt")
        (self.state / "containerd.toml").write_text(containerd_config(slot, spec.pause_image))
        (self.state / "cni" / "10-bridge.conflist").write_text(cni_config(slot))
        (self.state / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        pki = self.state / "pki"
        pki_mod.issue(
            Path(spec.ca_dir),
            pki,
            "kubelet-client",
            cn=f"system:node:{spec.name}",
            org="system:nodes",
            server=False,
        )
        pki_mod.issue(Path(spec.ca_dir), pki, "kubelet-serving", cn=spec.name, server=True)
        kubeconfig = self.state / "kubelet.kubeconfig"
        kubeconfig.write_text(
            kubeconfig_text(spec.server, ca, pki / "kubelet-client.crt", pki / "kubelet-client.key")
        )
        kubeconfig.chmod(0o600)
        config = kubelet_config(slot, ca=ca, port=_free_port(), healthz_port=_free_port())
        (self.state / "kubelet.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML

        started = time.monotonic()
        self._spawn("containerd", ["containerd", "--config", str(self.state / "containerd.toml")])
        self._wait("containerd", slot.socket.exists, 30)
        self._ctr("images", "import", spec.pause_archive)
        self._spawn(
            "kubelet",
            [
                str(Path(spec.node_bin) / "kubelet"),
                f"--config={self.state / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.state / 'kubelet'}",
                f"--cert-dir={pki}",
                f"--hostname-override={spec.name}",
                "--v=2",
            ],
        )
        self._wait("kubelet", self._node_ready, 120)
        # Only the node-lifecycle controller would lift it; it is not among the controllers.
        self._kubectl("taint", "node", spec.name, "node.kubernetes.io/not-ready:NoSchedule-")
        self._spawn(
            "kube-scheduler",
            [
                str(Path(spec.node_bin) / "kube-scheduler"),
                f"--kubeconfig={spec.admin_kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
            ],
        )
        self.ready_seconds = time.monotonic() - started

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        join = self._join
        try:
            self.procs[name] = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=lambda: join_cgroup(join),
                env={**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", "2")},
            )
        finally:
            log.close()

    def _wait(self, name: str, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stopping.is_set():
                raise NodeError("stopped while starting")
            proc = self.procs[name]
            if proc.poll() is not None:
                raise NodeError(f"{name} exited with {proc.returncode}; {self._tail(name)}")
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                if ready():
                    return
            time.sleep(0.1)
        raise NodeError(f"{name} was not ready within {timeout:.0f} s; {self._tail(name)}")

    def _tail(self, name: str) -> str:
        log = self.logs / f"{name}.log"
        lines = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        return f"log: {log}\n" + "\n".join(lines)

    def _node_ready(self) -> bool:
        out = self._kubectl(
            "get",
            "node",
            self.spec.name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return out.strip() == "True"

    def _kubectl(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            [self.spec.kubectl, f"--kubeconfig={self.spec.admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def _ctr(self, *args: str) -> None:
        assert self.slot is not None
        ctr(self.slot.socket, *args)

    def _write_ready(self) -> None:
        assert self.slot is not None
        info = {**asdict(self.slot), "seconds": round(self.ready_seconds, 2), "pid": os.getpid()}
        tmp = self.state / ".ready.json"
        tmp.write_text(json.dumps(info))
        tmp.rename(self.state / "ready.json")

    # -- stop ------------------------------------------------------------------------------
    def _teardown(self) -> None:
        if self.slot is None:
            return
        with machine_lock():
            problems = teardown(self.slot, keep_logs=self.spec.keep_logs)
            for proc in self.procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            if problems:
                print("node teardown: " + "; ".join(problems), file=sys.stderr, flush=True)
            else:
                slot_record(self.slot.index).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()


def ctr(socket: Path, *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(
        ["ctr", "--address", str(socket), "--namespace", "k8s.io", *args],
        input=input,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise NodeError(f"ctr {' '.join(args[:2])}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


def _keeper_child() -> None:  # pragma: no cover - runs between fork and exec
    # The keeper outlives a killed parent only to tear the node down: SIGTERM, not SIGKILL.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PDEATHSIG


# -- the handle ----------------------------------------------------------------------------
class Node:
    """One node of the control plane `cp`. Use as a context manager, or start() and stop()."""

    def __init__(self, cp: ControlPlane, state_dir: Path | None = None, name: str = "tro-node"):
        self.cp = cp
        self.name = name
        self._own_dir = state_dir is None
        self.dir = Path(state_dir or tempfile.mkdtemp(prefix="tro-node-"))
        self.keeper: subprocess.Popen[bytes] | None = None
        self.slot: Slot | None = None
        self.timings: dict[str, float] = {}

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> Node:
        lacking = missing()
        if lacking:
            raise NodeError(f"this machine lacks {', '.join(lacking)} (scripts/host-packages.sh)")
        started = time.monotonic()
        node_bin = ensure_node_binaries()
        self.timings["binaries"] = time.monotonic() - started
        mark = time.monotonic()
        pause = nodeimages.ensure(nodeimages.PAUSE)
        archive = nodeimages.save(pause, self.dir / "images" / "pause.tar")
        self.timings["pause image"] = time.monotonic() - mark
        spec = Spec(
            name=self.name,
            state_dir=str(self.dir),
            server=self.cp.server,
            ca_dir=str(self.cp.dir / "pki"),
            admin_kubeconfig=str(self.cp.kubeconfig),
            kubectl=self.cp.binary("kubectl"),
            node_bin=str(node_bin),
            pause_archive=str(archive),
            pause_image=pause,
            keep_logs=bool(os.environ.get("TRO_KEEP_STATE")),
        )
        (self.dir / "spec.json").write_text(json.dumps(asdict(spec)))
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        mark = time.monotonic()
        with open(self.dir / "logs" / "keeper.log", "ab") as out:
            self.keeper = subprocess.Popen(
                [*KEEPER, str(self.dir / "spec.json")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_keeper_child,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops the node in order
            )
        ready = self.dir / "ready.json"
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.keeper.poll() is not None or time.monotonic() > deadline:
                error = self.dir / "error.txt"
                why = error.read_text().strip() if error.exists() else "no ready report"
                self.stop()
                raise NodeError(f"the node did not start: {why}")
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        self.slot = Slot(int(info["index"]), str(info["state_dir"]))
        self.timings["node ready"] = time.monotonic() - mark
        return self

    def stop(self, timeout: float = 60) -> None:
        """Stop the keeper (it tears the node down), then sweep what a dead one left."""
        if self.keeper is not None and self.keeper.poll() is None:
            self.keeper.send_signal(signal.SIGTERM)
            try:
                self.keeper.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.keeper.kill()
                self.keeper.wait()
        sweep()
        if self._own_dir and not os.environ.get("TRO_KEEP_STATE"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- use -------------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        assert self.slot is not None, "start() first"
        return self.slot.socket

    def ctr(self, *args: str) -> str:
        return ctr(self.socket, *args)

    def import_image(self, tag: str) -> float:
        """Import a podman image into the node's containerd (for `imagePullPolicy: Never`);
        returns the seconds it took."""
        started = time.monotonic()
        archive = nodeimages.save(tag, self.dir / "images" / f"{_safe(tag)}.tar")
        try:
            self.ctr("images", "import", str(archive))
        finally:
            archive.unlink(missing_ok=True)
        return time.monotonic() - started

    def images(self) -> list[str]:
        return self.ctr("images", "list", "--quiet").split()

    def allow_plain_http(self, host: str) -> None:
        """Let containerd pull from `host` (a loopback registry) over plain HTTP."""
        directory = self.dir / "certs.d" / host
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts.toml").write_text(
            f'server = "http://{host}"\n'
            f'[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n'
        )

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """What the container wrote (stdout and stderr, every restart), from the kubelet's pod
        log directory."""
        text = []
        for path in sorted(self.dir.glob(f"pod-logs/{namespace}_{pod}_*/{container}/*.log")):
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split(" ", 3)  # CRI format: time stream P|F message
                if len(parts) == 4:
                    text.append(parts[3] + ("\n" if parts[2] == "F" else ""))
        return "".join(text)

    def pids(self) -> set[int]:
        """Every process of this node (the keeper's children, shims, containers)."""
        assert self.slot is not None
        return cgroup_pids(tracking_mount(), self.slot.cgroup)


def _safe(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) == 2 and args[0] == "keep":
        spec = Spec(**json.loads(Path(args[1]).read_text()))
        return Keeper(spec).run()
    if args == ["sweep"]:
        print(f"cleaned slots: {sweep()}")
        return 0
    print("usage: python -m tenant_registry.localcluster.node keep SPEC | sweep", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
