"""A fault-injecting HTTPS proxy on loopback, between the operator and kube-apiserver.

Why it terminates TLS instead of only relaying TCP: a 429, 500 or 503 is an HTTP answer, and a
watch stream ended "cleanly" (as the API server's own timeout ends it) is the last chunk of an
HTTP response; neither can be made honestly below TLS. So the proxy presents its own
certificate for 127.0.0.1, signed by the local cluster's CA (which the operator's kubeconfig
trusts, as it would trust a real API server's), and opens its own verified TLS connection to
kube-apiserver for every client connection. The operator authenticates with a bearer token,
which passes through unchanged, so RBAC and admission still judge the operator's own
identity; the audit log still records only what reached the API server.

What it injects (each decision drawn from one seeded random generator, in the order requests
arrive; which request draws which decision depends on timing):
- latency before a request is forwarded;
- a 429 (with Retry-After), 500 or 503 with a Kubernetes Status body, instead of forwarding;
- a connection reset (RST) instead of forwarding;
- a connection reset after forwarding, before the answer: the write was applied, the client
  never hears so;
- the end of a watch stream after a few seconds, at an event boundary (the terminating chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import random
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REASONS = {
    429: ("Too Many Requests", "TooManyRequests"),
    500: ("Internal Server Error", "InternalError"),
    503: ("Service Unavailable", "ServiceUnavailable"),
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Faults:
    """Probabilities per request, and ranges in seconds."""

    latency: tuple[float, float] = (0.0, 0.0)
    status: dict[int, float] = field(default_factory=dict)  # {429: 0.05, 503: 0.02}
    reset_before: float = 0.0
    reset_after: float = 0.0
    watch_lifetime: tuple[float, float] | None = None  # end watch streams cleanly after this
    writes_only: bool = False  # inject status/resets only into writes (reads pass)


@dataclass
class Seen:
    """One request as the proxy saw it."""

    at: float
    method: str
    path: str
    action: str  # forwarded | status-429 | reset-before | reset-after | watch-ended | ...


class FaultProxy:
    """Start with `start()`; `url` is what the operator's kubeconfig should name."""

    def __init__(self, upstream_port: int, ca_dir: Path, faults: Faults, seed: int) -> None:
        self.upstream_port = upstream_port
        self.ca_dir = ca_dir
        self.faults = faults
        self.rng = random.Random(seed)
        self.seen: list[Seen] = []
        self.actions: Counter[str] = Counter()
        self.enabled = True  # False: forward everything untouched
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started = threading.Event()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = _serving_cert(self.ca_dir)
        server_ctx.load_cert_chain(cert, key)
        server_ctx.set_alpn_protocols(["http/1.1"])
        self._upstream_ctx = ssl.create_default_context(cafile=str(self.ca_dir / "ca.crt"))
        self._upstream_ctx.set_alpn_protocols(["http/1.1"])  # no h2: we relay HTTP/1.1
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0, ssl=server_ctx)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0.1))
            self._loop.close()

    # -- figures -------------------------------------------------------------------------
    def record(self, method: str, path: str, action: str) -> None:
        with self._lock:
            self.seen.append(Seen(time.monotonic(), method, path, action))
            self.actions[action] += 1

    def summary(self) -> dict[str, int]:
        with self._lock:
            return dict(self.actions)

    # -- decisions -----------------------------------------------------------------------
    def _decide(self, method: str, watch: bool) -> tuple[float, str, float]:
        """(latency, action, watch lifetime) for one request."""
        f = self.faults
        with self._lock:
            latency = self.rng.uniform(*f.latency) if f.latency[1] else 0.0
            lifetime = self.rng.uniform(*f.watch_lifetime) if f.watch_lifetime else 0.0
            roll = self.rng.random()
        if not self.enabled or (f.writes_only and method not in WRITE_METHODS):
            return 0.0, "forwarded", lifetime if self.enabled else 0.0
        for code, p in sorted(f.status.items()):
            if roll < p:
                return latency, f"status-{code}", lifetime
            roll -= p
        if roll < f.reset_before:
            return latency, "reset-before", lifetime
        roll -= f.reset_before
        if roll < f.reset_after:
            return latency, "reset-after", lifetime
        return latency, "forwarded", lifetime

    # -- HTTP relay ----------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_message_head(reader)
                if request is None:
                    return
                line, headers = request
                method, target = line.split(" ")[0], line.split(" ")[1]
                body = await _read_body(reader, headers)
                path = target.split("?")[0]
                watch = "watch=true" in target or "watch=1" in target
                latency, action, lifetime = self._decide(method, watch)
                if latency:
                    await asyncio.sleep(latency)
                if action.startswith("status-"):
                    self.record(method, path, action)
                    writer.write(_status_response(int(action.split("-")[1])))
                    await writer.drain()
                    continue
                if action == "reset-before":
                    self.record(method, path, action)
                    _reset(writer)
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(
                        "127.0.0.1",
                        self.upstream_port,
                        ssl=self._upstream_ctx,
                        server_hostname="127.0.0.1",
                    )
                up_reader, up_writer = upstream
                up_writer.write(line.encode() + b"\r\n" + _join(headers) + b"\r\n" + body)
                await up_writer.drain()
                response = await _read_message_head(up_reader)
                if response is None:
                    self.record(method, path, "upstream-closed")
                    return
                status_line, resp_headers = response
                if action == "reset-after" and not watch:
                    self.record(method, path, action)
                    _reset(writer)
                    return
                writer.write(status_line.encode() + b"\r\n" + _join(resp_headers) + b"\r\n")
                deadline = None
                if watch and (lifetime or action == "reset-after"):
                    deadline = time.monotonic() + (lifetime or self.rng.uniform(0.5, 5))
                outcome = await _relay_body(
                    up_reader, writer, resp_headers, method, status_line, deadline
                )
                if outcome == "cut":
                    if action == "reset-after":
                        self.record(method, path, "watch-reset")
                        _reset(writer)
                        return
                    self.record(method, path, "watch-ended")
                    up_writer.close()
                    upstream = None  # that upstream response is unfinished: a new connection
                else:
                    self.record(method, path, "forwarded")
                if outcome == "close" or _wants_close(headers) or _wants_close(resp_headers):
                    return
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            return
        finally:
            if upstream is not None:
                upstream[1].close()
            with contextlib.suppress(Exception):
                writer.close()


