#!/usr/bin/env python3
"""Benchmark: convergence time, write economy, latency and memory on the local control plane.

The operator runs as its own ServiceAccount with the RBAC and admission policy of deploy/, as
in a cluster. Writes are counted from the API server's audit log, and per phase from the
operator's own metrics, with its CPU seconds (from /proc) and its event loop's largest lag.
Scenarios: one tenant x N namespaces (`single`), T tenants x K namespaces (`multi`), and a
large cluster (`large`: 10,000 namespaces, 1,000 tenants, 20,000 ServiceAccounts, on its own
control plane). Prints a table and writes JSON (bench/results/latest.json).
Usage: python bench/run.py [--namespaces 1000] [--scenarios single,multi,large] [...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tenant_registry import names  # noqa: E402
from tenant_registry.cluster import Cluster  # noqa: E402
from tenant_registry.desired import DesiredCopy, copy_manifest, copy_patch, desired_copy  # noqa: E402
from tenant_registry.localcluster import ControlPlane  # noqa: E402
from tenant_registry.localcluster.harness import OperatorProcess, install  # noqa: E402
from tenant_registry.spec import Credentials, Redacted, Selection, TenantSpec  # noqa: E402

OPERATOR_USER = "system:serviceaccount:tenant-registry-system:tenant-registry-operator"
SA_CONTROLLER = "system:serviceaccount:kube-system:service-account-controller"
CREDENTIALS = "bench-credentials"
MT_CREDENTIALS = "mt-credentials"
SERVER = "registry.bench.example:5000"


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Snapshot:
    """The operator's counters at one moment: CPU, the loop-lag histogram, its write metrics."""

    def __init__(self, op: OperatorProcess | None, cluster: Iterable[int] = ()) -> None:
        self.at = time.monotonic()
        self.cpu = cpu_seconds(op.pid()) if op else 0.0
        self.cluster_cpu = sum(cpu_seconds(pid) for pid in cluster)
        self.lag: dict[float, float] = {}  # bucket bound -> cumulative count
        self.writes: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()
        self.values: dict[str, float] = {}
        if op is None:
            return
        for family in text_string_to_metric_families(op.metrics()):
            for sample in family.samples:
                if sample.name == "tenant_registry_loop_lag_seconds_bucket":
                    self.lag[float(sample.labels["le"])] = sample.value
                elif sample.name == "tenant_registry_writes_total" and sample.value:
                    lb = sample.labels
                    outcome = "" if lb["outcome"] == "ok" else f" ({lb['outcome']})"
                    self.writes[f"{lb['verb']} {lb['resource']}{outcome}"] += int(sample.value)
                elif sample.name == "tenant_registry_reads_total" and sample.value:
                    lb = sample.labels
                    self.reads[f"{lb['resource']} ({lb['reason']})"] += int(sample.value)
                elif sample.name in (
                    "tenant_registry_resyncs_total",
                    "tenant_registry_queue_depth",
                    "tenant_registry_loop_lag_max_seconds",
                ):
                    self.values[sample.name] = sample.value
                elif sample.name == "tenant_registry_relists_total":
                    key = "relists"
                    self.values[key] = self.values.get(key, 0) + sample.value


