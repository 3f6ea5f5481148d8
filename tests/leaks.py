"""Secrets stay secret: every credential a test writes is remembered here, and everything the
operator said (its logs, Events, statuses) is kept here from clusters that are torn down early,
so the last test of the session can search all of it for those bytes."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

# A needle shorter than this would match by chance (e.g. a password "pw").
MIN_NEEDLE = 8


@dataclass
class Ledger:
    secrets: set[bytes] = field(default_factory=set)  # passwords, tokens, whole auth values
    pairs: set[tuple[bytes, bytes]] = field(default_factory=set)  # (username, password)
    haystacks: list[tuple[str, str]] = field(default_factory=list)  # (where, text)

    def credential(self, username: str | bytes | None, password: str | bytes | None) -> None:
        user = username.encode() if isinstance(username, str) else username or b""
        pw = password.encode() if isinstance(password, str) else password or b""
        if pw:
            self.secrets.add(pw)
            self.pairs.add((user, pw))

    def dockerconfig(self, text: str | bytes) -> None:
        """The `auths` entries of a .dockerconfigjson a test wrote (where it parses)."""
        try:
            auths = json.loads(text).get("auths") or {}
        except (ValueError, AttributeError, RecursionError):
            return
        for entry in auths.values() if isinstance(auths, dict) else ():
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("password"), str):
                self.credential(entry.get("username") or "", entry["password"])
            if isinstance(entry.get("auth"), str):
                self.secrets.add(entry["auth"].encode())

    def keep(self, where: str, text: str) -> None:
        self.haystacks.append((where, text))

    def needles(self) -> dict[str, bytes]:
        """Every form a credential could leak in: plain, base64, base64 of user:password. In
        base64 a value reads differently by its offset in what was encoded (mod 3): each is
        searched in all three alignments, so one embedded in a larger encoded document (a
        whole .dockerconfigjson) is found too."""
        out: dict[str, bytes] = {}
        for pw in self.secrets:
            if len(pw) >= MIN_NEEDLE:
                out[f"plain {_short(pw)}"] = pw
                out[f"base64 {_short(pw)}"] = base64.b64encode(pw)
                for i, needle in enumerate(base64_alignments(pw)):
                    out[f"base64 at offset {i} mod 3 {_short(pw)}"] = needle
        for user, pw in self.pairs:
            if len(pw) >= MIN_NEEDLE:
                out[f"base64 user:password {_short(pw)}"] = base64.b64encode(user + b":" + pw)
        return out


def base64_alignments(value: bytes) -> list[bytes]:
    """What base64 of any text containing `value` must contain, for each of the three offsets
    `value` can have within its 3-byte groups: the encoding of its whole groups only (the
    partial groups at either end depend on the neighbouring bytes)."""
    out = []
    for skip in range(3):
        rest = value[skip:]
        whole = rest[: len(rest) // 3 * 3]
        if len(whole) >= 6:  # at least 8 base64 characters: not found by chance
            out.append(base64.b64encode(whole))
    return out


def _short(b: bytes) -> str:
    """How a finding names its needle without printing it."""
    return f"<{len(b)} bytes, starts {b[:2]!r}>"


LEDGER = Ledger()


def operator_haystacks(cp: Any, k8s: Any, label: str) -> list[tuple[str, str]]:
    """The operator's logs, every Event it posted and every TenantRegistry status, as text."""
    import pykube

    out = [
        (f"{label} {p.name}", p.read_text(errors="replace"))
        for p in sorted(cp.logs_dir.glob("operator*.log"))
    ]
    events = [
        e.obj
        for e in pykube.Event.objects(k8s.api, namespace=pykube.all)
        if (e.obj.get("source") or {}).get("component") == "tenant-registry-operator"
        or (e.obj.get("involvedObject") or {}).get("kind") == "TenantRegistry"
    ]
    out.append((f"{label} Events", json.dumps(events)))
    statuses = [t.obj.get("status") for t in k8s.TenantRegistry.objects(k8s.api)]
    out.append((f"{label} TenantRegistry statuses", json.dumps(statuses)))
    return out
