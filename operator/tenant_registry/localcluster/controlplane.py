"""Start and stop etcd, kube-apiserver and kube-controller-manager on loopback.

One `ControlPlane` is one cluster in one state directory: PKI, data, component logs, the
apiserver's audit log (write verbs only) and kubeconfigs. Every process it starts is stopped
by `stop()`, and dies with its parent if the parent is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tenant_registry.localcluster import pki as pki_mod
from tenant_registry.localcluster.build import ensure_binaries

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
"""

KCM_CONTROLLERS = ",".join(
    [
        "serviceaccount-token-controller",
        "serviceaccount-controller",
        "namespace-controller",
        "garbage-collector-controller",
        "clusterrole-aggregation-controller",
        "root-ca-certificate-publisher-controller",
    ]
)


# With a node (localcluster/node.py), Deployments run: their ReplicaSets and Pods.
WORKLOAD_CONTROLLERS = ("deployment-controller", "replicaset-controller")


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


class StartError(RuntimeError):
    """The control plane did not come up; the message says why and where the logs are."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # SIGKILL, not SIGTERM: a terminated apiserver whose etcd is gone hangs in graceful
    # shutdown, and nothing here holds state worth a graceful stop.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PDEATHSIG


class ControlPlane:
    """A local cluster. Use as a context manager, or call `start()` and `stop()`."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        kcm_qps: int = 20,
        kcm_burst: int = 30,
        apiserver_args: tuple[str, ...] = (),
        extra_controllers: tuple[str, ...] = (),
    ) -> None:
        self._own_dir = state_dir is None
        self.dir = Path(state_dir or tempfile.mkdtemp(prefix="tro-cluster-"))
        self.kcm_qps = kcm_qps
        self.kcm_burst = kcm_burst
        # Extra kube-apiserver flags, e.g. ("--watch-cache=false",
        # "--etcd-compaction-interval=1s") for a cluster whose watches get 410 Gone often.
        self.apiserver_args = apiserver_args
        self.extra_controllers = extra_controllers  # e.g. WORKLOAD_CONTROLLERS with a node
        self.bin: Path | None = None
        self.port = 0
        self._pki: pki_mod.Pki | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- paths -------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.dir / "logs" / "audit.log"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def ca_path(self) -> Path:
        return self.dir / "pki" / "ca.crt"

    def binary(self, name: str) -> str:
        assert self.bin is not None, "start() first"
        return str(self.bin / name)

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.bin = ensure_binaries()
        for sub in ("logs", "etcd"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        pki = self._pki = pki_mod.generate(self.dir / "pki")
        (self.dir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        try:
            self._start_etcd()
            self._start_apiserver(pki)
            self._write_kubeconfig(
                self.kubeconfig,
                user={
                    "client-certificate": pki.path("admin.crt"),
                    "client-key": pki.path("admin.key"),
                },
            )
            self._write_kubeconfig(
                self.dir / "controller-manager.kubeconfig",
                user={
                    "client-certificate": pki.path("controller-manager.crt"),
                    "client-key": pki.path("controller-manager.key"),
                },
            )
            self._start_controller_manager(pki)
            self._wait_default_serviceaccount()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate every process this control plane started, newest first."""
        for name, proc in reversed(list(self._procs.items())):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            self._procs.pop(name, None)

    def cleanup(self) -> None:
        """Stop, and remove the state directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._procs.items() if p.poll() is None}

    # -- components ----------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                env={**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", "2")},
            )
        finally:
            log.close()
        self._procs[name] = proc
        return proc

    def _fail(self, name: str, why: str) -> StartError:
        log = self.logs_dir / f"{name}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        hint = ""
        if any("address already in use" in line for line in tail):
            hint = " (a port is already in use: stop the other process or run again)"
        return StartError(f"{name} {why}{hint}; log: {log}\n" + "\n".join(tail))

    def _start_etcd(self) -> None:
        client, peer = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                self.binary("etcd"),
                "--data-dir",
                str(self.dir / "etcd"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",  # test data only: fsync on every write would dominate
                "--log-level",
                "warn",
            ],
        )
        self._wait("etcd", lambda: _http_ok(f"{self.etcd_url}/health"), 30)

    def stop_apiserver(self, timeout: float = 30) -> float:
        """Stop kube-apiserver alone (SIGTERM, as a control-plane upgrade does; SIGKILL if it
        lingers); etcd and the controller manager keep running. Returns the seconds taken."""
        proc = self._procs.pop("kube-apiserver")
        started = time.monotonic()
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        return time.monotonic() - started

    def start_apiserver(self, attempts: int = 20) -> None:
        """Start kube-apiserver again on the same address and port, with the same PKI and
        data; returns once /readyz answers 200."""
        assert self._pki is not None and self.port, "start() first"
        for _ in range(attempts):
            try:
                self._start_apiserver(self._pki, port=self.port)
                return
            except StartError as e:
                # The port can be briefly taken (another process's outgoing connection): retry.
                if "address already in use" not in str(e):
                    raise
                self._procs.pop("kube-apiserver", None)
                time.sleep(0.5)
        raise StartError(f"kube-apiserver could not bind port {self.port} again")

    def _start_apiserver(self, pki: pki_mod.Pki, port: int = 0) -> None:
        self.port = port or _free_port()
        self._spawn(
            "kube-apiserver",
            [
                self.binary("kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={pki.dir}",
                f"--tls-cert-file={pki.path('apiserver.crt')}",
                f"--tls-private-key-file={pki.path('apiserver.key')}",
                f"--client-ca-file={pki.path('ca.crt')}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki.path('sa.pub')}",
                f"--service-account-signing-key-file={pki.path('sa.key')}",
                "--endpoint-reconciler-type=none",  # loopback endpoints fail validation
                "--allow-privileged=true",
                f"--audit-log-path={self.audit_log}",
                f"--audit-policy-file={self.dir / 'audit-policy.yaml'}",
                "--audit-log-mode=blocking",  # written before the response: counts are exact
                *self.apiserver_args,
            ],
        )
        self._wait("kube-apiserver", lambda: self._get("/readyz") == 200, 90)

    def _start_controller_manager(self, pki: pki_mod.Pki) -> None:
        kc = self.dir / "controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                self.binary("kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={','.join([KCM_CONTROLLERS, *self.extra_controllers])}",
                f"--service-account-private-key-file={pki.path('sa.key')}",
                f"--root-ca-file={pki.path('ca.crt')}",
                f"--kube-api-qps={self.kcm_qps}",
                f"--kube-api-burst={self.kcm_burst}",
            ],
        )

    def _wait_default_serviceaccount(self) -> None:
        self._wait(
            "kube-controller-manager",
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default") == 200,
            60,
        )

    def _wait(self, name: str, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._procs[name]
            if proc.poll() is not None:
                raise self._fail(name, f"exited with code {proc.returncode}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                if ready():
                    return
            time.sleep(0.1)
        raise self._fail(name, f"was not ready within {timeout:.0f} s")

    # -- API access as admin (no client library: this module stands alone) ---------------
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(self.dir / "pki" / "admin.crt", self.dir / "pki" / "admin.key")
        return ctx

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own https endpoint
                self.server + path, context=self._ssl(), timeout=5
            ) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One admin request; returns the decoded JSON body."""
        req = urllib.request.Request(  # noqa: S310
            self.server + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")

    # -- kubeconfigs ---------------------------------------------------------------------
    def _write_kubeconfig(
        self, path: Path, *, user: dict[str, Any], server: str | None = None
    ) -> Path:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": server or self.server,
                        "certificate-authority": str(self.ca_path),
                    },
                }
            ],
            "users": [{"name": "user", "user": {k: str(v) for k, v in user.items()}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
            "current-context": "local",
        }
        path.write_text(json.dumps(cfg, indent=2))
        path.chmod(0o600)
        return path

    def token(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """Mint a token for a ServiceAccount (TokenRequest), to act under real RBAC."""
        resp = self.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        return str(resp["status"]["token"])

    def serviceaccount_kubeconfig(
        self, namespace: str, service_account: str, *, server: str | None = None
    ) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount (token via TokenRequest);
        `server` points it elsewhere than the API server (e.g. a test proxy trusted by the
        cluster CA)."""
        path = self.dir / f"sa-{namespace}-{service_account}.kubeconfig"
        return self._write_kubeconfig(
            path, user={"token": self.token(namespace, service_account)}, server=server
        )

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster; with `check`, fail showing stderr."""
        proc = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def audit_events(self) -> Iterator[dict[str, Any]]:
        """The audit log's entries so far (write verbs only, one per request)."""
        if not self.audit_log.exists():
            return
        with open(self.audit_log) as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback etcd
        return int(resp.status) == 200
