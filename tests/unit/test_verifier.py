"""The verifier's bookkeeping: which result a tenant may use, retries, order of checks.

The HTTP is replaced by a function that answers by password (registryclient is tested
against real registries in tests/registry); everything else is the real Verifier."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tenant_registry import handshake, registryclient, verifier
from tenant_registry.spec import Credentials, Redacted
from tenant_registry.verification import CheckRequest, CheckResult, Target
from tenant_registry.verifier import CHANGE, PERIODIC, Verifier, _Slots


def target(password: str) -> Target:
    return Target(0, "r.example", Credentials("bot", Redacted(password)))


class Registry:
    """Answers checks by password: those in `good` pass. Counts the checks per password."""

    def __init__(self, *good: str) -> None:
        self.good = set(good)
        self.checked: list[str] = []

    async def check(self, request: CheckRequest, *, seconds: float) -> CheckResult:
        password = request.credentials.password.reveal()
        self.checked.append(password)
        if password in self.good:
            return CheckResult(handshake.VERIFIED, "ok")
        return CheckResult(handshake.UNAUTHORIZED, "no")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    fake = Registry("A", "B")
    monkeypatch.setattr(registryclient, "check", fake.check)
    yield fake


async def _no_ca(_: object) -> str:
    return ""


async def settled(v: Verifier) -> None:
    for _ in range(1000):
        if not v._running:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("checks never ended")


async def result_for(v: Verifier, tenant: str, t: Target) -> CheckResult:
    v.use(tenant, [t])
    found = v.result(tenant, t)
    if found is None:
        await settled(v)
        found = v.result(tenant, t)
    assert found is not None
    return found


def test_a_revert_to_earlier_credentials_is_checked_again(registry: Registry) -> None:
    """Review 14, finding 5: A verified, then B, then A again (a revert, A revoked meanwhile):
    A's old result is not reused for the tenant that changed, though another tenant that kept
    A all along still uses its result."""

    async def scenario() -> None:
        v = Verifier(_no_ca, lambda _: None, seconds=1)
        a, b = target("A"), target("B")
        assert (await result_for(v, "t1", a)).ok
        assert (await result_for(v, "t2", a)).ok
        assert (await result_for(v, "t1", b)).ok
        registry.good.discard("A")  # revoked
        v.use("t1", [a])
        assert v.result("t2", a) is not None, "t2 never changed: its result stands"
        assert v.result("t1", a) is None, "a fresh check for t1"
        await settled(v)
        found = v.result("t1", a)
        assert found is not None and found.reason == handshake.UNAUTHORIZED
        await v.stop()

    asyncio.run(scenario())


def test_results_nobody_uses_are_dropped_at_once(registry: Registry) -> None:
    async def scenario() -> None:
        v = Verifier(_no_ca, lambda _: None, seconds=1)
        a, b = target("A"), target("B")
        await result_for(v, "t1", a)
        await result_for(v, "t1", b)
        assert set(v.results) == {b.fingerprint}
        v.forget("t1")
        assert not v.results
        await v.stop()

    asyncio.run(scenario())


def test_a_failure_is_retried_with_backoff(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verifier, "RETRY_FIRST_SECONDS", 0.001)

    async def scenario() -> None:
        done = asyncio.Event()
        v = Verifier(_no_ca, lambda _: done.set(), seconds=1, interval=0)
        c = target("C")
        v.use("t1", [c])
        assert v.result("t1", c) is None
        await done.wait()
        first = v.results[c.fingerprint]
        assert not first.ok
        registry.good.add("C")  # the registry is back / the account fixed
        for _ in range(1000):
            if v.results[c.fingerprint].ok:
                break
            await asyncio.sleep(0.001)
        assert v.results[c.fingerprint].ok, "retried without a periodic pass (interval 0)"
        assert not v._retries, "no retry after a success"
        await v.stop()

    asyncio.run(scenario())


def test_a_change_goes_before_the_periodic_pass() -> None:
    async def scenario() -> None:
        slots = _Slots(1)
        await slots.acquire(CHANGE)  # a check running
        order: list[str] = []

        async def wait(what: str, priority: int) -> None:
            await slots.acquire(priority)
            order.append(what)
            slots.release()

        waiting = [asyncio.create_task(wait(f"periodic-{i}", PERIODIC)) for i in range(3)]
        await asyncio.sleep(0)
        waiting.append(asyncio.create_task(wait("change", CHANGE)))
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*waiting)
        assert order[0] == "change"

    asyncio.run(scenario())
