"""Run a Deployment's container with podman the way the kubelet runs it (dev and test tooling).

Everything comes from the Deployment's pod template: the user and group, the read-only root
filesystem, capabilities, privilege escalation, seccomp, the memory and CPU limits, emptyDir
volumes (a tmpfs of their sizeLimit: with a read-only root, the only writable places), env
(`fieldRef` resolved to this Pod's facts, `$(VAR)` expanded) and args (`$(VAR)` expanded as
the kubelet does), the grace period. Like the kubelet: the ServiceAccount token, its CA and
namespace are mounted at SERVICEACCOUNT_DIR, the hostname is the Pod's name, and no passwd
entry is written for the user (podman writes one unless told not to).

The container shares the host's network: the API server on loopback plays the `kubernetes`
Service (KUBERNETES_SERVICE_HOST/PORT), and the probes reach the container ports on
127.0.0.1. So one such Pod at a time binds those ports on this machine (`host_ports_lock`).
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenant_registry.localcluster.build import cache_root
from tenant_registry.localcluster.image import PODMAN, ULIMITS, file_lock

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
POD_IP = "127.0.0.1"  # host network


class Unsupported(ValueError):
    """The pod template uses something this runner does not do as the kubelet would."""


@dataclass(frozen=True)
class Pod:
    """What the kubelet knows of one Pod of the Deployment: the values `fieldRef` reads."""

    name: str
    namespace: str
    service_account: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    uid: str = "00000000-0000-0000-0000-000000000000"
    node: str = "localhost"

    def field(self, path: str) -> str:
        plain = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.serviceAccountName": self.service_account,
            "spec.nodeName": self.node,
            "status.podIP": POD_IP,
            "status.hostIP": POD_IP,
        }
        if path in plain:
            return plain[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            source = self.labels if match[1] == "labels" else self.annotations
            return source.get(match[2], "")
        raise Unsupported(f"fieldRef.fieldPath {path!r}")


def pod_of(deployment: Mapping[str, Any], name: str) -> Pod:
    template = deployment["spec"]["template"]
    meta = template.get("metadata") or {}
    return Pod(
        name=name,
        namespace=deployment["metadata"].get("namespace") or "default",
        service_account=template["spec"].get("serviceAccountName") or "default",
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
    )


def container_of(deployment: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if name is None:
        (only,) = containers
        return dict(only)
    return dict(next(c for c in containers if c["name"] == name))


# -- the kubelet's rules -------------------------------------------------------------------
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion: a defined VAR is replaced, an undefined one stays
    as written, `$$` is an escaped `$`."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _REFERENCE.sub(replace, text)


def container_env(
    container: Mapping[str, Any], pod: Pod, service_env: Mapping[str, str]
) -> dict[str, str]:
    """The container's environment: the Services' variables first, then `env` in order, each
    value expanded against what came before it."""
    if container.get("envFrom"):
        raise Unsupported("envFrom")
    env = dict(service_env)
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
        elif "fieldRef" in (var.get("valueFrom") or {}):
            env[var["name"]] = pod.field(var["valueFrom"]["fieldRef"]["fieldPath"])
        elif "valueFrom" in var:
            raise Unsupported(f"env {var['name']}: valueFrom {sorted(var['valueFrom'])}")
        else:
            env[var["name"]] = ""
    return env


def kubernetes_service_env(host: str, port: int) -> dict[str, str]:
    """The variables the kubelet sets for the `kubernetes` Service, pointing at `host:port`."""
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }


_BYTES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BYTES.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


def quantity_bytes(quantity: str | int) -> int:
    """A memory or storage quantity (`16Mi`, `1G`, `1024`) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kMGT]i?)?", str(quantity))
    if not match or (match[2] or "") not in _BYTES:
        raise Unsupported(f"quantity {quantity!r}")
    return int(float(match[1]) * _BYTES[match[2] or ""])


def quantity_cpus(quantity: str | int | float) -> float:
    """A CPU quantity (`100m`, `2`) in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _security(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The container's securityContext over the pod's (container fields win)."""
    merged = {
        k: v
        for k, v in (pod_spec.get("securityContext") or {}).items()
        if k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
    }
    merged.update(container.get("securityContext") or {})
    return merged


