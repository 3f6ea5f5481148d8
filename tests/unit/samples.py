"""One sample tenant shared by the planner and scheduling tests."""

from __future__ import annotations

from tenant_registry.desired import Active, desired_copy
from tenant_registry.spec import Credentials, Redacted, Selection, TenantSpec

OPNS = "tenant-registry-system"
SPEC = TenantSpec(
    name="acme",
    uid="uid-1",
    generation=1,
    secret_name="acme-pull",
    registries=(),
    namespaces=Selection(include=("acme-*",)),
    service_accounts=Selection(include=("default",)),
    conflict_policy="Skip",
    suspend=False,
)
COPY = desired_copy(SPEC, [("r.example", Credentials("u", Redacted("p")))])
ACTIVE = Active(SPEC, COPY)
