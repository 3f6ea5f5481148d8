"""What one local node owns on the machine, and how all of it is removed again.

A node (localcluster/node.py) holds a *slot*, 0-7: an flock its keeper holds for its
lifetime (released however the keeper ends). The slot names everything the node has outside
its own state directory: the cgroup `/tro-node<N>` in every hierarchy (the kubelet's
`cgroupRoot`; the keeper's children join `/tro-node<N>/node`, so containerd's shims and the
containers land in the slot's cgroup too), the bridge `tro-node<N>` with the Pods' subnet
10.217.<N>.0/24, and the runtime directory /run/tenant-registry-operator/node<N>/ (sockets,
containerd's state, the Pods' network namespaces, runc's state).

`teardown()` works from the slot alone: every process in the slot's cgroup killed (the
kubelet and the scheduler first), every mount under the node's directories unmounted (the
kubelet's self bind mount of its root dir, the containers' root filesystems, volumes,
network namespaces), the bridge deleted, the cgroups removed, the shims' sockets and the
kubelet's symlinks in /var/log/containers removed, and, when it was the last node on the
machine, the kernel sysctls the kubelet changed restored. A slot whose keeper was SIGKILLed
keeps its record; the next keeper, or `sweep()`, tears it down.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

RUN_ROOT = Path("/run/tenant-registry-operator")
SLOTS = 8
CONTAINER_LOGS_DIR = Path("/var/log/containers")  # the kubelet's, not configurable
# Written by the kubelet unless protectKernelDefaults (which would refuse to start instead).
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


class SlotError(RuntimeError):
    """No slot is free, or the machine has no cgroup hierarchy to track a node by."""


@dataclass(frozen=True)
class Slot:
    index: int
    state_dir: str  # the node's files (kubelet root, containerd root, logs, configs)

    @property
    def name(self) -> str:
        return f"tro-node{self.index}"

    @property
    def bridge(self) -> str:
        return self.name  # at most 15 characters

    @property
    def subnet(self) -> str:
        return f"10.217.{self.index}.0/24"

    @property
    def cgroup(self) -> str:
        return f"/{self.name}"

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / f"node{self.index}"

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def pod_logs(self) -> Path:
        return Path(self.state_dir) / "pod-logs"


def slot_lock(index: int) -> Path:
    return RUN_ROOT / "slots" / f"{index}.lock"


def slot_record(index: int) -> Path:
    return RUN_ROOT / "slots" / f"{index}.json"


def try_lock(path: Path) -> IO[str] | None:
    """The file, flock-ed by us (held until closed or the process ends), or None if taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - held by the caller
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Serialises slot hand-outs and the last-node-out decisions of every keeper."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    with open(RUN_ROOT / "nodes.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def active_slots(exclude: int) -> list[int]:
    """The slots other than `exclude` whose lock someone holds (a keeper, or a sweep looking)."""
    active = []
    for i in range(SLOTS):
        if i == exclude:
            continue
        held = try_lock(slot_lock(i))
        if held is None:
            active.append(i)
        else:
            held.close()
    return active


def sweep() -> list[int]:
    """Tear down every slot whose keeper is gone but left its record (it was SIGKILLed);
    returns the slots cleaned."""
    cleaned: list[int] = []
    if not RUN_ROOT.exists():
        return cleaned
    for i in range(SLOTS):
        if not slot_record(i).exists():
            continue
        held = try_lock(slot_lock(i))
        if held is None:
            continue  # its keeper is alive
        try:
            with machine_lock():
                teardown_recorded(i)
        finally:
            held.close()
        cleaned.append(i)
    return cleaned


def teardown_recorded(index: int) -> None:
    """Tear down what the slot's record names; the caller holds the slot's lock."""
    record = slot_record(index)
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        data = json.loads(record.read_text())
        teardown(Slot(index, data["state_dir"]), keep_logs=bool(data.get("keep_logs")))
    record.unlink(missing_ok=True)


