"""TenantRegistry objects and credential Secrets -> frozen values, or errors naming the field.

Nothing else in the code reads raw spec dicts. Credential values live in `Redacted`, whose
repr and str never show the content, so a stray log line or exception cannot leak them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tenant_registry import handshake, names
from tenant_registry.handshake import ProbeImage
from tenant_registry.registrykeys import InvalidKey, parse_key

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_PATTERN = re.compile(r"^!?[a-z0-9*]([-a-z0-9*.]*[a-z0-9*])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class Redacted:
    """A secret string. `reveal()` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redacted) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidInput(ValueError):
    """One or more field errors; its message names every field and never a secret value."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in errors))


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    """A standard Kubernetes LabelSelector; the empty selector matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()


@dataclass(frozen=True)
class Selection:
    """Names (exact or `*` globs, `!` to exclude) OR a label selector, minus exclusions."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    selector: LabelSelector | None = None


@dataclass(frozen=True)
class CredentialsRef:
    name: str
    namespace: str


@dataclass(frozen=True)
class CaRef:
    """Where the CA bundle (PEM) to trust for a registry is: a key of a Secret or ConfigMap
    in the operator's namespace."""

    kind: str  # "Secret" | "ConfigMap"
    name: str
    key: str = "ca.crt"


@dataclass(frozen=True)
class Registry:
    server: str
    credentials_ref: CredentialsRef
    verify: bool = True  # check the credentials against the registry before distributing them
    probe_image: ProbeImage | None = None
    ca: CaRef | None = None


@dataclass(frozen=True)
class Credentials:
    username: str
    password: Redacted = field(repr=False)
    email: str = ""


@dataclass(frozen=True)
class TenantSpec:
    name: str
    uid: str
    generation: int
    secret_name: str
    registries: tuple[Registry, ...]
    namespaces: Selection
    service_accounts: Selection
    conflict_policy: str  # "Skip" | "Adopt"
    suspend: bool
    # The audit's opt-in: delete controller-owned Pods stuck on a pull that the tenant's
    # ServiceAccount entry, added after they were created, would fix.
    restart_stuck_pods: bool = False


DEFAULT_SERVICE_ACCOUNTS = Selection(include=("default",))


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(FieldError(path, message))


def parse_tenant(body: Mapping[str, Any], operator_namespace: str) -> TenantSpec:
    """Validate a TenantRegistry object; raise InvalidInput naming every bad field."""
    errors = _Errors()
    meta = body.get("metadata") or {}
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidInput([FieldError("spec", "is required")])

    secret_name = spec.get("secretName")
    if not isinstance(secret_name, str) or not secret_name:
        errors.add("spec.secretName", "is required")
    elif len(secret_name) > 253 or not _DNS_SUBDOMAIN.match(secret_name):
        errors.add(
            "spec.secretName",
            f"{secret_name!r} is not a valid Secret name (lowercase RFC 1123 subdomain)",
        )

    name = str(meta.get("name", ""))
    if len(name) > names.LABEL_VALUE_MAX:
        # The CRD rejects such names at admission; objects from before that rule get this.
        errors.add(
            "metadata.name",
            f"is {len(name)} characters; at most {names.LABEL_VALUE_MAX}, as it is a label value",
        )
    registries = _parse_registries(spec.get("registries"), operator_namespace, errors)
    namespaces = _parse_selection(spec.get("namespaces"), "spec.namespaces", errors, None)
    service_accounts = _parse_selection(
        spec.get("serviceAccounts"), "spec.serviceAccounts", errors, DEFAULT_SERVICE_ACCOUNTS
    )
    policy = spec.get("conflictPolicy", "Skip")
    if policy not in ("Skip", "Adopt"):
        errors.add("spec.conflictPolicy", f"must be Skip or Adopt, not {policy!r}")
    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        errors.add("spec.suspend", "must be true or false")
    restart = spec.get("restartStuckPods", False)
    if not isinstance(restart, bool):
        errors.add("spec.restartStuckPods", "must be true or false")

    if errors.items:
        raise InvalidInput(errors.items)
    return TenantSpec(
        name=name,
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        secret_name=str(secret_name),
        registries=registries,
        namespaces=namespaces,
        service_accounts=service_accounts,
        conflict_policy=str(policy),
        suspend=bool(suspend),
        restart_stuck_pods=bool(restart),
    )


