"""Fuzzed input: random TenantRegistry specs and credential Secrets, valid and invalid, applied
to the real API server. Each is rejected at admission (naming the field), or accepted and then
either works or is reported by a condition and an Event naming the field, with nothing written
for it. The operator never crashes or loops (its writes stop, its log has no traceback) and
another tenant's copies stay untouched.

Hypothesis draws the inputs (seeded by the session's fault seed); every example is checked and
the violations are collected, so one bad input does not hide the others. Known-hostile inputs
(deep JSON nesting, non-UTF-8 bytes, oversized content) run after the drawn ones, every time.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
import urllib.error
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tenant_registry import names
from tenant_registry.localcluster.controlplane import KubectlError
from tests.cluster.tenants import OPERATOR_NS
from tests.faults.isolated import AuditTail, IsolatedCluster
from tests.leaks import LEDGER
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.faults]

FROZEN = ("InvalidSpec", "CredentialsInvalid")
WORKING = ("Synced", "Progressing", "NamespacesFailed", "Suspended")
NAMESPACES = {"fz-a": {}, "fz-b": {"team": "x"}, "fz-c": {"team": "y"}}
BYSTANDER = "bystander"
BYSTANDER_NAMESPACES = {"by-1": {"team": "x"}, "by-2": {"team": "x", "tier": "prod"}}

# -- strategies ----------------------------------------------------------------------------

junk = st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2))
label_text = st.text(alphabet="abcxyz-./_Z9 ", max_size=12)
servers = st.one_of(
    st.sampled_from(
        [
            "fz.example",
            "fz.example:5000",
            "https://index.docker.io/v1/",
            "*.fz.example",
            "http://fz.example/team/path",
            "fz.example:99999",
            "fz..example",
            "*",
            "[::1]:5000",
            "FZ.EXAMPLE",
            "a b",
            "",
        ]
    ),
    st.text(max_size=30),
)
cred_refs = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["c0", "c1", "missing"])}),
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["c0", "c1"]),
            "namespace": st.sampled_from([OPERATOR_NS, "default", ""]),
        }
    ),
    st.just({}),
    junk,
)
# The fuzzed registries do not exist: not checked against them (verify: false).
no_verify = st.just(False)
registry_items = st.one_of(
    st.fixed_dictionaries({"server": servers, "credentialsRef": cred_refs, "verify": no_verify}),
    st.fixed_dictionaries({"server": servers, "verify": no_verify}),
    junk,
)
selectors = st.one_of(
    st.fixed_dictionaries(
        {"matchLabels": st.dictionaries(label_text, st.one_of(label_text, junk), max_size=2)}
    ),
    st.fixed_dictionaries(
        {
            "matchExpressions": st.lists(
                st.fixed_dictionaries(
                    {
                        "key": st.sampled_from(["team", "tier", "bad key", ""]),
                        "operator": st.sampled_from(
                            ["In", "NotIn", "Exists", "DoesNotExist", "Is"]
                        ),
                    },
                    optional={"values": st.lists(st.sampled_from(["x", "y", "prod"]), max_size=2)},
                ),
                max_size=2,
            )
        }
    ),
    st.just({}),
    junk,
)
name_lists = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "fz-a",
                "fz-*",
                "*",
                "!fz-a",
                "by-1",
                "kube-system",
                OPERATOR_NS,
                "default",
                "Bad_Name",
            ]
        ),
        st.text(alphabet="abz-*!.", max_size=8),
    ),
    max_size=4,
)
selections = st.one_of(
    st.fixed_dictionaries({}, optional={"names": name_lists, "selector": selectors}),
    junk,
)
wild_specs = st.fixed_dictionaries(
    {},
    optional={
        "secretName": st.one_of(
            st.sampled_from(["fz-pull", "by-pull", "regcred", "a" * 254, "Not_A_Name"]),
            st.text(alphabet="abc-.9Z", max_size=20),
            junk,
        ),
        "registries": st.one_of(st.lists(registry_items, max_size=3), junk),
        "namespaces": selections,
        "serviceAccounts": selections,
        "conflictPolicy": st.one_of(st.sampled_from(["Skip", "Adopt", "skip", ""]), junk),
        "suspend": st.one_of(st.booleans(), junk, st.just("yes")),
    },
)
# Mostly well-formed specs (so the operator, not only the schema, meets them; Hypothesis
# leans to small integers and first elements, so those pick the well-formed side), with one
# field at a time going wrong in the optional ones; and now and then a wild one.
good_servers = st.one_of(
    st.sampled_from(
        [
            "fz.example",
            "fz.example:5000",
            "https://index.docker.io/v1/",
            "*.fz.example",
            "http://fz.example/team/path",
            "localhost:5000",
            "[::1]:5000",
            "fz.example:99999",
            "-bad.example",
        ]
    ),
    st.from_regex(
        r"[a-z][a-z0-9]{0,8}(\.[a-z0-9]{1,8}){0,2}(:[0-9]{1,5})?(/[a-z]{1,6})?", fullmatch=True
    ),
)
good_specs = st.fixed_dictionaries(
    {
        "secretName": st.one_of(
            st.sampled_from(["fz-pull", "by-pull", "regcred", "fz.pull"]),
            st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
        ),
        "registries": st.lists(
            st.fixed_dictionaries(
                {
                    "server": good_servers,
                    "verify": st.just(False),
                    "credentialsRef": st.fixed_dictionaries(
                        {"name": st.sampled_from(["c0", "c0", "c0", "c1", "missing"])},
                        optional={"namespace": st.just(OPERATOR_NS)},
                    ),
                }
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda r: r["server"],
        ),
        "namespaces": st.one_of(
            st.fixed_dictionaries(
                {"names": st.lists(st.sampled_from(["fz-a", "fz-*", "*", "by-1"]), min_size=1)},
                optional={"selector": st.just({"matchLabels": {"team": "x"}})},
            ),
            st.fixed_dictionaries(
                {
                    "selector": st.sampled_from(
                        [
                            {"matchLabels": {"team": "x"}},
                            {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
                            {
                                "matchExpressions": [
                                    {"key": "tier", "operator": "NotIn", "values": ["prod"]}
                                ]
                            },
                            {},
                        ]
                    )
                },
                optional={"names": st.just(["!fz-b"])},
            ),
        ),
    },
    optional={
        "serviceAccounts": st.one_of(
            st.sampled_from(
                [
                    {"names": ["default"]},
                    {"names": ["*"]},
                    {"names": ["*", "!default"]},
                    {"selector": {"matchLabels": {"pulls": "yes"}}},
                    {"names": ["builder-*"], "selector": {}},
                ]
            ),
            selections,
        ),
        "conflictPolicy": st.sampled_from(["Skip", "Adopt", "Adopt", "Sometimes"]),
        "suspend": st.sampled_from([False, False, True]),
    },
)
specs = st.integers(0, 3).flatmap(lambda i: wild_specs if i == 3 else good_specs)
secret_bytes = st.one_of(st.binary(max_size=24), st.text(max_size=24).map(str.encode))


@st.composite
def credential_secrets(draw: st.DrawFn) -> dict[str, Any] | None:
    """A credentials Secret as the API sees it (type, base64 data), or None (missing)."""
    # sampled_from keeps repeats: mostly credentials that work, so the operator meets them.
    kind = draw(
        st.sampled_from(["basic"] * 3 + ["opaque"] + ["dockerconfig"] * 2 + ["other", "missing"])
    )
    user = draw(
        st.integers(0, 3).flatmap(
            lambda i: secret_bytes if i == 3 else st.sampled_from([b"bot", b"robot$fz"])
        )
    )
    text_bytes = st.text(max_size=24).map(str.encode)
    # The test appends a unique token (see _credentials); now and then not UTF-8 at all.
    password = draw(
        st.integers(0, 3).flatmap(lambda i: st.binary(max_size=24) if i == 3 else text_bytes)
    )
    if kind == "missing":
        return None
    if kind in ("basic", "opaque", "other"):
        data = {"username": user, "password": password}
        if draw(st.integers(0, 4)) == 0:
            data.pop(draw(st.sampled_from(["username", "password"])))
        if draw(st.booleans()):
            data["email"] = draw(text_bytes)
        type_ = {"basic": names.BASIC_AUTH_TYPE, "opaque": "Opaque"}.get(kind) or draw(
            st.sampled_from(["example.com/custom", "kubernetes.io/ssh-auth"])
        )
        return {"type": type_, "data": data, "password": password}
    entry = draw(
        st.one_of(
            st.fixed_dictionaries({"username": st.just("bot"), "password": st.just("pw-")}),
            st.fixed_dictionaries({"username": st.text(max_size=8), "password": st.just("")}),
            st.fixed_dictionaries({"auth": st.text(max_size=12)}),
            st.just({"auth": "=="}),
            junk,
        )
    )
    server = draw(st.sampled_from([0, 0, 1]).flatmap(lambda i: [st.just("fz.example"), servers][i]))
    doc: Any = draw(
        st.sampled_from([0, 0, 1, 2]).flatmap(
            lambda i: [st.just({"auths": {server: entry}}), st.just({"auths": []}), junk][i]
        )
    )
    return {
        "type": names.DOCKERCONFIGJSON_TYPE,
        "dockerconfig": doc,
        "password": password,
        "user": user,
    }


# Inputs known to break parsers: always tried, after the drawn ones.
HOSTILE: list[tuple[str, dict[str, Any], list[dict[str, Any] | None]]] = [
    (
        "deeply nested .dockerconfigjson",
        {
            "secretName": "fz-pull",
            "registries": [
                {"server": "fz.example", "credentialsRef": {"name": "c0"}, "verify": False}
            ],
            "namespaces": {"names": ["fz-*"]},
        },
        [
            {
                "type": names.DOCKERCONFIGJSON_TYPE,
                "raw": b'{"auths":' + b"[" * 3000 + b"]" * 3000 + b"}",
            }
        ],
    ),
    (
        "non-UTF-8 password",
        {
            "secretName": "fz-pull",
            "registries": [
                {"server": "fz.example", "credentialsRef": {"name": "c0"}, "verify": False}
            ],
            "namespaces": {"names": ["fz-*"]},
        },
        [
            {
                "type": names.BASIC_AUTH_TYPE,
                "data": {"username": b"bot", "password": b"\xff\xfe\x00"},
                "password": b"\xff\xfe\x00",
            }
        ],
    ),
    (
        "credentials over 1 MiB once merged",
        {
            "secretName": "fz-pull",
            "registries": [
                {"server": "a.fz.example", "credentialsRef": {"name": "c0"}, "verify": False},
                {"server": "b.fz.example", "credentialsRef": {"name": "c1"}, "verify": False},
            ],
            "namespaces": {"names": ["fz-*"]},
        },
        [
            {
                "type": "Opaque",
                "data": {"username": b"bot", "password": b"p" * 400_000},
                "password": b"p" * 400_000,
            }
        ]
        * 2,
    ),
    (
        "another tenant's Secret name, selecting everything",
        {
            "secretName": "by-pull",
            "registries": [
                {"server": "fz.example", "credentialsRef": {"name": "c0"}, "verify": False}
            ],
            "namespaces": {"names": ["*"]},
            "conflictPolicy": "Adopt",
        },
        [
            {
                "type": names.BASIC_AUTH_TYPE,
                "data": {"username": b"bot", "password": b"pw"},
                "password": b"pw",
            }
        ],
    ),
]


# -- one example -----------------------------------------------------------------------------


@dataclass
class Fuzzing:
    c: IsolatedCluster
    audit: AuditTail
    bystander_copies: dict[str, str]  # namespace -> resourceVersion of the bystander's copy
    rng: random.Random
    count: int = 0
    violations: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    log_offset: int = 0

    def check(self, label: str, spec: dict[str, Any], creds: list[dict[str, Any] | None]) -> None:
        self.count += 1
        name = f"fz{self.count}"
        problems = []
        try:
            outcome = self._check_one(name, spec, creds)
        except AssertionError as e:
            outcome = "violation"
            problems.append(str(e))
        trouble = self._operator_trouble()
        if trouble:
            outcome = "violation"
            problems.append(trouble)
        if problems:
            self.violations.append(
                f"{label} {name}: " + "; ".join(problems) + f"\n  spec={json.dumps(spec)[:400]}"
            )
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _check_one(
        self, name: str, spec: dict[str, Any], creds: list[dict[str, Any] | None]
    ) -> str:
        k8s, cp = self.c.k8s, self.c.cp
        token = f"{self.rng.getrandbits(64):016x}"
        for j, cred in enumerate(creds):
            if cred is not None:
                self._credentials(f"{name}-c{j}", cred, token)
        spec = _bind_refs(spec, name)
        mark = self.audit.mark()
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name},
            "spec": spec,
        }
        try:
            cp.kubectl("apply", "-f", "-", input=json.dumps(body))
        except KubectlError as e:
            assert "spec" in str(e), f"rejected without naming a field: {e}"
            field = re.search(r"(spec[\w.\[\]]*)", str(e))
            return f"rejected at admission ({field.group(1) if field else '?'})"
        status = wait_for(
            lambda: (
                (s := k8s.status(name)).get("observedGeneration")
                == (k8s.tenant_obj(name) or {})["metadata"]["generation"]
                and any(c.get("type") == "Ready" for c in s.get("conditions") or [])
                and s
            ),
            what=f"{name}: status for its generation",
        )
        self._settle(name, mark)
        status = k8s.status(name) or status  # as it settled (credentials may arrive late)
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        if ready["reason"] in FROZEN:
            assert "spec." in ready["message"], f"message names no field: {ready['message']}"
            wait_for(
                lambda: any(e["reason"] == ready["reason"] for e in k8s.events(name)),
                what=f"{name}: {ready['reason']} Event",
            )
            written = [
                w
                for w in self.audit.operator_writes(mark)
                if w["objectRef"]["resource"] in ("secrets", "serviceaccounts")
            ]
            assert not written, f"frozen tenant written: {[w['objectRef'] for w in written]}"
            # e.g. "CredentialsInvalid (has no key 'password')": what the fuzz reached
            why = re.sub(r"^[^:]*: (Secret \S+ )?", "", ready["message"])[:40]
            outcome = f"{ready['reason']} ({why})"
        else:
            assert ready["reason"] in WORKING, f"Ready reason {ready['reason']}"
            outcome = "accepted, " + ready["reason"]
        k8s.delete_tenant(name)
        wait_for(lambda: k8s.tenant_obj(name) is None, what=f"{name} deleted", timeout=40)
        self._settle(name, mark)
        left = [s.namespace for s in _secrets(k8s, {names.LABEL_TENANT: name})]
        assert not left, f"copies left after deletion in {left}"
        return outcome

    def _credentials(self, secret_name: str, cred: dict[str, Any], token: str) -> None:
        password = cred.get("password", b"") + token.encode()
        if "raw" in cred:
            data = {names.DOCKERCONFIGJSON_KEY: cred["raw"]}
        elif "dockerconfig" in cred:
            doc = json.loads(json.dumps(cred["dockerconfig"]))
            for entry in (
                ((doc or {}).get("auths") or {}).values()
                if isinstance(doc, dict) and isinstance(doc.get("auths"), dict)
                else ()
            ):
                if isinstance(entry, dict) and "password" in entry:
                    entry["password"] = str(entry["password"]) + token
                if isinstance(entry, dict) and "auth" in entry:
                    entry["auth"] = str(entry["auth"]) + base64.b64encode(token.encode()).decode()
            data = {names.DOCKERCONFIGJSON_KEY: json.dumps(doc).encode()}
            LEDGER.dockerconfig(json.dumps(doc))
        else:
            data = dict(cred["data"])
            if "password" in data:
                data["password"] = password
            LEDGER.credential(data.get("username", b""), data.get("password"))
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": cred["type"],
            "metadata": {"name": secret_name, "namespace": OPERATOR_NS},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        try:
            self.c.cp.api("POST", f"/api/v1/namespaces/{OPERATOR_NS}/secrets", body)
        except urllib.error.HTTPError as e:  # the API validates some Secret types itself
            assert e.code in (400, 422), f"Secret {secret_name}: HTTP {e.code}"

    def _settle(self, name: str, mark: int, timeout: float = 30) -> None:
        """Writes stop: no operator write for 1.5 s, within `timeout` (else it loops)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = len(self.audit.operator_writes(mark))
            time.sleep(1.5)
            if len(self.audit.operator_writes(mark)) == before:
                return
        raise AssertionError(
            f"{name}: the operator kept writing for {timeout:.0f} s: "
            f"{len(self.audit.operator_writes(mark))} writes"
        )

    def _operator_trouble(self) -> str:
        """What went wrong in the operator during this example ("" if nothing)."""
        op = self.c.operators[-1]
        if not op.alive():
            return "the operator process died"
        if not op.healthy():
            return "the operator's probe failed"
        log = self.c.operator_log()
        new, self.log_offset = log[self.log_offset :], len(log)
        for bad in ("Traceback", "Exception in callback", "failed unexpectedly"):
            if bad in new:
                return f"operator log: {bad}: {_first_message(new, bad)}"
        return ""

    def bystander_untouched(self) -> None:
        now = {
            s.namespace: s.obj["metadata"]["resourceVersion"]
            for s in _secrets(self.c.k8s, {names.LABEL_TENANT: BYSTANDER})
        }
        assert now == self.bystander_copies, "the other tenant's copies changed"
        for ns in BYSTANDER_NAMESPACES:
            assert "by-pull" in self.c.k8s.pull_secrets(ns)