Headers = list[tuple[str, str]]


async def _read_message_head(reader: asyncio.StreamReader) -> tuple[str, Headers] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for raw in lines[1:]:
        if raw:
            name, _, value = raw.partition(":")
            headers.append((name, value.strip()))
    return lines[0], headers


def _header(headers: Headers, name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def _wants_close(headers: Headers) -> bool:
    return _header(headers, "connection").lower() == "close"


def _join(headers: Headers) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)


async def _read_body(reader: asyncio.StreamReader, headers: Headers) -> bytes:
    if "chunked" in _header(headers, "transfer-encoding").lower():
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            out += size_line + await reader.readexactly(size + 2)
            if size == 0:
                return bytes(out)
    length = int(_header(headers, "content-length") or 0)
    return await reader.readexactly(length) if length else b""


async def _relay_body(
    up: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: Headers,
    method: str,
    status_line: str,
    deadline: float | None,
) -> str:
    """Copy one response body: "done" (connection reusable), "close" (body ran to EOF), or
    "cut" (a watch ended at `deadline`, at an event boundary, with the terminating chunk)."""
    code = int(status_line.split(" ")[1])
    if method == "HEAD" or code in (204, 304) or 100 <= code < 200:
        await writer.drain()
        return "done"
    if "chunked" in _header(headers, "transfer-encoding").lower():
        at_boundary = True
        while True:
            if deadline is not None and at_boundary and time.monotonic() >= deadline:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return "cut"
            timeout = None if deadline is None else max(0.05, deadline - time.monotonic())
            try:
                size_line = await asyncio.wait_for(up.readuntil(b"\r\n"), timeout)
            except TimeoutError:
                continue  # readuntil keeps its buffer when cancelled
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                trailer = await up.readuntil(b"\r\n")
                while trailer != b"\r\n":
                    writer.write(trailer)
                    trailer = await up.readuntil(b"\r\n")
                writer.write(size_line + b"\r\n")
                await writer.drain()
                return "done"
            data = await up.readexactly(size + 2)
            at_boundary = data[:-2].endswith(b"\n")
            writer.write(size_line + data)
            await writer.drain()
    length = _header(headers, "content-length")
    if length:
        remaining = int(length)
        while remaining:
            data = await up.read(min(remaining, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            writer.write(data)
        await writer.drain()
        return "done"
    while data := await up.read(65536):
        writer.write(data)
    await writer.drain()
    return "close"


def _status_response(code: int) -> bytes:
    phrase, reason = REASONS[code]
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"injected by the test proxy: {phrase}",
            "reason": reason,
            "details": {"retryAfterSeconds": 1},
            "code": code,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {code} {phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + ("Retry-After: 1\r\n" if code in (429, 503) else "")
        + "\r\n"
    )
    return head.encode() + body


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the client."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _serving_cert(ca_dir: Path) -> tuple[Path, Path]:
    """A serving certificate for 127.0.0.1 signed by the cluster CA (written beside it)."""
    cert_path, key_path = ca_dir / "fault-proxy.crt", ca_dir / "fault-proxy.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    ca_key: Any = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fault-proxy")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
