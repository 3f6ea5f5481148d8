#!/usr/bin/env python3
"""Benchmark: convergence time, write economy, latency and memory on the local control plane.

The operator runs as its own ServiceAccount with the RBAC and admission policy of deploy/, as
in a cluster. Writes are counted from the API server's audit log. Prints a table and writes
JSON (bench/results/latest.json). Usage: python bench/run.py [--namespaces 1000] [...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from tenant_registry import names  # noqa: E402
from tenant_registry.cluster import Cluster  # noqa: E402
from tenant_registry.desired import copy_manifest, desired_copy  # noqa: E402
from tenant_registry.localcluster import ControlPlane  # noqa: E402
from tenant_registry.localcluster.harness import OperatorProcess, install  # noqa: E402
from tenant_registry.spec import Credentials, Redacted, Selection, TenantSpec  # noqa: E402

OPERATOR_USER = "system:serviceaccount:tenant-registry-system:tenant-registry-operator"
SA_CONTROLLER = "system:serviceaccount:kube-system:service-account-controller"
CREDENTIALS = "bench-credentials"


def ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Audit:
    """Reads the audit log incrementally; entries are kept with parsed timestamps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []
        self._offset = 0

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path) as f:
            f.seek(self._offset)
            while line := f.readline():
                if not line.endswith("\n"):
                    break  # a partial line: read it next time
                self._offset = f.tell()
                e = json.loads(line)
                e["_start"] = ts(e["requestReceivedTimestamp"])
                e["_end"] = ts(e["stageTimestamp"])
                self.entries.append(e)

    def mark(self) -> int:
        self.poll()
        return len(self.entries)

    def wait_count(
        self,
        mark: int,
        match: Callable[[dict[str, Any]], bool],
        count: int,
        what: str,
        timeout: float,
    ) -> list[dict[str, Any]]:
        """Wait until `count` entries after `mark` match; scans each entry once and polls at
        5 Hz, so measuring takes little CPU from the cluster being measured."""
        found: list[dict[str, Any]] = []
        scanned = mark
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            found.extend(e for e in self.entries[scanned:] if match(e))
            scanned = len(self.entries)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise SystemExit(f"benchmark: timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)

    def since(self, mark: int, user: str | None = OPERATOR_USER) -> list[dict[str, Any]]:
        self.poll()
        return [
            e
            for e in self.entries[mark:]
            if user is None or (e.get("user") or {}).get("username") == user
        ]


def ok(e: dict[str, Any]) -> bool:
    return int((e.get("responseStatus") or {}).get("code", 0)) < 400


def count_writes(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Successful writes by verb and resource; the leader's Lease renewals are counted apart
    (`lease_renewals`), as the fixed price of two replicas, not work for tenants."""
    c = Counter(
        f"{e['verb']} {e['objectRef'].get('resource')}"
        + (f"/{e['objectRef']['subresource']}" if e["objectRef"].get("subresource") else "")
        for e in entries
        if ok(e) and e["objectRef"].get("resource") != "leases"
    )
    return dict(sorted(c.items()))


def lease_renewals(entries: Iterable[dict[str, Any]]) -> int:
    return sum(1 for e in entries if ok(e) and e["objectRef"].get("resource") == "leases")


def max_in_flight(entries: list[dict[str, Any]]) -> int:
    points = sorted([(e["_start"], 1) for e in entries] + [(e["_end"], -1) for e in entries])
    peak = cur = 0
    for _, d in points:
        cur += d
        peak = max(peak, cur)
    return peak


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"benchmark: timed out after {timeout:.0f}s waiting for {what}")


def parallel(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.n = args.namespaces
        self.cp = ControlPlane(kcm_qps=args.kcm_qps, kcm_burst=args.kcm_qps * 2)
        self.results: dict[str, Any] = {}
        self.audit: Audit

    # -- helpers ----------------------------------------------------------------------------
    def admin(self) -> Cluster:
        return Cluster.connect(str(self.cp.kubeconfig), pool_size=64)

    def create_namespaces(self, prefix: str, count: int, labels: dict[str, str]) -> list[str]:
        admin = self.admin()
        nss = [f"{prefix}-{i:05}" for i in range(count)]

        def create(name: str) -> None:
            admin.core.create_namespace(
                {"metadata": {"name": name, "labels": labels}}, _preload_content=False
            )

        parallel(create, nss, 32)
        wanted = set(nss)

        def all_have_sa() -> bool:
            items, _ = admin.list_objects("serviceaccounts")
            have = {i["metadata"]["namespace"] for i in items if i["metadata"]["name"] == "default"}
            return wanted <= have

        wait(all_have_sa, f"default ServiceAccounts in {count} {prefix} namespaces", 600)
        return nss

    def credentials(self, password: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/basic-auth",
            "metadata": {"name": CREDENTIALS, "namespace": names.DEFAULT_OPERATOR_NAMESPACE},
            "stringData": {"username": "bench", "password": password},
        }
        self.cp.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(body)
        )

    def tenant(self, label: str) -> None:
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": "bench"},
            "spec": {
                "secretName": "bench-pull",
                "registries": [
                    {
                        "server": "registry.bench.example:5000",
                        "credentialsRef": {"name": CREDENTIALS},
                        "verify": False,  # no such registry
                    }
                ],
                "namespaces": {"selector": {"matchLabels": {"bench": label}}},
            },
        }
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(body))

    @staticmethod
    def onboarding_write(namespaces: set[str]) -> Callable[[dict[str, Any]], bool]:
        """Matches the operator's writes that onboard `namespaces` (2 per namespace)."""

        def match(e: dict[str, Any]) -> bool:
            return (
                (e.get("user") or {}).get("username") == OPERATOR_USER
                and ok(e)
                and e["objectRef"].get("namespace") in namespaces
                and (e["verb"], e["objectRef"]["resource"])
                in {("create", "secrets"), ("patch", "serviceaccounts")}
            )

        return match

    def onboarded(self, mark: int, namespaces: set[str]) -> list[dict[str, Any]]:
        match = self.onboarding_write(namespaces)
        return [e for e in self.audit.since(mark) if match(e)]

    # -- phases -----------------------------------------------------------------------------
    def floor(self) -> None:
        """A bare client, same identity and concurrency, writing exactly what onboarding
        writes: N copies as the operator builds them (labels, hash, ownerReference, the same
        content size) and N guarded JSON Patches of the `default` ServiceAccounts."""
        nss = self.create_namespaces("floor", self.n, {"bench": "floor"})
        # A real, suspended owner for the ownerReferences (the operator later leaves it be).
        self.cp.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.KIND,
                    "metadata": {"name": "floor"},
                    "spec": {
                        "secretName": "floor-pull",
                        "suspend": True,
                        "registries": [
                            {
                                "server": "registry.bench.example:5000",
                                "credentialsRef": {"name": CREDENTIALS},
                                "verify": False,
                            }
                        ],
                        "namespaces": {"names": ["floor-none"]},
                    },
                }
            ),
        )
        uid = json.loads(self.cp.kubectl("get", names.PLURAL, "floor", "-o", "json").stdout)[
            "metadata"
        ]["uid"]
        spec = TenantSpec(
            name="floor",
            uid=uid,
            generation=1,
            secret_name="floor-pull",
            registries=(),
            namespaces=Selection(),
            service_accounts=Selection(),
            conflict_policy="Skip",
            suspend=True,
        )
        copy = desired_copy(
            spec, [("registry.bench.example:5000", Credentials("bench", Redacted("first")))]
        )
        sa_client = Cluster.connect(
            str(
                self.cp.serviceaccount_kubeconfig(
                    names.DEFAULT_OPERATOR_NAMESPACE, "tenant-registry-operator"
                )
            ),
            pool_size=self.args.concurrency + 8,
        )
        started = time.monotonic()
        items, _ = sa_client.list_objects("serviceaccounts")
        rv = {
            i["metadata"]["namespace"]: i["metadata"]["resourceVersion"]
            for i in items
            if i["metadata"]["name"] == "default"
        }

        def onboard(ns: str) -> None:
            sa_client.create_secret(ns, copy_manifest(copy, ns))
            sa_client.json_patch_service_account(
                ns,
                "default",
                [
                    {"op": "test", "path": "/metadata/resourceVersion", "value": rv[ns]},
                    {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "floor-pull"}]},
                    {
                        "op": "add",
                        "path": "/metadata/annotations",
                        "value": {names.ANNOTATION_SA_ENTRIES: "floor/floor-pull"},
                    },
                ],
            )

        parallel(onboard, nss, self.args.concurrency)
        self.results["floor_seconds"] = round(time.monotonic() - started, 2)

    def cold_start(self, op: OperatorProcess) -> None:
        nss = set(self.create_namespaces("cold", self.n, {"bench": "cold"}))
        self.results["rss_idle_mib"] = round(rss_mib(op.pid()), 1)
        self.credentials("first")
        mark = self.audit.mark()
        self.tenant("cold")
        self.audit.wait_count(mark, self.onboarding_write(nss), 2 * len(nss), "cold start", 900)
        started = next(
            e["_end"]
            for e in self.audit.since(mark, None)
            if e["verb"] == "create" and e["objectRef"]["resource"] == names.PLURAL
        )
        done = max(e["_end"] for e in self.onboarded(mark, nss))
        self.results["cold_start_seconds"] = round(done - started, 2)
        self.results["cold_start_vs_floor"] = round(
            self.results["cold_start_seconds"] / self.results["floor_seconds"], 2
        )
        time.sleep(2)  # status and Events land
        window = self.audit.since(mark)
        self.results["writes_onboarding"] = count_writes(window)
        self.results["max_in_flight_writes"] = max_in_flight(window)
        self.results["http_429"] = sum(
            1 for e in window if (e.get("responseStatus") or {}).get("code") == 429
        )
        self.results["rss_at_n_mib"] = round(rss_mib(op.pid()), 1)

    def latency(self) -> None:
        samples = []
        for i in range(self.args.latency_samples):
            ns = f"lat-{i:04}"
            mark = self.audit.mark()
            self.cp.kubectl("create", "namespace", ns)
            self.cp.kubectl("label", "namespace", ns, "bench=cold")

            def patched(ns: str = ns, mark: int = mark) -> bool:
                return bool(self.onboarded(mark, {ns}) and len(self.onboarded(mark, {ns})) >= 2)

            wait(patched, f"latency sample {ns}", 60)
            created = [
                e
                for e in self.audit.since(mark, SA_CONTROLLER)
                if e["verb"] == "create"
                and e["objectRef"].get("namespace") == ns
                and e["objectRef"]["resource"] == "serviceaccounts"
            ]
            patch = max(e["_end"] for e in self.onboarded(mark, {ns}))
            if created:
                samples.append(patch - created[0]["_end"])
        samples.sort()
        self.results["latency_samples"] = len(samples)
        self.results["latency_p50_ms"] = round(statistics.median(samples) * 1000)
        self.results["latency_p99_ms"] = round(
            samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
        )

    def rotation(self) -> None:
        mark = self.audit.mark()
        self.credentials("second")
        total = self.n + self.args.latency_samples

        def secret_patch(e: dict[str, Any]) -> bool:
            return (
                (e.get("user") or {}).get("username") == OPERATOR_USER
                and ok(e)
                and e["verb"] == "patch"
                and e["objectRef"]["resource"] == "secrets"
            )

        self.audit.wait_count(mark, secret_patch, total, "rotation", 600)
        started = next(
            e["_end"]
            for e in self.audit.since(mark, None)
            if e["objectRef"].get("name") == CREDENTIALS
        )
        done = max(e["_end"] for e in self.audit.since(mark))
        self.results["rotation_seconds"] = round(done - started, 2)
        time.sleep(2)
        self.results["writes_rotation"] = count_writes(self.audit.since(mark))

    def idle(self) -> None:
        mark = self.audit.mark()
        time.sleep(self.args.idle)
        self.results["idle_seconds"] = self.args.idle
        idle = self.audit.since(mark)
        self.results["writes_idle"] = count_writes(idle)
        self.results["lease_renewals_per_minute"] = round(
            lease_renewals(idle) * 60 / max(self.args.idle, 1e-9), 1
        )

    def restart(self, op: OperatorProcess) -> OperatorProcess:
        mark = self.audit.mark()
        self.results["shutdown_seconds"] = round(op.stop(), 2)
        started = time.monotonic()
        new = self.operator().start()
        self.results["restart_ready_seconds"] = round(time.monotonic() - started, 2)
        time.sleep(self.args.settle)
        self.results["writes_restart"] = count_writes(self.audit.since(mark))
        return new

    def unrelated_secrets(self, op: OperatorProcess) -> None:
        before = rss_mib(op.pid())
        admin = self.admin()
        self.cp.kubectl("create", "namespace", "unrelated")

        def create(i: int) -> None:
            admin.core.create_namespaced_secret(
                "unrelated",
                {"metadata": {"name": f"unrelated-{i:05}"}, "stringData": {"blob": "x" * 1024}},
                _preload_content=False,
            )

        parallel(create, range(self.args.unrelated_secrets), 32)
        time.sleep(self.args.settle)
        after = rss_mib(op.pid())
        self.results["unrelated_secrets"] = self.args.unrelated_secrets
        self.results["rss_before_unrelated_mib"] = round(before, 1)
        self.results["rss_after_unrelated_mib"] = round(after, 1)
        self.results["rss_unrelated_change_pct"] = round(100 * (after - before) / before, 1)

    def operator(self) -> OperatorProcess:
        return OperatorProcess(
            self.cp,
            f"--concurrency={self.args.concurrency}",
            "--log-format=json",
            "--resync=300",
            log_name=f"operator-{time.monotonic_ns()}",
        )

    def run(self) -> dict[str, Any]:
        self.cp.start()
        try:
            install(self.cp)
            self.audit = Audit(self.cp.audit_log)
            self.floor()
            op = self.operator().start()
            try:
                self.cold_start(op)
                self.latency()
                self.rotation()
                self.idle()
                op = self.restart(op)
                self.unrelated_secrets(op)
            finally:
                op.stop()
        finally:
            self.cp.cleanup()
        self.results["machine"] = (
            f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"
        )
        self.results["namespaces"] = self.n
        self.results["concurrency"] = self.args.concurrency
        return self.results