def _parse_registries(raw: Any, operator_namespace: str, errors: _Errors) -> tuple[Registry, ...]:
    if not isinstance(raw, list) or not raw:
        errors.add("spec.registries", "needs at least one registry")
        return ()
    out: list[Registry] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        path = f"spec.registries[{i}]"
        if not isinstance(item, Mapping):
            errors.add(path, "must be an object")
            continue
        server = item.get("server")
        if not isinstance(server, str) or not server:
            errors.add(f"{path}.server", "is required")
            continue
        try:
            key = str(parse_key(server))
        except InvalidKey as e:
            errors.add(f"{path}.server", f"{server!r} {e}")
            continue
        if key in seen:
            errors.add(
                f"{path}.server",
                f"{server!r} is the same key as spec.registries[{seen[key]}].server",
            )
            continue
        seen[key] = i
        ref = item.get("credentialsRef")
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref["name"]:
            errors.add(f"{path}.credentialsRef.name", "is required")
            continue
        ns = ref.get("namespace") or operator_namespace
        if ns != operator_namespace:
            errors.add(
                f"{path}.credentialsRef.namespace",
                f"must be {operator_namespace!r}: the operator reads credentials only in its "
                "own namespace",
            )
            continue
        verify, probe, ca = _parse_verification(item, server, path, errors)
        out.append(
            Registry(
                server=server,
                credentials_ref=CredentialsRef(ref["name"], ns),
                verify=verify,
                probe_image=probe,
                ca=ca,
            )
        )
    return tuple(out)


_CA_KINDS = ("Secret", "ConfigMap")
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def _parse_verification(
    item: Mapping[str, Any], server: str, path: str, errors: _Errors
) -> tuple[bool, ProbeImage | None, CaRef | None]:
    """`verify`, `probeImage` and `caRef` of one registry."""
    verify = item.get("verify", True)
    if not isinstance(verify, bool):
        errors.add(f"{path}.verify", "must be true or false")
        verify = False
    probe = None
    raw_probe = item.get("probeImage")
    if raw_probe is not None:
        try:
            probe = handshake.parse_probe_image(str(raw_probe))
        except ValueError as e:
            errors.add(f"{path}.probeImage", str(e))
    ca = None
    raw_ca = item.get("caRef")
    if raw_ca is not None:
        if not isinstance(raw_ca, Mapping):
            errors.add(f"{path}.caRef", "must be an object")
        elif raw_ca.get("kind") not in _CA_KINDS:
            errors.add(f"{path}.caRef.kind", "must be Secret or ConfigMap")
        elif not isinstance(raw_ca.get("name"), str) or not raw_ca["name"]:
            errors.add(f"{path}.caRef.name", "is required")
        elif not _DATA_KEY.match(str(raw_ca.get("key", "ca.crt"))):
            errors.add(f"{path}.caRef.key", "is not a valid data key")
        else:
            ca = CaRef(str(raw_ca["kind"]), raw_ca["name"], str(raw_ca.get("key", "ca.crt")))
    if verify:
        try:
            handshake.api_base(server)
        except ValueError as e:
            errors.add(f"{path}.verify", f"{e}: set verify: false for {server!r}")
    return verify, probe, ca


def _parse_selection(raw: Any, path: str, errors: _Errors, default: Selection | None) -> Selection:
    if raw is None:
        if default is not None:
            return default
        errors.add(path, "is required: give names, a selector, or both")
        return Selection()
    if not isinstance(raw, Mapping):
        errors.add(path, "must be an object")
        return Selection()
    include: list[str] = []
    exclude: list[str] = []
    names_raw = raw.get("names", [])
    if not isinstance(names_raw, list):
        errors.add(f"{path}.names", "must be a list of names or globs")
        names_raw = []
    for j, pattern in enumerate(names_raw):
        if not isinstance(pattern, str) or not _NAME_PATTERN.match(pattern):
            errors.add(f"{path}.names[{j}]", f"{pattern!r} is not a name, glob or !name")
        elif pattern.startswith("!"):
            exclude.append(pattern[1:])
        else:
            include.append(pattern)
    selector = None
    if raw.get("selector") is not None:
        selector = parse_label_selector(raw["selector"], f"{path}.selector", errors)
    if not include and selector is None and default is None:
        errors.add(path, "selects nothing: give names, a selector, or both")
    return Selection(include=tuple(include), exclude=tuple(exclude), selector=selector)