def podman_run_args(
    deployment: Mapping[str, Any],
    *,
    image: str,
    pod: Pod,
    serviceaccount_dir: Path | None,
    service_env: Mapping[str, str],
    container_name: str,
) -> list[str]:
    """`podman run` arguments for the Deployment's container, as the kubelet would run it."""
    pod_spec = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    sc = _security(pod_spec, container)
    args = [
        *("run", "--detach", "--name", container_name, "--hostname", pod.name),
        *("--network=host", "--passwd=false", "--log-driver=k8s-file", *ULIMITS),
    ]
    if sc.get("privileged"):
        raise Unsupported("securityContext.privileged")
    uid = sc.get("runAsUser")
    if uid is None:
        raise Unsupported("no runAsUser (the image's USER would be checked by the kubelet)")
    if sc.get("runAsNonRoot") and int(uid) == 0:
        raise Unsupported("runAsNonRoot with runAsUser 0: the kubelet refuses to start it")
    group = sc.get("runAsGroup")
    args.append(f"--user={uid}:{group}" if group is not None else f"--user={uid}")
    pod_sc = pod_spec.get("securityContext") or {}
    for gid in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]:
        if gid is not None:
            args.append(f"--group-add={gid}")
    if sc.get("readOnlyRootFilesystem"):
        # podman would add tmpfs mounts of its own (/tmp, /run, /var/tmp); the kubelet none.
        args += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = sc.get("capabilities") or {}
    args += [f"--cap-drop={cap}" for cap in capabilities.get("drop") or []]
    args += [f"--cap-add={cap}" for cap in capabilities.get("add") or []]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":  # podman's default profile is the runtime's default
        raise Unsupported(f"seccompProfile.type {seccomp}")
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        memory = quantity_bytes(limits["memory"])
        args += [f"--memory={memory}", f"--memory-swap={memory}"]  # no swap, as a node
    if "cpu" in limits:
        args.append(f"--cpus={quantity_cpus(limits['cpu'])}")
    args += _volume_args(pod_spec, container)
    if serviceaccount_dir is not None and pod_spec.get("automountServiceAccountToken", True):
        args += [
            "--mount",
            f"type=bind,source={serviceaccount_dir},destination={SERVICEACCOUNT_DIR},ro=true",
        ]
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    args.append(f"--stop-timeout={grace}")
    env = container_env(container, pod, service_env)
    for name, value in env.items():
        args += ["--env", f"{name}={value}"]
    command = [expand(str(a), env) for a in container.get("command") or []]
    if command:
        args += ["--entrypoint", command[0]]
    args.append(image)
    args += command[1:]
    args += [expand(str(a), env) for a in container.get("args") or []]
    return args