def _secrets(k8s: Any, selector: dict[str, str]) -> list[Any]:
    import pykube

    return list(pykube.Secret.objects(k8s.api, namespace=pykube.all).filter(selector=selector))


def _bind_refs(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """credentialsRef names c0/c1 become this example's Secrets (<name>-c0, <name>-c1)."""
    spec = json.loads(json.dumps(spec))
    for r in spec.get("registries") or [] if isinstance(spec.get("registries"), list) else []:
        ref = r.get("credentialsRef") if isinstance(r, dict) else None
        if isinstance(ref, dict) and ref.get("name") in ("c0", "c1"):
            ref["name"] = f"{name}-{ref['name']}"
    return spec


def _first_message(log: str, needle: str) -> str:
    """The message of the first log line holding `needle` (the line is JSON)."""
    line = next(line for line in log.splitlines() if needle in line)
    try:
        return str(json.loads(line).get("message", line))[:300]
    except ValueError:
        return line[:300]


def test_fuzzed_specs_and_credentials_are_rejected_or_reported_never_crash(
    rng: random.Random, fault_seed: int, long_faults: bool, figures: dict[str, float]
) -> None:
    examples = 150 if long_faults else 12
    with IsolatedCluster("fuzz") as c:
        k8s = c.k8s
        for ns, labels in {**NAMESPACES, **BYSTANDER_NAMESPACES}.items():
            k8s.namespace(ns, **labels)
        c.operator()
        k8s.credentials(BYSTANDER, username="u", password=f"bystander-{fault_seed}")
        k8s.tenant(
            BYSTANDER,
            secret_name="by-pull",
            registries=[
                {"server": "by.example", "credentialsRef": {"name": BYSTANDER}, "verify": False}
            ],
            namespaces={"names": sorted(BYSTANDER_NAMESPACES)},
        )
        for ns in BYSTANDER_NAMESPACES:
            wait_for(lambda ns=ns: "by-pull" in k8s.pull_secrets(ns), what=f"bystander in {ns}")
        fuzz = Fuzzing(
            c,
            AuditTail(c.cp.audit_log),
            {
                s.namespace: s.obj["metadata"]["resourceVersion"]
                for s in _secrets(k8s, {names.LABEL_TENANT: BYSTANDER})
            },
            rng,
        )

        @hypothesis_seed(fault_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],  # no shrinking: every example costs real API calls
            suppress_health_check=list(HealthCheck),
        )
        @given(spec=specs, creds=st.lists(credential_secrets(), min_size=1, max_size=2))
        def drawn(spec: dict[str, Any], creds: list[dict[str, Any] | None]) -> None:
            fuzz.check("drawn", spec, creds)

        started = time.monotonic()
        drawn()
        for label, spec, creds in HOSTILE:
            fuzz.check(label, spec, creds)
        figures["examples"] = fuzz.count
        figures["seconds per example"] = round((time.monotonic() - started) / fuzz.count, 1)
        print(f"outcomes: {fuzz.outcomes}")
        fuzz.bystander_untouched()
        assert not fuzz.violations, "\n".join(fuzz.violations)