def parse_label_selector(raw: Any, path: str, errors: _Errors) -> LabelSelector | None:
    if not isinstance(raw, Mapping):
        errors.add(path, "must be a LabelSelector object")
        return None
    labels: list[tuple[str, str]] = []
    for k, v in (raw.get("matchLabels") or {}).items():
        if not _LABEL_KEY.match(str(k)) or not isinstance(v, str) or not _LABEL_VALUE.match(v):
            errors.add(f"{path}.matchLabels", f"{k!r}: {v!r} is not a valid label")
        else:
            labels.append((k, v))
    reqs: list[Requirement] = []
    for j, expr in enumerate(raw.get("matchExpressions") or []):
        epath = f"{path}.matchExpressions[{j}]"
        if not isinstance(expr, Mapping):
            errors.add(epath, "must be an object")
            continue
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            errors.add(f"{epath}.key", f"{key!r} is not a valid label key")
        elif op not in OPERATORS:
            errors.add(f"{epath}.operator", f"must be one of {', '.join(OPERATORS)}")
        elif op in ("In", "NotIn") and not values:
            errors.add(f"{epath}.values", f"must be non-empty for {op}")
        elif op in ("Exists", "DoesNotExist") and values:
            errors.add(f"{epath}.values", f"must be empty for {op}")
        else:
            reqs.append(Requirement(key, str(op), tuple(str(v) for v in values)))
    return LabelSelector(tuple(sorted(labels)), tuple(reqs))


# -- credential Secrets ------------------------------------------------------------------


def parse_credentials(
    secret: Mapping[str, Any] | None, registry: Registry, path: str
) -> Credentials:
    """Read one registry's credentials from its Secret (basic-auth, Opaque or dockerconfig)."""
    ref = registry.credentials_ref
    where = f"{path}.credentialsRef"
    if secret is None:
        raise InvalidInput([FieldError(where, f"Secret {ref.namespace}/{ref.name} not found")])
    kind = secret.get("type") or "Opaque"
    data = secret.get("data") or {}
    label = f"Secret {ref.namespace}/{ref.name}"
    if kind == names.DOCKERCONFIGJSON_TYPE:
        return _from_dockerconfig(data, registry.server, where, label)
    if kind not in (names.BASIC_AUTH_TYPE, "Opaque"):
        raise InvalidInput(
            [
                FieldError(
                    where,
                    f"{label} has type {kind!r}; use "
                    "kubernetes.io/basic-auth, Opaque or "
                    "kubernetes.io/dockerconfigjson",
                )
            ]
        )
    errors: list[FieldError] = []
    values: dict[str, str] = {}
    for key in ("username", "password", "email"):
        if key not in data:
            if key != "email":
                errors.append(FieldError(where, f"{label} has no key {key!r}"))
            continue
        try:
            values[key] = _b64(data[key])
        except ValueError:
            errors.append(FieldError(where, f"{label} key {key!r} is not valid base64 UTF-8"))
    if errors:
        raise InvalidInput(errors)
    return _credentials(
        values["username"], values["password"], values.get("email", ""), where, label
    )


def _credentials(user: str, password: str, email: str, where: str, label: str) -> Credentials:
    if not user or not password:
        raise InvalidInput([FieldError(where, f"{label} has an empty username or password")])
    if ":" in user:
        raise InvalidInput([FieldError(where, f"{label} username must not contain ':'")])
    return Credentials(username=user, password=Redacted(password), email=email)


def _from_dockerconfig(data: Mapping[str, Any], server: str, where: str, label: str) -> Credentials:
    raw = data.get(names.DOCKERCONFIGJSON_KEY)
    if raw is None:
        raise InvalidInput([FieldError(where, f"{label} has no key '.dockerconfigjson'")])
    try:
        doc = json.loads(_b64(raw))
    except ValueError:
        raise InvalidInput(
            [FieldError(where, f"{label} key '.dockerconfigjson' is not valid base64 JSON")]
        ) from None
    except RecursionError:  # valid JSON to the API server (Go allows 10,000 levels)
        raise InvalidInput(
            [FieldError(where, f"{label} key '.dockerconfigjson' is nested too deeply to read")]
        ) from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    entry = auths.get(server) if isinstance(auths, dict) else None
    if not isinstance(entry, dict):
        raise InvalidInput([FieldError(where, f"{label} has no auths entry for {server!r}")])
    user, password = entry.get("username") or "", entry.get("password") or ""
    if (not user or not password) and entry.get("auth"):
        try:
            user, _, password = _b64(str(entry["auth"])).partition(":")
        except ValueError:
            raise InvalidInput(
                [FieldError(where, f"{label} auth for {server!r} is not valid base64")]
            ) from None
    return _credentials(str(user), str(password), str(entry.get("email") or ""), where, label)


def _b64(value: Any) -> str:
    try:
        return base64.b64decode(str(value), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise ValueError("bad base64") from e