# -- cgroups -------------------------------------------------------------------------------
def cgroup_mounts() -> list[tuple[Path, list[str]]]:
    """(mount point, options) of every cgroup hierarchy mounted at its root; a cgroup v2
    one has the option "cgroup2"."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2") or fields[3] != "/":
            continue
        options = tail[2].split(",") + (["cgroup2"] if tail[0] == "cgroup2" else [])
        found.append((Path(_unescape(fields[4])), options))
    return found


def tracking_mount() -> Path:
    """The hierarchy whose cgroup.procs lists every process of a node: v1 `pids`, else v2."""
    mounts = cgroup_mounts()
    for wanted in ("pids", "cgroup2"):
        for path, options in mounts:
            if wanted in options:
                return path
    raise SlotError("no pids cgroup hierarchy found")


def make_cgroups(slot: Slot) -> None:
    for mount, options in cgroup_mounts():
        for sub in (slot.cgroup, f"{slot.cgroup}/node"):
            path = mount / sub.lstrip("/")
            path.mkdir(exist_ok=True)
            if "cpuset" in options:  # a v1 cpuset child starts with no CPUs or memory nodes
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (path / f).read_text().strip():
                        (path / f).write_text((path.parent / f).read_text())


def cgroup_pids(mount: Path, cgroup: str) -> set[int]:
    root = mount / cgroup.lstrip("/")
    pids: set[int] = set()
    if not root.exists():
        return pids
    for directory, _, files in os.walk(root):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
    return pids


def _remove_cgroups(slot: Slot) -> None:
    for mount, _ in cgroup_mounts():
        root = mount / slot.cgroup.lstrip("/")
        if not root.exists():
            continue
        for _ in range(50):
            for directory, _, _ in os.walk(root, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            if not root.exists():
                break
            time.sleep(0.1)


def join_cgroup(procs: str) -> None:  # pragma: no cover - runs between fork and exec
    with contextlib.suppress(OSError):
        Path(procs).write_text(str(os.getpid()))
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PDEATHSIG


# -- mounts --------------------------------------------------------------------------------
def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def mounts_under(roots: list[Path]) -> list[str]:
    prefixes = [str(r.resolve()).rstrip("/") + "/" for r in roots if r.exists()]
    prefixes += [str(r).rstrip("/") + "/" for r in roots]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if any(point.startswith(p) or point + "/" == p for p in prefixes):
            points.append(point)
    return points


def _unmount_all(roots: list[Path]) -> list[str]:
    """Lazily unmount everything under `roots`, deepest first; returns what is left."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for _ in range(20):
        points = mounts_under(roots)
        if not points:
            return []
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            libc.umount2(point.encode(), 2)  # MNT_DETACH
    return mounts_under(roots)


# -- teardown ------------------------------------------------------------------------------
def teardown(slot: Slot, *, keep_logs: bool = False) -> list[str]:
    """Remove everything of the slot's node from the machine; returns what could not be."""
    problems: list[str] = []
    tracking = tracking_mount()
    # The kubelet and the scheduler first, so nothing restarts containers meanwhile; then
    # everything left in the cgroup: containerd, its shims (re-parented to init, so no parent
    # would stop them) and every container.
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        pids = cgroup_pids(tracking, slot.cgroup) - {os.getpid()}
        if sig == signal.SIGTERM:
            pids = {p for p in pids if _comm(p) in ("kubelet", "kube-scheduler")}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            left = cgroup_pids(tracking, slot.cgroup) - {os.getpid()}
            if sig == signal.SIGTERM:
                left &= pids
            elif left:  # new ones may have been forked meanwhile
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if not left:
                break
            time.sleep(0.05)
    left = cgroup_pids(tracking, slot.cgroup) - {os.getpid()}
    if left:
        problems.append(f"processes still running in {slot.cgroup}: {sorted(left)}")
    state = Path(slot.state_dir)
    remaining = _unmount_all([state, slot.run_dir])
    if remaining:
        problems.append(f"still mounted: {remaining}")
    if Path("/sys/class/net", slot.bridge).exists():
        subprocess.run(["ip", "link", "delete", slot.bridge], capture_output=True, check=False)
        if Path("/sys/class/net", slot.bridge).exists():
            problems.append(f"bridge {slot.bridge} still there")
    _remove_cgroups(slot)
    _remove_shim_sockets(slot)
    _remove_container_log_links(slot)
    if not active_slots(exclude=slot.index):
        _restore_kernel_tunables()
        with contextlib.suppress(OSError):
            CONTAINER_LOGS_DIR.rmdir()  # only if empty: the kubelet made it
    if not remaining:
        shutil.rmtree(slot.run_dir, ignore_errors=True)
        if keep_logs:
            for entry in state.iterdir() if state.exists() else []:
                if entry.name not in ("logs", "pod-logs"):
                    _remove(entry)
        else:
            shutil.rmtree(state, ignore_errors=True)
    return problems


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _remove_shim_sockets(slot: Slot) -> None:
    """containerd 1.6 puts each shim's socket in /run/containerd/s/, named by a hash of its
    own address, namespace and task id; a killed shim leaves it there."""
    tasks = slot.run_dir / "containerd" / "io.containerd.runtime.v2.task"
    shared = Path("/run/containerd/s")
    if not tasks.exists() or not shared.exists():
        return
    for namespace in tasks.iterdir():
        for task in namespace.iterdir():
            key = os.path.join(str(slot.socket), namespace.name, task.name)
            (shared / hashlib.sha256(key.encode()).hexdigest()).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        shared.rmdir()
        shared.parent.rmdir()


def _remove_container_log_links(slot: Slot) -> None:
    if not CONTAINER_LOGS_DIR.exists():
        return
    ours = str(slot.pod_logs)
    for link in CONTAINER_LOGS_DIR.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(ours):
                link.unlink()


def save_kernel_tunables() -> None:
    saved = RUN_ROOT / "kernel-tunables.json"
    if saved.exists():
        return  # another node recorded the machine's own values first
    values = {k: Path("/proc/sys", k).read_text().strip() for k in KERNEL_TUNABLES}
    saved.write_text(json.dumps(values))


def _restore_kernel_tunables() -> None:
    saved = RUN_ROOT / "kernel-tunables.json"
    with contextlib.suppress(FileNotFoundError, ValueError):
        for key, value in json.loads(saved.read_text()).items():
            if key in KERNEL_TUNABLES:
                with contextlib.suppress(OSError):
                    Path("/proc/sys", key).write_text(value)
    saved.unlink(missing_ok=True)
