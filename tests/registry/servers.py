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
from pathlib import Path
from typing import Any

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


class TokenIssuer:
    """docker's token spec, for one user: GET /token?service=..&scope=..&account=.. with Basic
    auth answers a JWT granting the scopes asked for; a wrong password gets 401. Every request
    is recorded (scopes, accounts; never the password)."""

    service = "tro-test-registry"
    issuer = "tro-test-issuer"

    def __init__(self, directory: Path, *, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.port = _free_port()
        root_key = ec.generate_private_key(ec.SECP256R1())
        self._root = _ec_cert("tro-token-root", root_key, ("tro-token-root", root_key))
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._leaf = _ec_cert("tro-token-signer", self._key, ("tro-token-root", root_key))
        directory.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = directory / "token-root.crt"
        self.rootcertbundle.write_bytes(self._root.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, Any]] = []
        self.chunked = False  # the answer in two writes 100 ms apart (a real network does so)
        self._server: http.server.ThreadingHTTPServer | None = None

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
            handler.send_response(401 if url.path == "/token" else 404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
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

    def start(self) -> TokenIssuer:
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


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


def push_with_token(registry: Registry, issuer: TokenIssuer, repository: str, tag: str) -> str:
    """An image pushed to a token-auth registry, with a push token minted directly."""
    token = issuer.token([f"repository:{repository}:pull,push"])
    return registry.push_manifest(repository, tag, authorization=f"Bearer {token}")


class RefusingProxy:
    """An HTTP proxy on loopback that refuses every CONNECT (HTTP 403), as a proxy does whose
    policy denies the destination; it records that it was asked."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.asked = 0
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> RefusingProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_CONNECT(self) -> None:
                proxy.asked += 1
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class AnonymousRegistry:
    """A registry API root open to anyone (`GET /v2/` answers 200 without credentials) that
    refuses wrong credentials when they are sent, as some registries do for public content."""

    def __init__(self, user: str, password: str) -> None:
        self.port = _free_port()
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> AnonymousRegistry:
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                given = self.headers.get("Authorization")
                ok = self.path == "/v2/" and given in (None, registry.expected)
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