def phase(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """A phase's figures: wall and CPU seconds, the largest loop lag (as the histogram's
    bucket bound it fell under), the operator's writes and reads (requests) by its metrics."""
    delta = {b: after.lag[b] - before.lag.get(b, 0) for b in after.lag}
    total = delta.get(float("inf"), 0)
    lag_bound = min((b for b, n in delta.items() if n >= total), default=0.0) if total else 0.0
    writes = after.writes - before.writes
    return {
        "seconds": round(after.at - before.at, 2),
        "cpu_seconds": round(after.cpu - before.cpu, 2),
        "cluster_cpu_seconds": round(after.cluster_cpu - before.cluster_cpu, 2),
        "loop_lag_max_ms": "inf" if lag_bound == float("inf") else round(lag_bound * 1000),
        "writes": dict(sorted(writes.items())),
        "reads": dict(sorted((after.reads - before.reads).items())),
    }


def wait(check: Callable[[], bool], what: str, timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
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
        self.phases: dict[str, dict[str, Any]] = {}
        self.audit: Audit
        self._floor: tuple[TenantSpec, DesiredCopy, Cluster] | None = None

    # -- helpers ----------------------------------------------------------------------------
    def admin(self) -> Cluster:
        return Cluster.connect(str(self.cp.kubeconfig), pool_size=64)

    def create_namespaces(
        self, prefix: str, count: int, labels: dict[str, str] | Callable[[int], dict[str, str]]
    ) -> list[str]:
        admin = self.admin()
        nss = [f"{prefix}-{i:05}" for i in range(count)]
        label_of = labels if callable(labels) else (lambda _: labels)

        def create(i: int) -> None:
            admin.core.create_namespace(
                {"metadata": {"name": nss[i], "labels": label_of(i)}}, _preload_content=False
            )

        parallel(create, range(count), 32)
        wanted = set(nss)

        def all_have_sa() -> bool:
            items, _ = admin.list_objects("serviceaccounts")
            have = {i["metadata"]["namespace"] for i in items if i["metadata"]["name"] == "default"}
            return wanted <= have

        every = 0.05 if count <= 1000 else 2.0  # a list of 10,000 is not free either
        wait(all_have_sa, f"default ServiceAccounts in {count} {prefix} namespaces", 900, every)
        return nss

    def credentials(self, password: str, name: str = CREDENTIALS) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/basic-auth",
            "metadata": {"name": name, "namespace": names.DEFAULT_OPERATOR_NAMESPACE},
            "stringData": {"username": "bench", "password": password},
        }
        self.cp.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(body)
        )

    @staticmethod
    def tenant_body(
        name: str, secret_name: str, credentials: str, labels: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name},
            "spec": {
                "secretName": secret_name,
                "registries": [
                    # no such registry: not verified
                    {"server": SERVER, "credentialsRef": {"name": credentials}, "verify": False}
                ],
                "namespaces": {"selector": {"matchLabels": labels}},
            },
        }

    def tenant(self, label: str) -> None:
        body = self.tenant_body("bench", "bench-pull", CREDENTIALS, {"bench": label})
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(body))

    def apply_tenants(self, bodies: list[dict[str, Any]]) -> None:
        """All at once: 16 clients creating them in parallel."""
        admin = self.admin()

        def create(body: dict[str, Any]) -> None:
            admin.custom.create_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL, body, _preload_content=False
            )

        parallel(create, bodies, 16)

    def content_hashes(self, prefix: str) -> dict[str, str]:
        items, _ = self.admin().list_objects(names.PLURAL)
        return {
            t["metadata"]["name"]: (t.get("status") or {}).get("contentHash", "")
            for t in items
            if t["metadata"]["name"].startswith(prefix)
        }

    def wait_ready(
        self,
        prefix: str,
        count: int,
        selected: int,
        timeout: float,
        not_hashes: dict[str, str] | None = None,
    ) -> None:
        """Until `count` tenants named prefix* report Ready with `selected` namespaces synced
        (and, with `not_hashes`, a contentHash other than the one given)."""
        admin = self.admin()

        def ready() -> bool:
            items, _ = admin.list_objects(names.PLURAL)
            done = 0
            for t in items:
                st = t.get("status") or {}
                conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
                name = t["metadata"]["name"]
                if (
                    name.startswith(prefix)
                    and conds.get("Ready") == "True"
                    and st.get("syncedNamespaces") == selected
                    and (not_hashes is None or st.get("contentHash") != not_hashes.get(name))
                ):
                    done += 1
            return done >= count

        wait(ready, f"{count} {prefix}* tenants Ready", timeout, 1.0)

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

    @staticmethod
    def secret_patch(namespaces: set[str] | None = None) -> Callable[[dict[str, Any]], bool]:
        def match(e: dict[str, Any]) -> bool:
            return (
                (e.get("user") or {}).get("username") == OPERATOR_USER
                and ok(e)
                and e["verb"] == "patch"
                and e["objectRef"]["resource"] == "secrets"
                and (namespaces is None or e["objectRef"].get("namespace") in namespaces)
            )

        return match

    def onboarded(self, mark: int, namespaces: set[str]) -> list[dict[str, Any]]:
        match = self.onboarding_write(namespaces)
        return [e for e in self.audit.since(mark) if match(e)]

    def started_at(self, mark: int, match: Callable[[dict[str, Any]], bool]) -> float:
        return float(min(e["_end"] for e in self.audit.since(mark, None) if match(e)))

    def per_tenant(self, mark: int, prefix: str, count: int) -> dict[str, float]:
        """The writes about the tenants named prefix* (TenantRegistry patches by Kopf and by
        the operator, status, Events about them), per tenant, by verb and resource."""
        about = [
            e
            for e in self.audit.since(mark)
            if e["objectRef"].get("name", "").startswith(prefix)
            and e["objectRef"].get("resource") in (names.PLURAL, "events")
        ]
        return {k: round(v / count, 2) for k, v in count_writes(about).items()}

    @contextlib.contextmanager
    def measured(self, name: str, op: OperatorProcess | None) -> Iterator[None]:
        """Phase `name`: the operator's CPU, loop lag and metric-counted writes around it."""
        before = Snapshot(op, self.cluster_pids())
        yield
        self.phases[name] = phase(before, Snapshot(op, self.cluster_pids()))

    def cluster_pids(self) -> list[int]:
        """kube-apiserver and etcd: what serves the writes (the floor's and the operator's)."""
        return [pid for name, pid in self.cp.pids().items() if name in ("kube-apiserver", "etcd")]

    # -- floors: a bare client doing the operator's writes ------------------------------------
    def floor_owner(self) -> tuple[TenantSpec, DesiredCopy, Cluster]:
        """A real, suspended owner for the floor's ownerReferences (the operator leaves it
        be), the copy as the operator builds it, and a client as the operator's identity."""
        if self._floor is not None:
            return self._floor
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
                                "server": SERVER,
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
        copy = desired_copy(spec, [(SERVER, Credentials("bench", Redacted("first")))])
        sa_client = Cluster.connect(
            str(
                self.cp.serviceaccount_kubeconfig(
                    names.DEFAULT_OPERATOR_NAMESPACE, "tenant-registry-operator"
                )
            ),
            pool_size=self.args.concurrency + 8,
        )
        self._floor = spec, copy, sa_client
        return self._floor

    def floor_writes(self, nss: list[str]) -> tuple[float, dict[str, str]]:
        """N copies as the operator builds them (labels, hash, ownerReference, the same content
        size) and N guarded JSON Patches of the `default` ServiceAccounts, at the operator's
        concurrency: seconds taken, and each copy's resourceVersion."""
        _, copy, sa_client = self.floor_owner()
        started = time.monotonic()
        items, _ = sa_client.list_objects("serviceaccounts")
        rv = {
            i["metadata"]["namespace"]: i["metadata"]["resourceVersion"]
            for i in items
            if i["metadata"]["name"] == "default"
        }

        def onboard(ns: str) -> tuple[str, str]:
            made = sa_client.create_secret(ns, copy_manifest(copy, ns))
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
            return ns, str(made["metadata"]["resourceVersion"])

        copies = dict(parallel(onboard, nss, self.args.concurrency))
        return time.monotonic() - started, copies

    def floor_rotation(
        self, copies: dict[str, str], value: str = "second", read: bool = False
    ) -> float:
        """The rotation's writes: one guarded merge patch per copy with the new content; with
        `read`, each after a GET of its namespace, as the operator reads it before new
        credentials go in (README: Behaviour). The copies' resourceVersions are updated."""
        spec, _, sa_client = self.floor_owner()
        new = desired_copy(spec, [(SERVER, Credentials("bench", Redacted(value)))])
        started = time.monotonic()

        def rotate(item: tuple[str, str]) -> None:
            if read:
                sa_client.get_namespace(item[0])
            made = sa_client.merge_patch_secret(item[0], new.secret_name, copy_patch(new, item[1]))
            copies[item[0]] = str(made["metadata"]["resourceVersion"])

        parallel(rotate, list(copies.items()), self.args.concurrency)
        return time.monotonic() - started

    def floor(self) -> None:
        nss = self.create_namespaces("floor", self.n, {"bench": "floor"})
        with self.measured("floor", None):
            seconds, _ = self.floor_writes(nss)
        self.results["floor_seconds"] = round(seconds, 2)

    def multi_floor(self) -> None:
        """The multi-tenant floors: T x K namespaces onboarded, then their copies rotated."""
        count = self.args.tenants * self.args.tenant_namespaces
        nss = self.create_namespaces("mtfloor", count, {"bench": "mtfloor"})
        with self.measured("multi_floor", None):
            seconds, copies = self.floor_writes(nss)
        self.results["multi_floor_seconds"] = round(seconds, 2)
        with self.measured("multi_rotation_floor", None):
            rotated = self.floor_rotation(copies)
        self.results["multi_rotation_floor_seconds"] = round(rotated, 2)
        with self.measured("multi_rotation_floor_reads", None):
            rotated = self.floor_rotation(copies, "third", read=True)
        self.results["multi_rotation_floor_reads_seconds"] = round(rotated, 2)

    # -- phases: one tenant x N namespaces -------------------------------------------------
    def cold_start(self, op: OperatorProcess) -> None:
        nss = set(self.create_namespaces("cold", self.n, {"bench": "cold"}))
        self.results["rss_idle_mib"] = round(rss_mib(op.pid()), 1)
        self.credentials("first")
        mark = self.audit.mark()
        with self.measured("cold_start", op):
            self.tenant("cold")
            self.audit.wait_count(mark, self.onboarding_write(nss), 2 * len(nss), "cold start", 900)
            time.sleep(2)  # status and Events land
        started = self.started_at(
            mark, lambda e: e["verb"] == "create" and e["objectRef"]["resource"] == names.PLURAL
        )
        done = max(e["_end"] for e in self.onboarded(mark, nss))
        self.results["cold_start_seconds"] = round(done - started, 2)
        self.results["cold_start_vs_floor"] = round(
            self.results["cold_start_seconds"] / self.results["floor_seconds"], 2
        )
        window = self.audit.since(mark)
        self.results["writes_onboarding"] = count_writes(window)
        self.results["max_in_flight_writes"] = max_in_flight(window)
        self.results["http_429"] = sum(
            1 for e in window if (e.get("responseStatus") or {}).get("code") == 429
        )
        self.results["rss_at_n_mib"] = round(rss_mib(op.pid()), 1)

    def latency(self, op: OperatorProcess) -> None:
        samples = []
        before = Snapshot(op)
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
        self.phases["latency"] = phase(before, Snapshot(op))
        samples.sort()
        self.results["latency_samples"] = len(samples)
        self.results["latency_p50_ms"] = round(statistics.median(samples) * 1000)
        self.results["latency_p99_ms"] = round(
            samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
        )

    def rotation(self, op: OperatorProcess) -> None:
        mark = self.audit.mark()
        total = self.n + self.args.latency_samples
        with self.measured("rotation", op):
            self.credentials("second")
            self.audit.wait_count(mark, self.secret_patch(), total, "rotation", 600)
            time.sleep(2)
        started = self.started_at(mark, lambda e: e["objectRef"].get("name") == CREDENTIALS)
        done = max(e["_end"] for e in self.audit.since(mark) if self.secret_patch()(e))
        self.results["rotation_seconds"] = round(done - started, 2)
        self.results["writes_rotation"] = count_writes(self.audit.since(mark))

    # -- phases: T tenants x K namespaces --------------------------------------------------
    def multi_onboarding(self, op: OperatorProcess) -> None:
        t, k = self.args.tenants, self.args.tenant_namespaces
        nss = set(self.create_namespaces("mt", t * k, lambda i: {"mt": f"t{i // k:04}"}))
        self.credentials("first", MT_CREDENTIALS)
        bodies = [
            self.tenant_body(f"mt-{i:04}", "mt-pull", MT_CREDENTIALS, {"mt": f"t{i:04}"})
            for i in range(t)
        ]
        mark = self.audit.mark()
        with self.measured("multi_onboarding", op):
            self.apply_tenants(bodies)
            self.audit.wait_count(mark, self.onboarding_write(nss), 2 * len(nss), "multi", 900)
            self.wait_ready("mt-", t, k, 600)
            time.sleep(2)  # the last Events land
        started = self.started_at(
            mark, lambda e: e["verb"] == "create" and e["objectRef"]["resource"] == names.PLURAL
        )
        done = max(e["_end"] for e in self.onboarded(mark, nss))
        self.results["multi_seconds"] = round(done - started, 2)
        self.results["multi_vs_floor"] = round(
            self.results["multi_seconds"] / self.results["multi_floor_seconds"], 2
        )
        window = self.audit.since(mark)
        self.results["writes_multi"] = count_writes(window)
        self.results["writes_per_tenant_multi"] = self.per_tenant(mark, "mt-", t)
        self.results["multi_max_in_flight_writes"] = max_in_flight(window)

    def multi_rotation(self, op: OperatorProcess) -> None:
        t, k = self.args.tenants, self.args.tenant_namespaces
        nss = {f"mt-{i:05}" for i in range(t * k)}
        hashes = self.content_hashes("mt-")
        mark = self.audit.mark()
        with self.measured("multi_rotation", op):
            self.credentials("second", MT_CREDENTIALS)
            self.audit.wait_count(mark, self.secret_patch(nss), t * k, "multi rotation", 900)
            self.wait_ready("mt-", t, k, 600, not_hashes=hashes)  # the status tells it
        started = self.started_at(mark, lambda e: e["objectRef"].get("name") == MT_CREDENTIALS)
        done = max(e["_end"] for e in self.audit.since(mark) if self.secret_patch(nss)(e))
        self.results["multi_rotation_seconds"] = round(done - started, 2)
        self.results["multi_rotation_vs_floor"] = round(
            self.results["multi_rotation_seconds"] / self.results["multi_rotation_floor_seconds"],
            2,
        )
        self.results["multi_rotation_vs_floor_reads"] = round(
            self.results["multi_rotation_seconds"]
            / self.results["multi_rotation_floor_reads_seconds"],
            2,
        )
        self.results["writes_multi_rotation"] = count_writes(self.audit.since(mark))
        self.results["writes_per_tenant_multi_rotation"] = self.per_tenant(mark, "mt-", t)

    # -- phases: idle, restart, unrelated Secrets ------------------------------------------
    def idle(self, op: OperatorProcess) -> None:
        mark = self.audit.mark()
        with self.measured("idle", op):
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
        before = Snapshot(None)
        new = self.operator().start()
        self.results["restart_ready_seconds"] = round(time.monotonic() - started, 2)
        time.sleep(self.args.settle)
        self.phases["restart"] = phase(before, Snapshot(new))
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

        with self.measured("unrelated_secrets", op):
            parallel(create, range(self.args.unrelated_secrets), 32)
            time.sleep(self.args.settle)
        after = rss_mib(op.pid())
        self.results["unrelated_secrets"] = self.args.unrelated_secrets
        self.results["rss_before_unrelated_mib"] = round(before, 1)
        self.results["rss_after_unrelated_mib"] = round(after, 1)
        self.results["rss_unrelated_change_pct"] = round(100 * (after - before) / before, 1)

    # -- the large cluster ---------------------------------------------------------------------
    def large(self) -> None:
        """N namespaces, T tenants selecting N/T each, S ServiceAccounts: onboarding, RSS, the
        loop's lag at steady state, during a resync and during a periodic re-list."""
        a = self.args
        n, t = a.large_namespaces, a.large_tenants
        nss = self.create_namespaces("lg", n, lambda i: {"lg": f"t{i % t:04}"})
        admin = self.admin()

        def create_sa(j: int) -> None:
            admin.core.create_namespaced_service_account(
                nss[j % n], {"metadata": {"name": f"app-{j // n}"}}, _preload_content=False
            )

        parallel(create_sa, range(max(0, a.large_service_accounts - n)), 32)
        self.credentials("first")
        op = self.operator(f"--resync={a.large_resync}", f"--relist={a.large_relist}")
        op.start(timeout=900)
        try:
            time.sleep(a.settle)
            self.results["large_rss_view_mib"] = round(rss_mib(op.pid()), 1)
            bodies = [
                self.tenant_body(f"lg-{i:04}", "lg-pull", CREDENTIALS, {"lg": f"t{i:04}"})
                for i in range(t)
            ]
            mark = self.audit.mark()
            with self.measured("large_onboarding", op):
                self.apply_tenants(bodies)
                self.audit.wait_count(mark, self.onboarding_write(set(nss)), 2 * n, "large", 1800)
                self.wait_ready("lg-", t, n // t, 900)
            started = self.started_at(
                mark,
                lambda e: e["verb"] == "create" and e["objectRef"]["resource"] == names.PLURAL,
            )
            done = max(e["_end"] for e in self.onboarded(mark, set(nss)))
            self.results["large_onboarding_seconds"] = round(done - started, 2)
            self.results["writes_large"] = count_writes(self.audit.since(mark))
            self.results["writes_per_tenant_large"] = self.per_tenant(mark, "lg-", t)
            with self.measured("large_steady", op):
                time.sleep(a.large_steady)
            self.around("large_resync", op, "tenant_registry_resyncs_total", 1, a.large_resync)
            self.around("large_relist", op, "relists", len(KIND_COUNT), a.large_relist)
            self.results["large_rss_mib"] = round(rss_mib(op.pid()), 1)
        finally:
            op.stop()
        self.results["large_namespaces"] = n
        self.results["large_tenants"] = t
        self.results["large_service_accounts"] = max(n, a.large_service_accounts)

    def around(self, name: str, op: OperatorProcess, counter: str, by: int, period: float) -> None:
        """Phase `name`: from just before `counter` grows by `by` until the queue is empty."""
        last = Snapshot(op)
        base = last.values.get(counter, 0)
        deadline = time.monotonic() + period * 2 + 60
        while time.monotonic() < deadline:
            time.sleep(3)  # each look renders /metrics: ~10 series per tenant
            now = Snapshot(op)
            if now.values.get(counter, 0) >= base + by:
                break
            last = now
        else:
            raise SystemExit(f"benchmark: no {name} within {period * 2 + 60:.0f} s")
        while Snapshot(op).values.get("tenant_registry_queue_depth", 0):
            time.sleep(1)
        self.phases[name] = phase(last, Snapshot(op))

    def operator(self, *extra: str) -> OperatorProcess:
        return OperatorProcess(
            self.cp,
            f"--concurrency={self.args.concurrency}",
            "--log-format=json",
            "--resync=300",
            *extra,
            log_name=f"operator-{time.monotonic_ns()}",
        )

    def run(self, scenarios: set[str]) -> dict[str, Any]:
        small = scenarios & {"single", "multi"}
        if small:
            self.on_control_plane(lambda: self.run_small(small))
        if "large" in scenarios:
            if small:  # a fresh cluster: nothing of the other scenarios in the view
                self.cp = ControlPlane(kcm_qps=self.args.kcm_qps, kcm_burst=self.args.kcm_qps * 2)
            self.on_control_plane(self.large)
        self.results["machine"] = (
            f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"
        )
        self.results["namespaces"] = self.n
        self.results["tenants"] = self.args.tenants
        self.results["tenant_namespaces"] = self.args.tenant_namespaces
        self.results["concurrency"] = self.args.concurrency
        self.results["phases"] = self.phases
        return self.results

    def on_control_plane(self, scenario: Callable[[], None]) -> None:
        self.cp.start()
        try:
            install(self.cp)
            self.audit = Audit(self.cp.audit_log)
            scenario()
        finally:
            self.cp.cleanup()

    def run_small(self, scenarios: set[str]) -> None:
        """The floors first (nothing else writing), then one operator through the phases."""
        if "single" in scenarios:
            self.floor()
        if "multi" in scenarios:
            self.multi_floor()
        op = self.operator().start()
        try:
            if "single" in scenarios:
                self.cold_start(op)
                self.latency(op)
                self.rotation(op)
            if "multi" in scenarios:
                self.multi_onboarding(op)
                self.multi_rotation(op)
            self.idle(op)
            op = self.restart(op)
            self.unrelated_secrets(op)
        finally:
            op.stop()


KIND_COUNT = ("namespaces", "serviceaccounts", "copies", "credentials")  # relists per round

ROWS = [
    ("namespaces", "namespaces (N)"),
    ("floor_seconds", "floor: bare client, N Secrets + N SA patches (s)"),
    ("cold_start_seconds", "cold start: TenantRegistry -> all N onboarded (s)"),
    ("cold_start_vs_floor", "cold start / floor (target <= 1.2)"),
    ("latency_p50_ms", "latency default SA created -> patched, p50 (ms)"),
    ("latency_p99_ms", "latency p99 (ms, target <= 1000)"),
    ("writes_onboarding", "writes, onboarding"),
    ("rotation_seconds", "rotation: all copies updated (s)"),
    ("writes_rotation", "writes, rotation"),
    ("tenants", "multi-tenant: tenants (T)"),
    ("tenant_namespaces", "multi-tenant: namespaces per tenant (K)"),
    ("multi_floor_seconds", "floor: T*K Secrets + T*K SA patches (s)"),
    ("multi_seconds", "multi-tenant: T tenants applied -> all onboarded (s)"),
    ("multi_vs_floor", "multi-tenant / floor (target <= 1.3)"),
    ("writes_multi", "writes, multi-tenant onboarding"),
    ("writes_per_tenant_multi", "writes per tenant, onboarding (besides per namespace)"),
    ("multi_rotation_floor_seconds", "floor: T*K Secret patches (s)"),
    ("multi_rotation_seconds", "multi-tenant rotation: all T*K copies updated (s)"),
    ("multi_rotation_vs_floor", "multi-tenant rotation / floor (target <= 1.3)"),
    ("multi_rotation_floor_reads_seconds", "floor: T*K namespace GETs + Secret patches (s)"),
    ("multi_rotation_vs_floor_reads", "multi-tenant rotation / that floor"),
    ("writes_multi_rotation", "writes, multi-tenant rotation"),
    ("writes_per_tenant_multi_rotation", "writes per tenant, rotation (besides copies)"),
    ("writes_idle", "writes, idle"),
    ("lease_renewals_per_minute", "Lease renewals per minute (leader election)"),
    ("writes_restart", "writes, restart with nothing to do"),
    ("restart_ready_seconds", "restart: process start -> healthy (s)"),
    ("shutdown_seconds", "SIGTERM -> exited (s)"),
    ("rss_idle_mib", "RSS idle (MiB)"),
    ("rss_at_n_mib", "RSS at N namespaces (MiB)"),
    ("rss_unrelated_change_pct", "RSS change after unrelated Secrets (%, target < 5)"),
    ("max_in_flight_writes", "max writes in flight (bound: --concurrency)"),
    ("http_429", "HTTP 429 responses"),
    ("large_namespaces", "large: namespaces"),
    ("large_tenants", "large: tenants"),
    ("large_service_accounts", "large: ServiceAccounts"),
    ("large_onboarding_seconds", "large: tenants applied -> all onboarded (s)"),
    ("writes_per_tenant_large", "large: writes per tenant (besides per namespace)"),
    ("large_rss_view_mib", "large: RSS, view loaded, no tenant (MiB)"),
    ("large_rss_mib", "large: RSS, all onboarded (MiB, target <= 100)"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--scenarios",
        default="single,multi",
        help="comma-separated: single, multi, large (default single,multi)",
    )
    p.add_argument("--namespaces", type=int, default=1000, help="N (default 1000; try 5000)")
    p.add_argument("--tenants", type=int, default=400, help="multi-tenant: T (default 400)")
    p.add_argument(
        "--tenant-namespaces", type=int, default=5, help="multi-tenant: K per tenant (5)"
    )
    p.add_argument("--large-namespaces", type=int, default=10_000)
    p.add_argument("--large-tenants", type=int, default=1_000)
    p.add_argument(
        "--large-service-accounts",
        type=int,
        default=20_000,
        help="ServiceAccounts in all (the `default` ones included; 20,000)",
    )
    p.add_argument("--large-resync", type=float, default=60, help="large: --resync (60)")
    p.add_argument("--large-relist", type=float, default=120, help="large: --relist (120)")
    p.add_argument("--large-steady", type=float, default=20, help="large: steady window (20)")
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
    scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    unknown = scenarios - {"single", "multi", "large"}
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    results = Bench(args).run(scenarios)
    print(f"\ntenant-registry-operator benchmark ({results['machine']})")
    for key, label in ROWS:
        if key not in results:
            continue
        value = results[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "0"
        print(f"  {label:<58} {value}")
    print(
        "\n  per phase: wall s; CPU s of the operator, of kube-apiserver + etcd; the operator's "
        "event loop's largest lag (ms, at most); its writes; its reads (requests)"
    )
    for name, ph in results["phases"].items():
        writes = ", ".join(f"{k}: {v}" for k, v in ph["writes"].items()) or "0"
        reads = ", ".join(f"{k}: {v}" for k, v in ph.get("reads", {}).items()) or "0"
        print(
            f"  {name:<22} {ph['seconds']:>7} s {ph['cpu_seconds']:>7} s "
            f"{ph['cluster_cpu_seconds']:>7} s {ph['loop_lag_max_ms']:>6} ms  {writes}; "
            f"reads {reads}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
