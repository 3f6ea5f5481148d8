"""Runtime state without a cluster: the view's ordering rules, the fight log's window, the
backoff of a pair's retries, and forgetting Secrets in the way that nobody wants."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from tenant_registry.desired import Outcome
from tenant_registry.fights import FightLog
from tenant_registry.reconcile import Runtime, Settings
from tenant_registry.view import COPIES, NAMESPACES, SERVICE_ACCOUNTS, View
from tenant_registry.view_types import (
    Blocker,
    CopyInfo,
    NamespaceInfo,
    ServiceAccountInfo,
    is_copy,
    is_watched_copy,
)
from tests.unit.samples import ACTIVE


def sa(rv: str, ns: str = "ns") -> ServiceAccountInfo:
    return ServiceAccountInfo(ns, "default", rv)


def copy(rv: str) -> CopyInfo:
    return CopyInfo("ns", "pull", rv, "acme", "kubernetes.io/dockerconfigjson", "h", "h")


def held_rv(view: View, kind: str = SERVICE_ACCOUNTS) -> str | None:
    record = view.held(kind, "ns", "pull" if kind == COPIES else "default")
    return None if record is None else str(record.resource_version)


def test_older_versions_never_replace_newer_ones() -> None:
    view = View.empty()
    assert view.apply(SERVICE_ACCOUNTS, "ADDED", sa("10"))
    assert not view.apply(SERVICE_ACCOUNTS, "MODIFIED", sa("9"))  # a late event
    assert held_rv(view) == "10"
    assert not view.apply(SERVICE_ACCOUNTS, "MODIFIED", sa("10")), "an echo changes nothing"
    assert view.apply(SERVICE_ACCOUNTS, "MODIFIED", sa("11"))
    assert held_rv(view) == "11"


def test_a_late_delete_of_an_old_object_keeps_the_new_one_of_that_name() -> None:
    view = View.empty()
    view.apply(SERVICE_ACCOUNTS, "ADDED", sa("20"))  # the new namespace's default
    assert not view.apply(SERVICE_ACCOUNTS, "DELETED", sa("15"))  # the old one's, late
    assert held_rv(view) == "20"


def test_a_namespace_delete_leaves_service_accounts_and_copies_to_their_own_events() -> None:
    view = View.empty()
    view.apply(NAMESPACES, "ADDED", NamespaceInfo("ns", uid="old", resource_version="5"))
    view.apply(SERVICE_ACCOUNTS, "ADDED", sa("30"))  # the new namespace's, seen first
    view.apply(NAMESPACES, "DELETED", NamespaceInfo("ns", uid="old", resource_version="25"))
    assert "ns" not in view.namespaces
    assert held_rv(view) == "30"
    view.apply(NAMESPACES, "ADDED", NamespaceInfo("ns", uid="new", resource_version="26"))
    assert view.namespaces["ns"].uid == "new"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # Our create's result stored after the watch reported the create and a delete.
        ([("watch", "ADDED", "5"), ("watch", "DELETED", "6"), ("absorb", "", "5")], None),
        # Stored before the watch caught up: kept; its echo changes nothing; the delete wins.
        ([("absorb", "", "5"), ("watch", "ADDED", "5"), ("watch", "DELETED", "6")], None),
        ([("absorb", "", "5"), ("watch", "ADDED", "5")], "5"),
        # A result older than what a bookmark says the watch has told is old news.
        ([("bookmark", "", "9"), ("absorb", "", "8")], None),
        ([("bookmark", "", "9"), ("absorb", "", "10")], "10"),
        # Our delete leaves a tombstone: no list or result of that version brings it back.
        ([("absorb", "", "5"), ("deleted", "", "5"), ("list", "", "5")], None),
        ([("absorb", "", "5"), ("deleted", "", "5"), ("absorb", "", "7")], "7"),
    ],
)
def test_results_and_events_in_any_order_end_in_what_the_api_says(
    steps: list[tuple[str, str, str]], expected: str | None
) -> None:
    view = View.empty()
    for how, event, rv in steps:
        if how == "watch":
            view.apply(COPIES, event, copy(rv))
        elif how == "absorb":
            view.absorb(COPIES, copy(rv))
        elif how == "bookmark":
            view.bookmark(COPIES, int(rv))
        elif how == "deleted":
            view.absorb_deleted(COPIES, "ns", "pull", int(rv))
        else:
            view.merge_listed(COPIES, [copy(rv)])
    assert held_rv(view, COPIES) == expected


def test_a_list_repairs_what_the_view_has_wrong_and_keeps_what_is_newer() -> None:
    view = View.empty()
    view.apply(SERVICE_ACCOUNTS, "ADDED", sa("10", "a"))  # its DELETED was missed
    view.apply(SERVICE_ACCOUNTS, "ADDED", sa("11", "b"))
    view.absorb(SERVICE_ACCOUNTS, sa("40", "c"))  # our write, after the list's version
    listed = [sa("12", "b"), sa("13", "d")]
    changed = view.merge_listed(SERVICE_ACCOUNTS, listed)
    changed += view.end_list(SERVICE_ACCOUNTS, 20, {("b", "default"), ("d", "default")})
    assert sorted(changed) == [("a", "default"), ("b", "default"), ("d", "default")]
    assert sorted(view.service_accounts) == ["b", "c", "d"]
    assert view.horizon(SERVICE_ACCOUNTS) == 20
    # The same list again finds nothing to repair.
    assert view.merge_listed(SERVICE_ACCOUNTS, listed) == []
    assert view.end_list(SERVICE_ACCOUNTS, 20, {("b", "default"), ("d", "default")}) == []


def test_only_what_the_copies_watch_shows_is_a_copy_record() -> None:
    label = {"app.kubernetes.io/managed-by": "tenant-registry-operator"}
    assert is_copy({"metadata": {"labels": label}})
    assert not is_watched_copy({"metadata": {"labels": label}}), "tenant label stripped"
    tenant = {**label, "registry.tenancy.dev/tenant": "acme"}
    assert is_watched_copy({"metadata": {"labels": tenant}})
    assert not is_copy({"metadata": {}})
    assert not is_copy(None)


def test_fight_log_forgets_restores_outside_the_window() -> None:
    now = [0.0]
    log = FightLog(limit=3, window=600.0, clock=lambda: now[0])
    pair, what = ("acme", "ns"), ("ServiceAccount", "default", "uid-1")
    for t in (0.0, 0.0, 100.0):  # the first write, then two restores
        now[0] = t
        log.wrote(pair, what)
    assert log.given_up(pair) == frozenset()
    now[0] = 200.0
    log.wrote(pair, what)
    assert log.given_up(pair) == {what}
    now[0] = 650.0  # the first restore left the window
    assert log.given_up(pair) == frozenset()
    log.clear(pair, what)
    assert log.given_up(pair) == frozenset()


def test_fight_log_counts_our_own_writes_and_holds_off_a_second_give_up() -> None:
    now = [0.0]
    log = FightLog(limit=3, window=600.0, clock=lambda: now[0])
    pair, what = ("acme", "ns"), ("ServiceAccount", "default", "uid-1")
    for t in range(4):  # the first add, then three restores (whatever the annotations say)
        assert log.given_up(pair) == frozenset()
        now[0] = float(t)
        log.wrote(pair, what)
    assert log.given_up(pair) == {what}
    log.gave_up(pair, what)  # recorded on the ServiceAccount: counted anew
    assert log.given_up(pair) == frozenset() and log.held_off(pair) == frozenset()
    for t in range(4, 8):  # the record wiped by a replace, and the fight again
        now[0] = float(t)
        log.wrote(pair, what)
    log.gave_up(pair, what)
    assert log.held_off(pair) == {what} and log.given_up(pair) == {what}
    now[0] = 700.0  # the window passed: try again
    assert log.given_up(pair) == frozenset()


def runtime() -> Runtime:
    return Runtime(cluster=SimpleNamespace(), settings=Settings())  # type: ignore[arg-type]


def test_retries_back_off_per_pair_and_reset_on_success() -> None:
    async def scenario() -> list[float]:
        rt = runtime()
        loop = asyncio.get_running_loop()
        key = ("acme", "ns")
        delays = []
        for _ in range(4):
            now = loop.time()
            rt.scheduler.retry_later(key, 1)
            delays.append(round((rt.scheduler.retry_at(key) or 0) - now))
        rt._record(key, Outcome("synced"))
        now = loop.time()
        rt.scheduler.retry_later(key, 1)
        delays.append(round((rt.scheduler.retry_at(key) or 0) - now))
        rt.scheduler.cancel()
        return delays

    assert asyncio.run(scenario()) == [1, 2, 4, 8, 1]


class CountingReads:
    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((namespace, name))
        return {
            "type": "Opaque",
            "metadata": {"namespace": namespace, "name": name, "resourceVersion": "3"},
        }


def test_a_secret_in_the_way_is_re_read_only_while_a_tenant_wants_it() -> None:
    async def scenario() -> list[tuple[str, str]]:
        reads = CountingReads()
        rt = Runtime(cluster=reads, settings=Settings())  # type: ignore[arg-type]
        rt.view.apply("namespaces", "ADDED", NamespaceInfo("acme-web"))
        rt.intents["acme"] = ACTIVE
        rt.scheduler.index("acme", None, ACTIVE)
        rt.recovery.blockers[("acme-web", "acme-pull")] = Blocker(
            "acme-web", "acme-pull", "3", "Opaque"
        )
        await rt.recovery.recheck()
        assert reads.reads == [("acme-web", "acme-pull")]
        renamed = replace(ACTIVE, spec=replace(ACTIVE.spec, secret_name="other"))
        rt.intents["acme"] = renamed
        rt.scheduler.index("acme", ACTIVE, renamed)
        await rt.recovery.recheck()
        await rt.recovery.recheck()
        assert rt.recovery.blockers == {}, "forgotten once nobody wants that name there"
        rt.executor.shutdown()
        return reads.reads

    assert asyncio.run(scenario()) == [("acme-web", "acme-pull")]


def test_a_secret_that_stays_in_the_way_is_read_less_and_less_often() -> None:
    """Every period (30 s) at first, then twice the interval before, up to 5 minutes; one
    found changed starts again from the period."""

    async def scenario() -> tuple[list[float], list[float]]:
        reads = CountingReads()
        rt = Runtime(cluster=reads, settings=Settings(conflict_recheck_seconds=30))  # type: ignore[arg-type]
        rt.view.apply("namespaces", "ADDED", NamespaceInfo("acme-web"))
        rt.intents["acme"] = ACTIVE
        rt.scheduler.index("acme", None, ACTIVE)
        rt.recovery.blockers[("acme-web", "acme-pull")] = Blocker(
            "acme-web", "acme-pull", "3", "Opaque"
        )

        async def reads_at(times: range) -> list[float]:
            """The rechecks at these times (s): at which ones the Secret was read."""
            at: list[float] = []
            for t in times:
                before = len(reads.reads)
                await rt.recovery.recheck(now=float(t))
                at += [float(t)] * (len(reads.reads) - before)
            return at

        read_at = await reads_at(range(0, 900, 30))
        # found changed (another resourceVersion): a new Blocker, read at the next period
        rt.recovery.blockers[("acme-web", "acme-pull")] = Blocker(
            "acme-web", "acme-pull", "4", "Opaque"
        )
        after = await reads_at(range(900, 1000, 30))
        rt.executor.shutdown()
        return read_at, after

    read_at, after = asyncio.run(scenario())
    assert read_at == [0, 60, 180, 420, 720]
    assert after[0] == 900


def test_a_re_list_showing_another_namespace_of_that_name_forgets_the_old_ones_state() -> None:
    from tenant_registry.desired import Outcome
    from tenant_registry.view import NAMESPACES
    from tenant_registry.view_types import NamespaceInfo

    rt = runtime()
    rt.view.namespaces["ns"] = NamespaceInfo("ns", uid="old", resource_version="3")
    rt.reporter.outcomes["acme"]["ns"] = Outcome("failed", "UnmanagedSecretExists")
    rt.fights.wrote(("acme", "ns"), ("Secret", "acme-pull", ""))
    rt._deliver(NAMESPACES, "LIST_PAGE", [NamespaceInfo("ns", uid="new", resource_version="9")])
    assert rt.view.namespaces["ns"].uid == "new"
    assert "ns" not in rt.reporter.outcomes["acme"], "what was known was about the old one"
    assert rt.fights._writes == {}


def _fight_against_a_put(restart_at: int = -1) -> list[tuple[int, str]]:
    """One hour, one re-plan per second, of the planner's rule (desired._converge) against a
    manager that PUTs the whole ServiceAccount after every write of ours (entry and record
    gone each time); the operator restarted (FightLog lost) at `restart_at`."""
    now = [0.0]
    log = FightLog(limit=3, window=600.0, clock=lambda: now[0])
    pair, what = ("acme", "ns"), ("ServiceAccount", "default", "uid-1")
    writes: list[tuple[int, str]] = []
    for step in range(3600):
        now[0] = float(step)
        if step == restart_at:
            log = FightLog(limit=3, window=600.0, clock=lambda: now[0])
        if what not in log.given_up(pair):
            log.wrote(pair, what)
            writes.append((step, "add"))
        elif what not in log.held_off(pair):
            log.gave_up(pair, what)
            writes.append((step, "record"))
    return writes


def test_a_fight_with_a_manager_replacing_the_service_account_costs_what_readme_says() -> None:
    writes = _fight_against_a_put()
    assert [w for _, w in writes[:10]] == ["add"] * 4 + ["record"] + ["add"] * 4 + ["record"]
    assert writes[10][0] == 604, "held off until 10 minutes after the first give-up"
    per_window = Counter(step // 600 for step, _ in writes)
    assert max(per_window.values()) == 10
    for start in range(0, 3600 - 600):
        assert sum(1 for step, _ in writes if start <= step < start + 600) <= 10
    restarted = _fight_against_a_put(restart_at=300)
    assert len([s for s, _ in restarted if 300 <= s < 604]) == 10, "a restart: 10 more"