ROWS = [
    ("namespaces", "namespaces (N)"),
    ("floor_seconds", "floor: bare client, N Secrets + N SA patches (s)"),
    ("cold_start_seconds", "cold start: TenantRegistry -> all N onboarded (s)"),
    ("cold_start_vs_floor", "cold start / floor (target <= 1.5)"),
    ("latency_p50_ms", "latency default SA created -> patched, p50 (ms)"),
    ("latency_p99_ms", "latency p99 (ms, target <= 1000)"),
    ("writes_onboarding", "writes, onboarding"),
    ("rotation_seconds", "rotation: all copies updated (s)"),
    ("writes_rotation", "writes, rotation"),
    ("writes_idle", "writes, idle"),
    ("lease_renewals_per_minute", "Lease renewals per minute (leader election)"),
    ("writes_restart", "writes, restart with nothing to do"),
    ("restart_ready_seconds", "restart: process start -> healthy (s)"),
    ("shutdown_seconds", "SIGTERM -> exited (s)"),
    ("rss_idle_mib", "RSS idle (MiB, target <= 100)"),
    ("rss_at_n_mib", "RSS at N namespaces (MiB)"),
    ("rss_unrelated_change_pct", "RSS change after unrelated Secrets (%, target < 5)"),
    ("max_in_flight_writes", "max writes in flight (bound: --concurrency)"),
    ("http_429", "HTTP 429 responses"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--namespaces", type=int, default=1000, help="N (default 1000; try 5000)")
    p.add_argument("--latency-samples", type=int, default=50)
    p.add_argument("--idle", type=float, default=300, help="idle window in seconds (300)")
    p.add_argument("--unrelated-secrets", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--settle", type=float, default=5.0, help="seconds to let things settle")
    p.add_argument(
        "--kcm-qps",
        type=int,
        default=200,
        help="controller-manager QPS, to set namespaces up quickly (not measured)",
    )
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = p.parse_args(argv)

    results = Bench(args).run()
    print(f"\ntenant-registry-operator benchmark ({results['machine']})")
    for key, label in ROWS:
        value = results.get(key)
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "0"
        print(f"  {label:<55} {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
