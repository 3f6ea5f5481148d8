"""Real registries on loopback for the credential verification tests: Debian's docker-registry
(distribution 2.8) with htpasswd or token auth, plain or TLS with a CA of the test's own, and
a small token issuer (ES256 JWTs whose x5c chains to the registry's rootcertbundle)."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tenant_registry.localcluster import pki
from tenant_registry.localcluster.controlplane import _free_port
from tenant_registry.localcluster.registry import Registry, Tls, TokenAuth


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _ec_cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.BasicConstraints(ca=subject == issuer[0], path_length=None), critical=True
        )
        .sign(issuer[1], hashes.SHA256())
    )


class _LoopbackServer:
    """An HTTP server on a free loopback port, serving from a daemon thread: a subclass
    answers requests of its `method` in `_answer`."""

    method = "GET"

    def __init__(self) -> None:
        self.port = _free_port()
        self._server: http.server.ThreadingHTTPServer | None = None

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
            self._answer(handler)

        def log_message(handler: http.server.BaseHTTPRequestHandler, *args: Any) -> None:
            pass

        # BaseHTTPRequestHandler calls do_<METHOD>; any other method is answered 501.
        handler = type(
            "Handler",
            (http.server.BaseHTTPRequestHandler,),
            {f"do_{self.method}": answer, "log_message": log_message},
        )
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _empty_answer(handler: http.server.BaseHTTPRequestHandler, status: int) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


class TokenIssuer(_LoopbackServer):
    """docker's token spec, for one user: GET /token?service=..&scope=..&account=.. with Basic
    auth answers a JWT granting the scopes asked for; a wrong password gets 401. Every request
    is recorded (scopes, accounts; never the password)."""

    service = "tro-test-registry"
    issuer = "tro-test-issuer"

    def __init__(self, directory: Path, *, user: str, password: str) -> None:
        super().__init__()
        self.user, self.password = user, password
        root_key = ec.generate_private_key(ec.SECP256R1())
        self._root = _ec_cert("tro-token-root", root_key, ("tro-token-root", root_key))
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._leaf = _ec_cert("tro-token-signer", self._key, ("tro-token-root", root_key))
        directory.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = directory / "token-root.crt"
        self.rootcertbundle.write_bytes(self._root.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, Any]] = []
        self.chunked = False  # the answer in two writes 100 ms apart (a real network does so)

    @property
    def auth(self) -> TokenAuth:
        return TokenAuth(
            realm=f"http://127.0.0.1:{self.port}/token",
            service=self.service,
            issuer=self.issuer,
            rootcertbundle=self.rootcertbundle,
        )

    def token(self, scopes: list[str], subject: str = "") -> str:
        """A signed JWT granting `scopes` (`repository:NAME:pull,push`)."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                for c in (self._leaf, self._root)
            ],
        }
        claims = {
            "iss": self.issuer,
            "sub": subject or self.user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = ".".join(_b64url(json.dumps(part).encode()) for part in (header, claims))
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JWS wants r || s, 32 bytes each
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(url.query)
        given = handler.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        ok = given == expected
        self.requests.append(
            {
                "service": query.get("service", [""])[0],
                "scopes": query.get("scope", []),
                "account": query.get("account", [""])[0],
                "authorized": ok,
            }
        )
        if url.path != "/token" or not ok:
            _empty_answer(handler, 401 if url.path == "/token" else 404)
            return
        body = json.dumps({"token": self.token(query.get("scope", [])), "expires_in": 300})
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if self.chunked:
            half = len(body) // 2
            handler.wfile.write(body[:half].encode())
            handler.wfile.flush()
            time.sleep(0.1)
            body = body[half:]
        handler.wfile.write(body.encode())


def registry_tls(directory: Path) -> Tls:
    """A CA of the test's own and a serving certificate for 127.0.0.1 signed by it."""
    pki.generate(directory / "ca")
    pki.issue(directory / "ca", directory, "registry", cn="tro-test-registry", server=True)
    return Tls(directory / "registry.crt", directory / "registry.key", directory / "ca" / "ca.crt")


def htpasswd_registry(directory: Path, user: str, password: str, tls: bool = False) -> Registry:
    return Registry(
        directory, user=user, password=password, tls=registry_tls(directory) if tls else None
    ).start()


def token_registry(directory: Path, issuer: TokenIssuer) -> Registry:
    return Registry(
        directory, user=issuer.user, password=issuer.password, token=issuer.auth
    ).start()


def serving_basic(directory: Path, user: str, password: str) -> Iterator[Registry]:
    """For a module's fixture: a Basic-auth registry holding team/app:v1, stopped after."""
    registry = htpasswd_registry(directory, user, password)
    try:
        registry.push_manifest("team/app", "v1")
        yield registry
    finally:
        registry.stop()


def serving_issuer(directory: Path, user: str, password: str) -> Iterator[TokenIssuer]:
    """For a module's fixture: a token issuer for `user`, stopped after."""
    issuer = TokenIssuer(directory, user=user, password=password).start()
    try:
        yield issuer
    finally:
        issuer.stop()


def push_with_token(registry: Registry, issuer: TokenIssuer, repository: str, tag: str) -> str:
    """An image pushed to a token-auth registry, with a push token minted directly."""
    token = issuer.token([f"repository:{repository}:pull,push"])
    return registry.push_manifest(repository, tag, authorization=f"Bearer {token}")


class RefusingProxy(_LoopbackServer):
    """An HTTP proxy on loopback that refuses every CONNECT (HTTP 403), as a proxy does whose
    policy denies the destination; it records that it was asked."""

    method = "CONNECT"

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        self.asked += 1
        _empty_answer(handler, 403)


class AnonymousRegistry(_LoopbackServer):
    """A registry API root open to anyone (`GET /v2/` answers 200 without credentials) that
    refuses wrong credentials when they are sent, as some registries do for public content."""

    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        given = handler.headers.get("Authorization")
        ok = handler.path == "/v2/" and given in (None, self.expected)
        _empty_answer(handler, 200 if ok else 401)
