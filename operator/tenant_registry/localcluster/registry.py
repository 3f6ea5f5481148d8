"""An authenticated image registry on loopback: Debian's `docker-registry` (distribution 2.8)
with htpasswd (bcrypt) auth, plain HTTP, for the node's pull tests and `make run NODE=1`; or,
for the credential verification tests, with TLS and/or token auth (`auth: token`, whose
issuer the test runs).

The binary comes from Debian's package without installing it (the package would add a system
user and a service): `apt-get download docker-registry` and `dpkg -x`, once, into the cache.
The registry reads its htpasswd file only at start, so a password change restarts it on the
same port. Every process dies with its parent (PR_SET_PDEATHSIG), as the control plane's.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tenant_registry.localcluster.build import cache_root
from tenant_registry.localcluster.controlplane import _die_with_parent, _free_port
from tenant_registry.localcluster.image import PODMAN

PACKAGE = "docker-registry"


class RegistryError(RuntimeError):
    """The registry could not be fetched or started; the message says why."""


def ensure_binary() -> Path:
    """The `docker-registry` binary from Debian's package, extracted once into the cache."""
    dest = cache_root() / "node" / PACKAGE
    binary = dest / "usr" / "bin" / PACKAGE
    if binary.exists():
        return binary
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{PACKAGE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        for tool in ("apt-get", "dpkg"):
            if shutil.which(tool) is None:
                raise RegistryError(f"{tool} not found: the test registry comes from Debian")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
        try:
            _run(["apt-get", "download", "-q", PACKAGE], cwd=staging, what="apt-get download")
            (deb,) = staging.glob(f"{PACKAGE}_*.deb")
            _run(["dpkg", "-x", str(deb), str(staging / "root")], what="dpkg -x")
            (staging / "root" / "package").write_text(deb.name + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            (staging / "root").rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return binary


def _run(cmd: list[str], *, what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RegistryError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")


def htpasswd_line(user: str, password: str) -> str:
    """One bcrypt entry (`htpasswd -B`), the only hash distribution's htpasswd auth reads."""
    if shutil.which("htpasswd") is None:
        raise RegistryError("htpasswd not found: install apache2-utils (scripts/host-packages.sh)")
    proc = subprocess.run(
        ["htpasswd", "-nbB", user, password], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RegistryError(f"htpasswd failed: {proc.stderr.strip()}")
    return proc.stdout.strip() + "\n"


@dataclass(frozen=True)
class TokenAuth:
    """distribution's `auth: token`: tokens from `realm`, signed by a key whose certificate
    (the JWT's x5c) chains to `rootcertbundle`, for `service`, by `issuer`."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass(frozen=True)
class Tls:
    """The registry's serving certificate and key (PEM files)."""

    certificate: Path
    key: Path
    ca: Path  # the CA that signed it, for the harness's own requests


class Registry:
    """One registry on 127.0.0.1:`port` (a free one unless given) accepting one user (htpasswd),
    or whoever holds a token of `token`'s issuer; HTTPS with `tls`."""

    def __init__(
        self,
        directory: Path,
        *,
        user: str,
        password: str,
        port: int = 0,
        tls: Tls | None = None,
        token: TokenAuth | None = None,
    ) -> None:
        self.dir = directory
        self.user = user
        self.password = password
        self.port = port or _free_port()
        self.tls = tls
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The registry's host as image references and config.json keys name it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log(self) -> Path:
        return self.dir / "registry.log"

    def start(self, timeout: float = 20) -> Registry:
        binary = ensure_binary()
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        auth: dict[str, object]
        if self.token is not None:
            auth = {
                "token": {
                    "realm": self.token.realm,
                    "service": self.token.service,
                    "issuer": self.token.issuer,
                    "rootcertbundle": str(self.token.rootcertbundle),
                }
            }
        else:
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text(htpasswd_line(self.user, self.password))
            auth = {"htpasswd": {"realm": f"tro-registry-{self.port}", "path": str(htpasswd)}}
        http: dict[str, object] = {"addr": self.host}
        if self.tls is not None:
            http["tls"] = {"certificate": str(self.tls.certificate), "key": str(self.tls.key)}
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "data")}},
            "http": http,
            "auth": auth,
        }
        (self.dir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(binary), "serve", str(self.dir / "config.yml")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RegistryError(f"docker-registry exited ({self.proc.returncode}); {self.log}")
            if self.status("/v2/") == 401:  # up, and asking for credentials
                return self
            time.sleep(0.05)
        raise RegistryError(f"docker-registry not up within {timeout:.0f} s; log: {self.log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def change_password(self, password: str) -> None:
        """The registry's side of a rotation: from now on only `password` works."""
        self.stop()
        self.password = password
        self.start()

    def status(self, path: str, auth: tuple[str, str] | None = None) -> int:
        """The HTTP status of a GET, with basic auth if given (0: nothing answers)."""
        headers = {}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            return self._request("GET", path, headers=headers)[0]
        except (OSError, urllib.error.URLError):
            return 0

    def _request(
        self,
        method: str,
        path_or_url: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str]]:
        """(status, headers) of one request to the registry (its CA trusted for TLS)."""
        url = path_or_url if "://" in path_or_url else f"{self.url}{path_or_url}"
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
        context = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as resp:  # noqa: S310
                return int(resp.status), dict(resp.headers)
        except urllib.error.HTTPError as e:
            return int(e.code), dict(e.headers)

    def push_manifest(self, repository: str, tag: str, authorization: str = "") -> str:
        """An image `repository:tag` made here through the Registry HTTP API (a config blob, a
        layer blob, an OCI manifest), no Docker needed. `authorization`: the header to send
        (default: Basic with this registry's user). Returns the manifest's digest."""
        if not authorization:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            authorization = f"Basic {token}"
        auth = {"Authorization": authorization}
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        layer = b"tenant-registry-operator probe layer\n"
        descriptors = []
        for media_type, blob in (
            ("application/vnd.oci.image.config.v1+json", config),
            ("application/vnd.oci.image.layer.v1.tar", layer),
        ):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            status, headers = self._request(
                "POST", f"/v2/{repository}/blobs/uploads/", b"", headers=auth
            )
            if status != 202:
                raise RegistryError(f"blob upload to {repository}: HTTP {status}")
            location = headers["Location"]
            if "://" not in location:
                location = f"{self.url}{location}"
            sep = "&" if "?" in location else "?"
            self._put(
                f"{location}{sep}digest={digest}",
                blob,
                {**auth, "Content-Type": "application/octet-stream"},
                what=f"blob PUT to {repository}",
            )
            descriptors.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptors[0],
                "layers": descriptors[1:],
            }
        ).encode()
        self._put(
            f"/v2/{repository}/manifests/{tag}",
            manifest,
            {**auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            what=f"manifest PUT {repository}:{tag}",
        )
        return "sha256:" + hashlib.sha256(manifest).hexdigest()

    def _put(self, path_or_url: str, body: bytes, headers: dict[str, str], *, what: str) -> None:
        """PUT `body`; anything but 201 Created is a RegistryError naming `what`."""
        status, _ = self._request("PUT", path_or_url, body, headers=headers)
        if status != 201:
            raise RegistryError(f"{what}: HTTP {status}")

    def push(self, local_image: str, repository: str) -> str:
        """Push a podman image as `repository[:tag]` here; returns the full reference."""
        reference = f"{self.host}/{repository}"
        proc = subprocess.run(
            [
                *PODMAN,
                "push",
                "--quiet",
                "--tls-verify=false",  # plain HTTP on loopback
                "--creds",
                f"{self.user}:{self.password}",
                local_image,
                f"docker://{reference}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RegistryError(f"podman push {reference}: {proc.stderr.strip()[-2000:]}")
        return reference

    def manifest_requests(self) -> list[tuple[str, bool]]:
        """(repository, authorized) of every manifest request, from the registry's log: who
        really asked for what, and whether the credentials were accepted (a client's first,
        anonymous try is answered with the 401 challenge and counts as not authorized)."""
        found: list[tuple[str, bool]] = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log.read_text(errors="replace").splitlines():
                if "/manifests/" not in line:
                    continue
                if 'msg="authorized request"' in line:
                    authorized = True
                elif 'msg="error authorizing context' in line:
                    authorized = False
                else:
                    continue
                repo = re.search(r'vars\.name="?([^" ]+)', line)
                found.append((repo[1] if repo else "", authorized))
        return found
