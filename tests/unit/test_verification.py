"""What is distributed, by the credential checks: the new content, the last verified, or nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tenant_registry import dockerconfig, handshake
from tenant_registry.desired import Active, Frozen, Intent, tenant_intent
from tenant_registry.spec import InvalidInput, parse_tenant
from tenant_registry.verification import (
    UNVERIFIED,
    VERIFYING,
    CheckResult,
    Stored,
    decide,
    targets,
)
from tests.unit.samples import OPNS as NS


def basic_secret(name: str, user: str, password: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "type": "kubernetes.io/basic-auth",
        "data": {
            "username": base64.b64encode(user.encode()).decode(),
            "password": base64.b64encode(password.encode()).decode(),
        },
    }


OK = CheckResult(handshake.VERIFIED, "basic auth", 1_900_000_000.0)
BAD = CheckResult(handshake.UNAUTHORIZED, "GET /v2/: rejected (HTTP 401)", 1_900_000_060.0)


def tenant(password: str, **registry: Any) -> Active:
    body = {
        "metadata": {"name": "acme", "uid": "u1", "generation": 1},
        "spec": {
            "secretName": "acme-pull",
            "registries": [{"server": "r.example", "credentialsRef": {"name": "c"}, **registry}],
            "namespaces": {"names": ["a"]},
        },
    }
    intent = tenant_intent(body, {"c": basic_secret("c", "bot", password)}, NS)
    assert isinstance(intent, Active)
    return intent


def tenant_of(**registries: tuple[str, bool]) -> Active:
    """A tenant with registries `NAME.example` -> (password, verify)."""
    body = {
        "metadata": {"name": "acme", "uid": "u1", "generation": 1},
        "spec": {
            "secretName": "acme-pull",
            "registries": [
                {"server": f"{r}.example", "credentialsRef": {"name": r}, "verify": verify}
                for r, (_, verify) in registries.items()
            ],
            "namespaces": {"names": ["a"]},
        },
    }
    secrets = {r: basic_secret(r, "bot", pw) for r, (pw, _) in registries.items()}
    intent = tenant_intent(body, secrets, NS)
    assert isinstance(intent, Active)
    return intent


def results(intent: Active, result: CheckResult | None) -> dict[str, CheckResult | None]:
    return {t.fingerprint: result for t in targets(intent)}


def by_server(intent: Active, **found: CheckResult | None) -> dict[str, CheckResult | None]:
    return {t.fingerprint: found.get(t.server.split(".")[0]) for t in targets(intent)}


def passwords(intent: Intent) -> dict[str, str]:
    assert isinstance(intent, Active)
    auths = json.loads(intent.copy.content.reveal())["auths"]
    assert intent.copy.content_hash == dockerconfig.content_hash(intent.copy.content.reveal())
    return {server.split(".")[0]: e["password"] for server, e in auths.items()}


NONE = Stored()


def test_verified_content_is_distributed() -> None:
    new = tenant("pw")
    intent, verdict = decide(new, targets(new), results(new, OK), None, NONE)
    assert intent == new
    assert (verdict.status, verdict.reason) == ("True", handshake.VERIFIED)
    assert verdict.verified_hash == new.copy.content_hash
    assert verdict.verified_servers == ("r.example",)
    assert verdict.checked_at == OK.checked_at


@pytest.mark.parametrize("result", [BAD, None])
def test_first_ever_failure_or_first_check_writes_nothing(result: CheckResult | None) -> None:
    new = tenant("pw")
    intent, verdict = decide(new, targets(new), results(new, result), None, NONE)
    assert isinstance(intent, Frozen)
    assert intent.reason == (UNVERIFIED if result else VERIFYING)
    assert intent.credentials_resolved
    assert verdict.status == ("False" if result else "Unknown")
    assert "nothing is distributed" in verdict.message
    assert verdict.verified_hash == ""
    assert verdict.last_good == {}


@pytest.mark.parametrize("result", [BAD, None])
def test_new_credentials_failing_or_unchecked_keep_the_last_good(
    result: CheckResult | None,
) -> None:
    old, new = tenant("old"), tenant("new")
    _, first = decide(old, targets(old), results(old, OK), None, NONE)
    intent, verdict = decide(new, targets(new), results(new, result), first.last_good, NONE)
    assert isinstance(intent, Active)
    assert intent.copy.content_hash == old.copy.content_hash
    assert intent.copy.content.reveal() == old.copy.content.reveal()
    assert intent.spec == new.spec
    assert verdict.verified_hash == old.copy.content_hash
    assert "the entry last verified stays distributed for spec.registries[0]" in verdict.message
    assert "sha256" not in verdict.message  # no content hash in messages (review 14, #12)


def test_after_a_restart_the_last_good_is_loaded_first() -> None:
    old, new = tenant("old"), tenant("new")
    stored = Stored(old.copy.content_hash, ("r.example",))
    intent, verdict = decide(new, targets(new), results(new, BAD), None, stored)
    assert isinstance(intent, Frozen) and intent.reason == VERIFYING
    assert verdict.load_last_good == stored.content_hash
    assert verdict.verified_hash == stored.content_hash
    assert verdict.verified_servers == ("r.example",)
    assert verdict.last_good is None  # still unknown


def test_a_restart_whose_new_credentials_pass_needs_no_read_back() -> None:
    old, new = tenant("old"), tenant("new")
    stored = Stored(old.copy.content_hash, ("r.example",))
    intent, verdict = decide(new, targets(new), results(new, OK), None, stored)
    assert intent == new and not verdict.load_last_good


def test_the_content_verified_before_stays_while_rechecked_or_refused() -> None:
    same = tenant("pw")
    for stored in (Stored(same.copy.content_hash, ("r.example",)), Stored(same.copy.content_hash)):
        for result in (None, BAD):
            intent, verdict = decide(same, targets(same), results(same, result), None, stored)
            assert intent == same
            assert verdict.verified_hash == stored.content_hash
            assert not verdict.load_last_good


def test_removing_a_registry_applies_while_another_is_down() -> None:
    """Review 14, finding 4 (a): r2 leaves the spec while r1 is down: r2's entry goes."""
    both = tenant_of(r1=("one", True), r2=("two", True))
    _, first = decide(both, targets(both), by_server(both, r1=OK, r2=OK), None, NONE)
    only = tenant_of(r1=("one", True))
    down = CheckResult(handshake.UNREACHABLE, "cannot connect")
    intent, verdict = decide(only, targets(only), by_server(only, r1=down), first.last_good, NONE)
    assert passwords(intent) == {"r1": "one"}
    assert verdict.status == "False" and verdict.reason == handshake.UNREACHABLE
    assert verdict.verified_servers == ("r1.example",)
    assert verdict.last_good is not None and set(verdict.last_good) == {"r1.example"}