def _volume_args(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    args: list[str] = []
    for mount in container.get("volumeMounts") or []:
        if mount.get("subPath") or mount.get("subPathExpr"):
            raise Unsupported(f"volumeMounts {mount['name']}: subPath")
        volume = volumes[mount["name"]]
        if "emptyDir" not in volume:
            kinds = sorted(set(volume) - {"name"})
            raise Unsupported(f"volume {volume['name']}: {kinds} (only emptyDir)")
        # An emptyDir is world-writable (0777); its sizeLimit is enforced by eviction on a
        # node, by the tmpfs size here.
        options = [f"type=tmpfs,destination={mount['mountPath']}", "tmpfs-mode=0777"]
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        if size is not None:
            options.append(f"tmpfs-size={quantity_bytes(size)}")
        if mount.get("readOnly"):
            options.append("ro=true")
        args += ["--mount", ",".join(options)]
    return args


def write_serviceaccount_volume(directory: Path, *, token: str, ca: bytes, namespace: str) -> Path:
    """The files the kubelet projects into SERVICEACCOUNT_DIR, world-readable as there."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for name, content in (
        ("token", token.encode()),
        ("ca.crt", ca),
        ("namespace", namespace.encode()),
    ):
        (directory / name).write_bytes(content)
        (directory / name).chmod(0o644)
    return directory


# -- probes --------------------------------------------------------------------------------
def probe_url(container: Mapping[str, Any], kind: str) -> str | None:
    """The URL of the container's `kind` probe (livenessProbe, ...), if it is an httpGet."""
    get = (container.get(kind) or {}).get("httpGet")
    if get is None:
        return None
    port = get["port"]
    if isinstance(port, str) and not port.isdigit():
        port = next(
            p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port
        )
    scheme = str(get.get("scheme", "HTTP")).lower()
    return f"{scheme}://{get.get('host') or POD_IP}:{port}{get.get('path', '/')}"


def probe_ok(url: str, timeout: float = 2) -> bool:
    """The kubelet's success: a status from 200 to 399."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return 200 <= int(resp.status) < 400
    except urllib.error.HTTPError as e:
        return 200 <= e.code < 400
    except (OSError, urllib.error.URLError):
        return False


def container_ports(container: Mapping[str, Any]) -> list[int]:
    return [int(p["containerPort"]) for p in container.get("ports") or []]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))  # noqa: S104 - probing, not serving
        except OSError:
            return True
    return False


@contextlib.contextmanager
def host_ports_lock() -> Iterator[None]:
    """One host-network Pod at a time on this machine (several checkouts run tests here)."""
    with file_lock(cache_root() / "image" / ".host-network.lock"):
        yield


# -- the running container -----------------------------------------------------------------
class PodContainer:
    """The Deployment's container, started with podman: logs, exec, SIGTERM, removal."""

    def __init__(self, deployment: Mapping[str, Any], run_args: list[str], name: str) -> None:
        self.deployment = deployment
        self.container = container_of(deployment)
        self.run_args = run_args
        self.name = name
        self.started_at = 0.0

    @classmethod
    def for_deployment(
        cls,
        deployment: Mapping[str, Any],
        *,
        image: str,
        state_dir: Path,
        token: str,
        ca: bytes,
        api_port: int,
        pod_name: str | None = None,
    ) -> PodContainer:
        """Ready to start: a Pod name, its ServiceAccount volume under `state_dir`, the
        `kubernetes` Service at 127.0.0.1:`api_port`."""
        name = f"tro-pod-{uuid.uuid4().hex[:8]}"
        pod = pod_of(deployment, pod_name or f"{deployment['metadata']['name']}-{name[-8:]}")
        sa_dir = write_serviceaccount_volume(
            state_dir / name / "serviceaccount", token=token, ca=ca, namespace=pod.namespace
        )
        args = podman_run_args(
            deployment,
            image=image,
            pod=pod,
            serviceaccount_dir=sa_dir,
            service_env=kubernetes_service_env(POD_IP, api_port),
            container_name=name,
        )
        return cls(deployment, args, name)

    def start(self) -> None:
        busy = [p for p in container_ports(self.container) if port_in_use(p)]
        if busy:
            raise RuntimeError(f"host port(s) {busy} in use: the Pod runs on the host network")
        self.started_at = time.monotonic()
        _podman(*self.run_args)

    def wait_ready(self, timeout: float = 60) -> float:
        """Until the startup (if any) and readiness probes pass; returns seconds since start."""
        urls = [
            u
            for u in (probe_url(self.container, k) for k in ("startupProbe", "readinessProbe"))
            if u
        ]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"container exited ({self.exit_code()}):\n{self.logs()[-3000:]}")
            if urls and all(probe_ok(u) for u in urls):
                return time.monotonic() - self.started_at
            time.sleep(0.2)
        raise RuntimeError(f"not ready within {timeout:.0f} s:\n{self.logs()[-3000:]}")

    def running(self) -> bool:
        return self._state("{{.State.Running}}") == "true"

    def exit_code(self) -> int:
        return int(self._state("{{.State.ExitCode}}"))

    def logs(self) -> str:
        proc = subprocess.run(
            [*PODMAN, "logs", self.name], capture_output=True, text=True, check=False
        )
        return proc.stdout + proc.stderr

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PODMAN, "exec", self.name, *cmd], capture_output=True, text=True, check=False
        )

    def terminate(self) -> tuple[int, float]:
        """SIGTERM, as the kubelet stops a container; SIGKILL after the grace period.
        Returns the exit code and the seconds it took to exit."""
        grace = float(
            self.deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        )
        started = time.monotonic()
        _podman("kill", "--signal=TERM", self.name)
        try:
            subprocess.run(
                [*PODMAN, "wait", self.name], capture_output=True, check=True, timeout=grace
            )
        except subprocess.TimeoutExpired:
            _podman("kill", "--signal=KILL", self.name)
            subprocess.run([*PODMAN, "wait", self.name], capture_output=True, check=False)
        return self.exit_code(), time.monotonic() - started

    def remove(self) -> None:
        subprocess.run(
            [*PODMAN, "rm", "--force", "--time=0", self.name], capture_output=True, check=False
        )

    def _state(self, template: str) -> str:
        return _podman("inspect", "--format", template, self.name).stdout.strip()


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"podman {args[0]}: {proc.stderr.strip()}")
    return proc
