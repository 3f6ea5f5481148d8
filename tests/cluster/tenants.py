"""The test's view of the cluster: create tenants and namespaces as a user would, read back
what the operator did. pykube-ng is the independent client; kubectl applies TenantRegistries."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pykube

from tenant_registry.localcluster import ControlPlane
from tests.leaks import LEDGER
from tests.waiting import wait_for

OPERATOR_NS = "tenant-registry-system"
OPERATOR_USER = "system:serviceaccount:tenant-registry-system:tenant-registry-operator"


class Cluster:
    def __init__(self, api: pykube.HTTPClient, cp: ControlPlane) -> None:
        self.api = api
        self.cp = cp
        self.TenantRegistry = pykube.object_factory(
            api, "registry.tenancy.dev/v1alpha1", "TenantRegistry"
        )

    # -- arrange ------------------------------------------------------------------------
    def namespace(self, name: str, **labels: str) -> pykube.Namespace:
        ns = pykube.Namespace(self.api, {"metadata": {"name": name, "labels": labels}})
        ns.create()
        return ns

    def label_namespace(self, name: str, **labels: str | None) -> None:
        ns = pykube.Namespace.objects(self.api).get(name=name)
        ns.patch({"metadata": {"labels": labels}})

    def credentials(
        self,
        name: str,
        username: str | None = "bot",
        password: str | None = "s3cret-pw",
        type_: str = "kubernetes.io/basic-auth",
        **extra: str,
    ) -> None:
        data: dict[str, str | None] = {"username": username, "password": password, **extra}
        self.secret(OPERATOR_NS, name, type_, {k: v for k, v in data.items() if v is not None})

    def secret(
        self,
        namespace: str,
        name: str,
        type_: str,
        string_data: dict[str, str],
        **metadata: Any,
    ) -> None:
        if namespace == OPERATOR_NS:  # credentials: the last test searches for them
            LEDGER.credential(string_data.get("username"), string_data.get("password"))
            LEDGER.dockerconfig(string_data.get(".dockerconfigjson", ""))
        obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": type_,
            "metadata": {"name": name, "namespace": namespace, **metadata},
            "stringData": string_data,
        }
        # Server-side: client-side apply would copy a large Secret into an annotation.
        self.cp.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(obj)
        )

    def service_account(
        self, namespace: str, name: str, pull_secrets: list[str] | None = None, **labels: str
    ) -> None:
        obj: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace, "labels": labels}}
        if pull_secrets is not None:
            obj["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
        pykube.ServiceAccount(self.api, obj).create()

    def tenant(
        self,
        name: str,
        *,
        secret_name: str,
        registries: list[dict[str, Any]],
        namespaces: dict[str, Any],
        **spec: Any,
    ) -> None:
        """kubectl apply, as a user or GitOps would."""
        obj = {
            "apiVersion": "registry.tenancy.dev/v1alpha1",
            "kind": "TenantRegistry",
            "metadata": {"name": name},
            "spec": {
                "secretName": secret_name,
                "registries": registries,
                "namespaces": namespaces,
                **spec,
            },
        }
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def onboard(self, name: str, namespaces: list[str], **spec: Any) -> None:
        """A tenant `name` selecting `namespaces` by the label tenant=<name>: credentials
        `name` (password "first-password"), server `<name>.example`, Secret `<name>-pull`;
        waits until every default ServiceAccount has the entry."""
        for ns in namespaces:
            self.namespace(ns, tenant=name)
        self.credentials(name, username="u", password="first-password")
        self.tenant(
            name,
            secret_name=f"{name}-pull",
            registries=[registry(f"{name}.example", name)],
            namespaces={"selector": {"matchLabels": {"tenant": name}}},
            **spec,
        )
        for ns in namespaces:
            wait_for(lambda ns=ns: f"{name}-pull" in self.pull_secrets(ns), what=f"entry in {ns}")

    def tenant_in(
        self, name: str, namespaces: list[str], *, server: str, secret_name: str = "", **spec: Any
    ) -> None:
        """A tenant `name` with credentials `name` (the defaults of `credentials`), Secret
        `secret_name` (`<name>-pull` unless given), one registry `server`, selecting
        `namespaces` by name. Waits for nothing."""
        self.credentials(name)
        self.tenant(
            name,
            secret_name=secret_name or f"{name}-pull",
            registries=[registry(server, name)],
            namespaces={"names": namespaces},
            **spec,
        )

    def onboard_one(self, name: str, *, server: str = "", wait: bool = True) -> str:
        """A tenant `name` with credentials `name`, Secret `<name>-pull`, selecting one new
        namespace `<name>-a` (returned); waits until its default ServiceAccount has the entry."""
        ns = f"{name}-a"
        self.namespace(ns)
        self.tenant_in(name, [ns], server=server or f"{name}.example")
        if wait:
            wait_for(lambda: f"{name}-pull" in self.pull_secrets(ns), what=f"entry in {ns}")
        return ns

    def delete_tenant(self, name: str) -> None:
        self.cp.kubectl("delete", "tenantregistry", name, "--wait=false")

    def drop_finalizers(self, name: str, *, what: str) -> None:
        """Remove a TenantRegistry's finalizers by hand, as an admin does whose operator is
        down (no cleanup runs), and wait until it is gone (`what` names that wait)."""
        self.cp.kubectl(
            "patch",
            "tenantregistry",
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
        )
        wait_for(lambda: self.tenant_obj(name) is None, what=what)

    def fight_entry(self, name: str, ns: str, rounds: int = 10) -> int:
        """Another manager: remove tenant `name`'s entry from `ns`'s default ServiceAccount
        every time the operator puts it back, until it stops (or `rounds` removals); how many
        times it was put back."""
        restored = 0
        for _ in range(rounds):
            wait_for(lambda: f"{name}-pull" in self.pull_secrets(ns), what="entry present")
            sa = pykube.ServiceAccount.objects(self.api, namespace=ns).get(name="default")
            sa.patch({"imagePullSecrets": None})
            if not self.entry_back(name, ns):
                break
            restored += 1
        return restored

    # -- observe -----------------------------------------------------------------------
    def copy(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = pykube.Secret.objects(self.api, namespace=namespace).get_or_none(name=name)
        return obj.obj if obj is not None else None

    def dockerconfig(self, namespace: str, name: str) -> dict[str, Any] | None:
        copy = self.copy(namespace, name)
        if copy is None:
            return None
        return dict(json.loads(base64.b64decode(copy["data"][".dockerconfigjson"])))

    def sa(self, namespace: str, name: str = "default") -> dict[str, Any] | None:
        obj = pykube.ServiceAccount.objects(self.api, namespace=namespace).get_or_none(name=name)
        return obj.obj if obj is not None else None

    def pull_secrets(self, namespace: str, name: str = "default") -> list[str]:
        sa = self.sa(namespace, name) or {}
        return [p.get("name", "") for p in sa.get("imagePullSecrets") or []]

    def entry_back(self, name: str, ns: str, timeout: float = 3) -> bool:
        """Whether tenant `name`'s entry is (back) on `ns`'s default ServiceAccount within
        `timeout` seconds."""
        try:
            wait_for(
                lambda: f"{name}-pull" in self.pull_secrets(ns), what="re-add", timeout=timeout
            )
        except AssertionError:
            return False
        return True

    def tenant_obj(self, name: str) -> dict[str, Any] | None:
        obj = self.TenantRegistry.objects(self.api).get_or_none(name=name)
        return obj.obj if obj is not None else None

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.tenant_obj(name) or {}).get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for c in self.status(name).get("conditions") or []:
            if c.get("type") == type_:
                return dict(c)
        return {}

    def events(self, tenant: str) -> list[dict[str, Any]]:
        return [
            e.obj
            for e in pykube.Event.objects(self.api, namespace="default")
            if e.obj.get("involvedObject", {}).get("name") == tenant
            and e.obj.get("involvedObject", {}).get("kind") == "TenantRegistry"
        ]

    def namespace_events(self, namespace: str) -> list[dict[str, Any]]:
        """The operator's Events in a tenant namespace."""
        return [
            e.obj
            for e in pykube.Event.objects(self.api, namespace=namespace)
            if (e.obj.get("source") or {}).get("component") == "tenant-registry-operator"
        ]

    def operator_writes(self, since: int = 0, *, leases: bool = False) -> list[dict[str, Any]]:
        """Successful writes by the operator's identity, from the audit log (entry index).
        Renewals of its leader-election Lease (one every 2 s) are left out unless `leases`."""
        entries = list(self.cp.audit_events())[since:]
        return [
            e
            for e in entries
            if (e.get("user") or {}).get("username") == OPERATOR_USER
            and (e.get("responseStatus") or {}).get("code", 0) < 400
            and (leases or (e.get("objectRef") or {}).get("resource") != "leases")
        ]

    def audit_mark(self) -> int:
        return len(list(self.cp.audit_events()))

    def settle(self, quiet: float = 2.0, timeout: float = 60.0) -> None:
        """Wait until the operator has written nothing (its Lease aside) for `quiet` seconds:
        the last status write and Event of what a test did have landed, however loaded the
        machine. Fails after `timeout` if the operator never stops writing."""
        deadline = time.monotonic() + timeout
        while True:
            mark = self.audit_mark()
            time.sleep(quiet)
            if not self.operator_writes(mark):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the operator kept writing for {timeout:.0f} s")


def registry(server: str, credentials: str, **fields: Any) -> dict[str, Any]:
    """A registry entry. The tests' `*.example` registries do not exist, so they are not
    checked (`verify: false`) unless `verify=True` is given."""
    return {"server": server, "credentialsRef": {"name": credentials}, "verify": False, **fields}
