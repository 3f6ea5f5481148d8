"""The `.dockerconfigjson` bytes, identical to `kubectl create secret docker-registry`.

kubectl marshals with Go's encoding/json: map keys (the servers) sorted, struct fields in
declaration order (username, password, email, auth) and omitted when empty, no whitespace,
and `<`, `>`, `&`, U+2028, U+2029 escaped as \\uXXXX. `auth` is base64("username:password").
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable

from tenant_registry.spec import Credentials

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_json(value: object) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in _GO_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def entry(creds: Credentials) -> dict[str, str]:
    """One `auths` entry, fields in kubectl's order, empty ones left out."""
    user, password = creds.username, creds.password.reveal()
    fields = {
        "username": user,
        "password": password,
        "email": creds.email,
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode(),
    }
    return {k: v for k, v in fields.items() if v}


def build(registries: Iterable[tuple[str, Credentials]]) -> bytes:
    """The whole document for (server, credentials) pairs, servers in sorted order."""
    auths = {server: entry(creds) for server, creds in sorted(registries, key=lambda r: r[0])}
    return _go_json({"auths": auths}).encode()


def content_hash(data: bytes) -> str:
    """A short, stable fingerprint of a copy's content: safe for status and annotations."""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]
