"""The Registry v2 authentication handshake, as values: no I/O.

`GET /v2/` answers 401 with a `WWW-Authenticate` challenge: `Basic realm=...` (send the
credentials again with Basic auth) or `Bearer realm=...,service=...` (ask the realm for a
token with the credentials, the `service` and, for a probe image, the scope
`repository:NAME:pull`; then send the token). registryclient.py does the HTTP by these rules.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tenant_registry.imagerefs import InvalidReference, parse

# Docker Hub's keys (`https://index.docker.io/v1/`, `docker.io`) name its API host.
DOCKER_HUB_HOSTS = ("index.docker.io", "docker.io", "registry-1.docker.io")
DOCKER_HUB_API = "https://registry-1.docker.io"

# A HEAD on a manifest must accept every kind a tag may point to, or the registry answers 404.
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    )
)

# Why a check failed (the CredentialsValid condition's reason); "Verified" when it passed.
VERIFIED = "Verified"
UNAUTHORIZED = "Unauthorized"  # the registry (or its token service) rejected the credentials
FORBIDDEN = "Forbidden"  # accepted, but not allowed to pull the probe image
PROBE_NOT_FOUND = "ProbeImageNotFound"
UNREACHABLE = "Unreachable"  # no connection (refused, DNS, proxy)
TIMEOUT = "Timeout"
TLS_ERROR = "TLSError"  # the certificate did not verify, or no TLS where TLS was expected
UNEXPECTED = "UnexpectedResponse"  # an answer the handshake does not allow
INSECURE_REALM = "InsecureRealm"  # an https registry's token service on plain http


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "basic", "bearer", ...
    params: tuple[tuple[str, str], ...] = ()  # names lowercase, in the header's order

    def get(self, name: str) -> str:
        return next((v for k, v in self.params if k == name), "")


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(,|$))")


def parse_challenges(header: str) -> tuple[Challenge, ...]:
    """RFC 7235 challenges (`Scheme k=v, k="quoted", Other ...`); token68 forms are skipped."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " \t,":
            i += 1
        m = _TOKEN.match(header, i)
        if not m:
            i += 1  # junk: skip a character and try again
            continue
        word, i = m.group(), m.end()
        j = i
        while j < n and header[j] in " \t":
            j += 1
        if j < n and header[j] == "=" and out:
            value, i = _value(header, j + 1)
            out[-1][1].append((word.lower(), value))
            continue
        out.append((word.lower(), []))
        t68 = _TOKEN68.match(header, j)
        i = t68.end() if t68 else j  # `Scheme token68`: credentials-like data, skipped
    return tuple(Challenge(s, tuple(p)) for s, p in out)