def test_a_registry_that_passes_gets_its_new_entry_while_another_fails() -> None:
    """Review 14, finding 4 (b): r2 rotated (verified) while r1 is down: new r2, old r1."""
    before = tenant_of(r1=("one", True), r2=("two", True), r3=("three", False))
    _, first = decide(before, targets(before), by_server(before, r1=OK, r2=OK), None, NONE)
    after = tenant_of(r1=("one-new", True), r2=("two-new", True), r3=("three-new", False))
    intent, verdict = decide(
        after, targets(after), by_server(after, r1=BAD, r2=OK), first.last_good, NONE
    )
    # r3 (verify: false) is distributed as read.
    assert passwords(intent) == {"r1": "one", "r2": "two-new", "r3": "three-new"}
    assert verdict.verified_hash == intent.copy.content_hash  # type: ignore[union-attr]
    assert verdict.verified_servers == ("r1.example", "r2.example")
    assert "spec.registries[0]" in verdict.message and "stays distributed" in verdict.message


def test_a_new_registry_that_fails_is_left_out_the_others_stay() -> None:
    one = tenant_of(r1=("one", True))
    _, first = decide(one, targets(one), by_server(one, r1=OK), None, NONE)
    two = tenant_of(r1=("one", True), r2=("two", True))
    intent, verdict = decide(
        two, targets(two), by_server(two, r1=OK, r2=BAD), first.last_good, NONE
    )
    assert passwords(intent) == {"r1": "one"}
    assert "nothing is distributed for spec.registries[1] until it passes" in verdict.message
    assert isinstance(intent, Active)
    assert intent.copy.content_hash == one.copy.content_hash  # the same content: no write