def _value(header: str, i: int) -> tuple[str, int]:
    n = len(header)
    while i < n and header[i] in " \t":
        i += 1
    if i < n and header[i] == '"':
        chars: list[str] = []
        i += 1
        while i < n and header[i] != '"':
            if header[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(header[i])
            i += 1
        return "".join(chars), i + 1
    m = _TOKEN.match(header, i)
    if not m:
        return "", i
    return m.group(), m.end()


def choose(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer before Basic; None if neither is offered."""
    found = {c.scheme: c for c in reversed(tuple(challenges))}
    return found.get("bearer") or found.get("basic")


def api_base(server: str) -> str:
    """The registry API's base URL for a `server` key (its path is the kubelet's, not the
    API's). No scheme means https; Docker Hub's keys mean its API host. ValueError for a glob."""
    scheme, sep, rest = server.partition("://")
    if not sep:
        scheme, rest = "https", server
    host = rest.split("/", 1)[0]
    if "*" in host or "?" in host or "[" in host.lstrip("["):
        raise ValueError("a server with a glob names no one registry to check")
    if not host:
        raise ValueError("the server names no host")
    if host.lower() in DOCKER_HUB_HOSTS:
        return DOCKER_HUB_API
    return f"{scheme.lower()}://{host}"


@dataclass(frozen=True)
class ProbeImage:
    repository: str
    reference: str  # a tag or a digest

    @property
    def scope(self) -> str:
        return f"repository:{self.repository}:pull"

    @property
    def path(self) -> str:
        return f"/v2/{self.repository}/manifests/{self.reference}"

    def __str__(self) -> str:
        sep = "@" if ":" in self.reference else ":"
        return f"{self.repository}{sep}{self.reference}"


def parse_probe_image(value: str) -> ProbeImage:
    """`repository:tag` or `repository@digest`, the repository within the registry (no host).
    ValueError saying what is wrong."""
    try:
        ref = parse(value)
    except InvalidReference as e:
        raise ValueError(f"{value!r}: {e}") from None
    first = ref.name.split("/", 1)[0]
    if "/" in ref.name and ("." in first or ":" in first or first == "localhost"):
        raise ValueError(f"{value!r}: name the repository within the registry, without its host")
    if not ref.tag and not ref.digest:
        raise ValueError(f"{value!r}: give a tag (repository:tag) or a digest (repository@digest)")
    return ProbeImage(ref.name, ref.digest or ref.tag)


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class InsecureRealm(ValueError):
    pass


def token_url(challenge: Challenge, account: str, scope: str = "", *, base: str = "") -> str:
    """The token request for a Bearer challenge (docker's token spec: GET realm?service=..&
    scope=..&account=..). ValueError if the realm is not an http(s) URL; InsecureRealm if
    the registry (`base`) is https and the realm plain http (the credentials would cross in
    cleartext). A realm on another host is allowed, as docker and containerd allow it: the
    registry names its token service, and the credentials go there."""
    realm = challenge.get("realm")
    parts = urllib.parse.urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("the Bearer challenge's realm is not an http(s) URL")
    if parts.scheme == "http" and base.lower().startswith("https://"):
        raise InsecureRealm(
            "the https registry names a plain-http token service: the credentials are not "
            "sent in cleartext"
        )
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if challenge.get("service"):
        query.append(("service", challenge.get("service")))
    if scope:
        query.append(("scope", scope))
    if account:
        query.append(("account", account))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def token_from_response(body: bytes) -> str:
    """`token` (or OAuth's `access_token`) of a token service's JSON answer; ValueError."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the token service's answer is not JSON") from None
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise ValueError("the token service's answer holds no token")
    return token


def rejected(status: int, what: str) -> tuple[str, str]:
    """(reason, message) for an authenticated request answered with `status` (not 200)."""
    if status == 401:
        return UNAUTHORIZED, f"{what}: the registry rejected the credentials (HTTP 401)"
    if status == 403:
        return FORBIDDEN, f"{what}: the credentials are not allowed (HTTP 403)"
    if status == 404 and "manifest" in what:
        return PROBE_NOT_FOUND, f"{what}: not found (HTTP 404)"
    return UNEXPECTED, f"{what}: unexpected HTTP {status}"


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy for `url` by the environment, as curl and Go read it: HTTPS_PROXY or
    HTTP_PROXY by the URL's scheme (either case), unless NO_PROXY names its host (`*`, a host,
    a `.domain` or `domain` suffix, optionally with `:port`). None: connect directly."""
    env = {k.lower(): v for k, v in environ.items() if v}
    parts = urllib.parse.urlsplit(url)
    proxy = env.get(f"{parts.scheme}_proxy")
    if not proxy:
        return None
    host = (parts.hostname or "").lower()
    port = str(parts.port or "")
    for entry in env.get("no_proxy", "").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return None
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != port:
            continue
        name = name.strip("[]").lstrip(".")
        if host == name or host.endswith("." + name):
            return None
    return proxy


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and its base64 forms) replaced: for error messages built from
    an HTTP library's exceptions, which may quote a request."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text


def secret_forms(username: str, password: str) -> tuple[str, ...]:
    """Every way the password may appear in a request: as it is, in Basic auth, URL-quoted."""
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    return (password, basic, urllib.parse.quote(password, safe=""), basic.rstrip("="))


def proxy_secrets(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The userinfo of every proxy URL in the environment (`http://user:pass@host`), in the
    forms a message may quote it: to redact from messages."""
    out: list[str] = []
    for key, value in environ.items():
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy") or not value:
            continue
        netloc = urllib.parse.urlsplit(value if "://" in value else f"http://{value}").netloc
        userinfo, at, _ = netloc.rpartition("@")
        if not at or not userinfo:
            continue
        user, _, password = userinfo.partition(":")
        out += [userinfo, urllib.parse.unquote(userinfo), password, urllib.parse.unquote(password)]
        out.append(base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode())
        if not password:
            out.append(user)
    return tuple(s for s in out if s)