def test_after_a_restart_the_entries_are_those_status_names_verified() -> None:
    """The content read back holds r1 verified and r2 left out of it; nothing else is taken."""
    before = tenant_of(r1=("one", True), r2=("two", False))
    stored = Stored(before.copy.content_hash, ("r1.example",))
    now = tenant_of(r1=("one", True), r2=("two", True))  # r2 checked now, and failing
    # The same bytes as before: r1's entry is known verified, r2's (unverified then) is not.
    intent, verdict = decide(now, targets(now), by_server(now, r1=None, r2=BAD), None, stored)
    assert passwords(intent) == {"r1": "one"}
    assert verdict.verified_servers == ("r1.example",)


def test_verify_false_checks_nothing() -> None:
    new = tenant("pw", verify=False)
    assert targets(new) == ()
    intent, verdict = decide(new, (), {}, None, NONE)
    assert intent == new
    assert verdict.status == "Unknown"


def test_a_check_is_known_by_everything_it_checks() -> None:
    base = targets(tenant("pw"))[0].fingerprint
    assert targets(tenant("pw"))[0].fingerprint == base
    assert targets(tenant("other"))[0].fingerprint != base
    assert targets(tenant("pw", probeImage="app:v1"))[0].fingerprint != base
    assert "pw" not in repr(targets(tenant("pw"))[0])
    with_ca = tenant("pw", caRef={"kind": "Secret", "name": "ca"})
    absent = targets(with_ca, lambda _: "absent")[0].fingerprint
    assert targets(with_ca, lambda _: "sha256-of-the-pem")[0].fingerprint != absent


@pytest.mark.parametrize(
    ("registry", "path"),
    [
        ({"verify": "yes"}, "spec.registries[0].verify"),
        ({"probeImage": "registry.example/app:v1"}, "spec.registries[0].probeImage"),
        ({"probeImage": "app"}, "spec.registries[0].probeImage"),
        ({"caRef": {"kind": "Pod", "name": "x"}}, "spec.registries[0].caRef.kind"),
        ({"caRef": {"kind": "Secret"}}, "spec.registries[0].caRef.name"),
        ({"caRef": "x"}, "spec.registries[0].caRef"),
        ({"server": "*.r.example"}, "spec.registries[0].verify"),
    ],
)
def test_bad_verification_fields_name_the_field(registry: dict[str, Any], path: str) -> None:
    body = {
        "metadata": {"name": "acme"},
        "spec": {
            "secretName": "acme-pull",
            "registries": [{"server": "r.example", "credentialsRef": {"name": "c"}, **registry}],
            "namespaces": {"names": ["a"]},
        },
    }
    with pytest.raises(InvalidInput) as e:
        parse_tenant(body, NS)
    assert path in str(e.value)


def test_verification_fields_parse() -> None:
    body = {
        "metadata": {"name": "acme"},
        "spec": {
            "secretName": "acme-pull",
            "registries": [
                {
                    "server": "r.example",
                    "credentialsRef": {"name": "c"},
                    "probeImage": "team/app@sha256:" + "b" * 64,
                    "caRef": {"kind": "ConfigMap", "name": "ca"},
                },
                {"server": "*.s.example", "credentialsRef": {"name": "c"}, "verify": False},
            ],
            "namespaces": {"names": ["a"]},
        },
    }
    first, second = parse_tenant(body, NS).registries
    assert first.verify and first.probe_image is not None
    assert first.probe_image.repository == "team/app"
    assert first.ca is not None and (first.ca.kind, first.ca.key) == ("ConfigMap", "ca.crt")
    assert not second.verify
