"""deploy/admission-policy.yaml confines the operator's identity to what it owns.

Every denied request here is made as the operator's own ServiceAccount, including requests
the operator's code never makes (what a compromised or buggy operator could try). After each
denial the object is checked unchanged; the allowed shapes are the ones the code writes
(desired.copy_manifest / copy_patch, and the session operator's own ServiceAccount patches).
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pykube
import pytest

from tenant_registry import dockerconfig, names
from tenant_registry.desired import Content, DesiredCopy, copy_manifest, copy_patch
from tenant_registry.localcluster import ControlPlane
from tenant_registry.localcluster.controlplane import KubectlError
from tests.cluster.as_operator import AsOperator, assert_denied
from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster
OPERATOR_NS = names.DEFAULT_OPERATOR_NAMESPACE
DOCKERCONFIG = b'{"auths":{"acme.example":{"auth":"dTpw"}}}'
WORKLOAD_IDENTITY = "iam.gke.io/gcp-service-account"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def as_operator(control_plane: ControlPlane, operator: RunningOperator) -> AsOperator:
    return AsOperator(control_plane, OPERATOR_NS)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


Change = Callable[[Obj], None]


def put(*path: str | int, value: Any) -> Change:
    """Set the field at `path` (keys kept whole: label keys have dots); None deletes it."""

    def change(obj: Obj) -> None:
        *parents, last = path
        target: Any = obj
        for p in parents:
            target = target[p] if isinstance(p, int) else target.setdefault(p, {})
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value

    return change


@dataclass(frozen=True)
class Given:
    """One test's namespace, and the (suspended) tenant whose copies it holds."""

    k8s: Cluster
    ns: str
    tenant: str
    uid: str

    def copy(self, tenant: str = "") -> DesiredCopy:
        return DesiredCopy(
            tenant=tenant or self.tenant,
            tenant_uid=self.uid if not tenant else f"uid-of-{tenant}",
            secret_name="regcred",
            content=Content(DOCKERCONFIG),
            content_hash=dockerconfig.content_hash(DOCKERCONFIG),
        )

    def manifest(self, *changes: Change) -> Obj:
        body = copy_manifest(self.copy(), self.ns)
        for change in changes:
            change(body)
        return body

    def owner(self, *, controller: bool = False) -> Obj:
        """An ownerReference to a real object (garbage collection deletes a Secret whose
        owners are all gone)."""
        cm = pykube.ConfigMap(
            self.k8s.api, {"metadata": {"name": "owner", "namespace": self.ns}, "data": {}}
        )
        if not cm.exists():
            cm.create()
        cm.reload()
        ref = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "owner",
            "uid": cm.obj["metadata"]["uid"],
        }
        if controller:
            ref["controller"] = True
        return ref

    def create_secret(self, body: Obj) -> Obj:
        body = copy.deepcopy(body)
        body.update(apiVersion="v1", kind="Secret")
        body["metadata"]["namespace"] = self.ns
        created = pykube.Secret(self.k8s.api, body)
        created.create()
        return dict(created.obj)

    def secret(self, name: str = "regcred") -> Obj | None:
        return self.k8s.copy(self.ns, name)


@pytest.fixture(scope="module")
def tenant(control_plane: ControlPlane, operator: RunningOperator) -> Iterator[tuple[str, str]]:
    """A real TenantRegistry (garbage collection checks owners exist), suspended so the
    session operator neither writes nor removes anything for it."""
    name = f"vap-owner-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name},
        "spec": {
            "secretName": "regcred",
            "registries": [
                {"server": "acme.example", "credentialsRef": {"name": name}, "verify": False}
            ],
            "namespaces": {"names": ["vap-selects-nothing"]},
            "suspend": True,
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(body))
    uid = control_plane.kubectl(
        "get", "tenantregistry", name, "-o", "jsonpath={.metadata.uid}"
    ).stdout.strip()
    yield name, uid
    control_plane.kubectl("delete", "tenantregistry", name, "--wait=false")


@pytest.fixture
def given(k8s: Cluster, unique: str, tenant: tuple[str, str]) -> Iterator[Given]:
    ns = f"vap-{unique}"
    k8s.namespace(ns)
    yield Given(k8s, ns, *tenant)
    # What the test forged as the operator (entries recorded for a tenant that is deleted
    # after the module, Secrets the policy keeps it from fixing) must not outlive it: the
    # session's operator would keep releasing or retrying it while later modules count writes.
    k8s.cp.kubectl("delete", "namespace", ns, "--wait=false")


def unmanaged(type_: str = names.DOCKERCONFIGJSON_TYPE, **meta: Any) -> Obj:
    """Someone else's Secret named like our copy."""
    if type_ == names.DOCKERCONFIGJSON_TYPE:
        data = {names.DOCKERCONFIGJSON_KEY: b64('{"auths":{"theirs.example":{}}}')}
    else:
        data = {"mine": b64("keep-me")}
    return {"type": type_, "metadata": {"name": "regcred", **meta}, "data": data}


# -- Secrets: CREATE only a copy, exactly as copy_manifest() writes it ---------------------------
OWNER = ("metadata", "ownerReferences", 0)
LABELS = ("metadata", "labels")
CREATE_DENIED: list[tuple[str, Change, str]] = [
    ("opaque", put("type", value="Opaque"), "may create only its copies"),
    (
        "a token Secret for some ServiceAccount",
        lambda o: o.update(
            type="kubernetes.io/service-account-token",
            data={},
            metadata={**o["metadata"], "annotations": {"kubernetes.io/service-account.name": "x"}},
        ),
        "may create only its copies",
    ),
    ("no managed-by label", put(*LABELS, names.LABEL_MANAGED_BY, value=None), "only its copies"),
    ("another manager", put(*LABELS, names.LABEL_MANAGED_BY, value="helm"), "only its copies"),
    ("no tenant label", put(*LABELS, names.LABEL_TENANT, value=None), "only its copies"),
    ("empty tenant label", put(*LABELS, names.LABEL_TENANT, value=""), "only its copies"),
    ("another data key", put("data", "token", value=b64("x")), "holds only .dockerconfigjson"),
    ("a stringData key", put("stringData", value={"token": "x"}), "holds only .dockerconfigjson"),
    ("no ownerReference", put("metadata", "ownerReferences", value=None), "one ownerReference"),
    ("owned by another tenant", put(*OWNER, "name", value="other"), "one ownerReference"),
    (
        "a second, foreign owner",
        lambda o: o["metadata"]["ownerReferences"].append(
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app", "uid": "u-1"}
        ),
        "one ownerReference",
    ),
    ("a controller owner", put(*OWNER, "controller", value=True), "one ownerReference"),
    ("a blocking owner", put(*OWNER, "blockOwnerDeletion", value=True), "one ownerReference"),
    ("a finalizer", put("metadata", "finalizers", value=["example.com/keep"]), "no finalizers"),
    ("another label", put(*LABELS, "replicate-to", value="everywhere"), "its own labels"),
    (
        "another annotation",
        put(
            "metadata",
            "annotations",
            "reflector.v1.k8s.emberstack.com/reflection-allowed",
            value="true",
        ),
        "registry.tenancy.dev/ annotations",
    ),
    ("immutable", put("immutable", value=True), "is not immutable"),
]


@pytest.mark.parametrize(
    ("change", "because"), [pytest.param(c, b, id=i) for i, c, b in CREATE_DENIED]
)
def test_operator_creates_nothing_but_a_copy(
    given: Given, as_operator: AsOperator, change: Change, because: str
) -> None:
    assert_denied(as_operator.create("secrets", given.ns, given.manifest(change)), because)
    assert given.secret() is None


# -- Secrets: UPDATE only its copies, staying the same tenant's, or adopt with consent --------
Existing = Callable[[Given], Obj]  # the Secret an admin or another tool put there
Patch = Callable[[Given, Obj], Obj]  # the operator's merge patch, given that Secret


def adoption(g: Given, existing: Obj, **extra: Any) -> Obj:
    """The operator's adoption patch: copy_patch keeping other owners, dropping other data."""
    meta = existing["metadata"]
    others = tuple(k for k in existing.get("data") or {} if k != names.DOCKERCONFIGJSON_KEY)
    patch = copy_patch(
        g.copy(), meta["resourceVersion"], others, tuple(meta.get("ownerReferences") or ())
    )
    for key, value in extra.items():
        patch["metadata"][key] = value
    return patch


def rotation(g: Given, existing: Obj) -> Obj:
    return copy_patch(g.copy(), existing["metadata"]["resourceVersion"])


def merged(base: Obj, patch: Obj) -> Obj:
    """`patch` applied onto `base` as a JSON merge patch would be (for building patches)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def consent(tenant: str) -> dict[str, str]:
    return {names.ANNOTATION_ADOPT: tenant}


def ours(g: Given, **over: Any) -> Obj:
    return {**copy_manifest(g.copy(), g.ns)["metadata"]["ownerReferences"][0], **over}


ANNOTATED = "registry.tenancy.dev/x"


def many(prefix: str, n: int, value: str = "v") -> dict[str, str]:
    return {f"{prefix}{i}": value for i in range(n)}


UPDATE_DENIED: list[tuple[str, Existing, Patch, str]] = [
    # Someone else's Secret: the bug of issue 9 was relabelling any dockerconfigjson Secret.
    (
        "relabel an unmanaged dockerconfigjson Secret",
        lambda g: unmanaged(),
        rotation,
        "may change only its copies, or adopt",
    ),
    (
        "label an unmanaged Secret",
        lambda g: unmanaged("Opaque"),
        lambda g, e: {"metadata": {"labels": {"x": "y"}}},
        "may change only its copies, or adopt",
    ),
    (
        "adopt where the consent names another tenant",
        lambda g: unmanaged(annotations=consent("someone-else")),
        adoption,
        "may change only its copies, or adopt",
    ),
    (
        "adopt, writing the consent itself",
        lambda g: unmanaged(),
        lambda g, e: adoption(g, e, annotations=consent(g.tenant)),
        "may change only its copies, or adopt",
    ),
    (
        "adopt a Secret another controller owns",
        lambda g: unmanaged(
            annotations=consent(g.tenant), ownerReferences=[g.owner(controller=True)]
        ),
        adoption,
        "never adopts a Secret that another controller owns",
    ),
    (
        "adopt an immutable Secret (only its labels: its data cannot change)",
        lambda g: {**unmanaged(annotations=consent(g.tenant)), "immutable": True},
        lambda g, e: {"metadata": {"labels": copy_manifest(g.copy(), g.ns)["metadata"]["labels"]}},
        "never adopts an immutable Secret",
    ),
    (
        "adopt an Opaque Secret",
        lambda g: unmanaged("Opaque", annotations=consent(g.tenant)),
        lambda g, e: {"metadata": {"labels": copy_manifest(g.copy(), g.ns)["metadata"]["labels"]}},
        "may change only its copies, or adopt",
    ),
    (
        "adopt, changing the owner's other data",
        lambda g: {
            **unmanaged(annotations=consent(g.tenant)),
            "data": {names.DOCKERCONFIGJSON_KEY: b64("{}"), "notes": b64("theirs")},
        },
        lambda g, e: merged(adoption(g, e), {"data": {"notes": b64("ours now")}}),
        "writes only .dockerconfigjson",
    ),
    (
        "adopt, dropping a foreign owner",
        lambda g: unmanaged(annotations=consent(g.tenant), ownerReferences=[g.owner()]),
        rotation,
        "leaves ownerReferences other than TenantRegistry ones",
    ),
    (
        "adopt, adding a finalizer",
        lambda g: unmanaged(annotations=consent(g.tenant)),
        lambda g, e: adoption(g, e, finalizers=["example.com/keep"]),
        "never changes a Secret's finalizers",
    ),
    (
        "adopt, changing the owner's labels",
        lambda g: unmanaged(annotations=consent(g.tenant), labels={"team": "a"}),
        lambda g, e: merged(adoption(g, e), {"metadata": {"labels": {"team": "b"}}}),
        "its own labels",
    ),
    # Labelled as a copy, yet not the tenant's: no write may make it one (the DELETE rule
    # would then let it go).
    (
        "forge ownership of a user's Secret wearing the copy's labels",
        lambda g: unmanaged(labels=copy_manifest(g.copy(), g.ns)["metadata"]["labels"]),
        rotation,
        "may change only its copies",
    ),
    (
        "give a user's labelled Secret the operator's annotation",
        lambda g: unmanaged(labels=copy_manifest(g.copy(), g.ns)["metadata"]["labels"]),
        lambda g, e: {"metadata": {"annotations": {names.ANNOTATION_CONTENT_HASH: "sha256:x"}}},
        "may change only its copies",
    ),
    (
        "take back a copy another controller claimed",
        lambda g: g.manifest(put("metadata", "ownerReferences", value=[g.owner(controller=True)])),
        adoption,
        "may change only its copies",
    ),
    (
        # (The ownerReference names the real tenant, whose uid the garbage collector finds: a
        # reference by a wrong name it would treat as gone and delete the Secret.)
        "take a copy whose TenantRegistry ownerReference names another tenant than its label",
        lambda g: g.manifest(put(*LABELS, names.LABEL_TENANT, value="someone-else")),
        rotation,
        "may change only its copies",
    ),
    # Its own copies: they stay its tenant's and keep what others put on them.
    (
        "relabel a copy to another tenant",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"labels": {names.LABEL_TENANT: "someone-else"}}},
        "a copy stays its tenant's",
    ),
    (
        "hand a copy to another tenant, owner and all",
        lambda g: g.manifest(),
        lambda g, e: copy_patch(g.copy("someone-else"), e["metadata"]["resourceVersion"]),
        "a copy stays its tenant's",
    ),
    (
        "give a copy whose tenant label was stripped to another tenant",
        lambda g: g.manifest(put(*LABELS, names.LABEL_TENANT, value=None)),
        lambda g, e: {"metadata": {"labels": {names.LABEL_TENANT: "someone-else"}}},
        "a copy stays its tenant's",
    ),
    (
        "strip the managed-by label",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"labels": {names.LABEL_MANAGED_BY: None}}},
        "must remain its copy",
    ),
    (
        "strip the tenant label",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"labels": {names.LABEL_TENANT: None}}},
        "a copy stays its tenant's",
    ),
    (
        "add a foreign owner",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"ownerReferences": [ours(g), g.owner()]}},
        "leaves ownerReferences other than TenantRegistry ones",
    ),
    (
        "drop a foreign owner",
        lambda g: g.manifest(lambda o: o["metadata"]["ownerReferences"].append(g.owner())),
        rotation,
        "leaves ownerReferences other than TenantRegistry ones",
    ),
    (
        "point the owner at another tenant",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"ownerReferences": [ours(g, name="someone-else")]}},
        "its own name the copy's tenant",
    ),
    (
        "claim control",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"ownerReferences": [ours(g, controller=True)]}},
        "its own name the copy's tenant",
    ),
    (
        "add a finalizer",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"finalizers": ["example.com/keep"]}},
        "never changes a Secret's finalizers",
    ),
    (
        "add a label",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"labels": {"replicate-to": "everywhere"}}},
        "its own labels",
    ),
    (
        "change someone's annotation",
        lambda g: g.manifest(put("metadata", "annotations", "team", value="a")),
        lambda g, e: {"metadata": {"annotations": {"team": "b"}}},
        "its own labels and registry.tenancy.dev/ annotations",
    ),
    (
        "add a data key",
        lambda g: g.manifest(),
        lambda g, e: {"data": {"token": b64("x")}},
        "writes only .dockerconfigjson",
    ),
    (
        "make it immutable",
        lambda g: g.manifest(),
        lambda g, e: {"immutable": True},
        "never makes it immutable",
    ),
    # Size limits: a tenant may fill its copies; the rules' CPU grows with the square of that.
    (
        "rotate a copy someone filled with annotations",
        lambda g: g.manifest(put("metadata", "annotations", value=many("a", 1000))),
        rotation,  # adds the content-hash annotation: 1,001
        "too large for the operator: 2 labels, 1001 annotations, 1 data keys, 1 ownerReferences"
        " (at most 1000 each)",
    ),
    (
        "shrink a copy that was over the limits",
        lambda g: g.manifest(put("metadata", "annotations", value=many(ANNOTATED, 1001))),
        lambda g, e: {"metadata": {"annotations": {f"{ANNOTATED}0": None, f"{ANNOTATED}1": None}}},
        "too large for the operator: 2 labels, 1001 annotations, 1 data keys, 1 ownerReferences"
        " before the change (at most 1000 each)",
    ),
    (
        "rotate a copy someone gave 1,001 labels",
        lambda g: g.manifest(lambda o: o["metadata"]["labels"].update(many("l", 999))),
        rotation,
        "too large for the operator: 1001 labels",
    ),
    (
        "adopt a Secret with 1,001 data keys",
        lambda g: {
            **unmanaged(annotations=consent(g.tenant)),
            "data": {names.DOCKERCONFIGJSON_KEY: b64("{}"), **many("k", 1000, b64("x"))},
        },
        lambda g, e: {"metadata": {"labels": copy_manifest(g.copy(), g.ns)["metadata"]["labels"]}},
        "1001 data keys",
    ),
    (
        "write 1,001 annotations of its own",
        lambda g: g.manifest(),
        lambda g, e: {"metadata": {"annotations": many(ANNOTATED, 1001)}},
        "too large for the operator: 2 labels, 1002 annotations, 1 data keys, 1 ownerReferences"
        " (at most 1000 each)",
    ),
]


@pytest.mark.parametrize(
    ("existing", "patch", "because"),
    [pytest.param(e, p, b, id=i) for i, e, p, b in UPDATE_DENIED],
)
def test_operator_changes_only_its_copies_or_adopts_with_consent(
    given: Given, as_operator: AsOperator, existing: Existing, patch: Patch, because: str
) -> None:
    before = given.create_secret(existing(given))
    answer = as_operator.merge_patch("secrets", given.ns, "regcred", patch(given, before))
    assert_denied(answer, because)
    after = given.secret()
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_copy_with_a_finalizer_keeps_it(given: Given, as_operator: AsOperator) -> None:
    given.create_secret(given.manifest(put("metadata", "finalizers", value=["example.com/keep"])))
    answer = as_operator.merge_patch(
        "secrets", given.ns, "regcred", {"metadata": {"finalizers": None}}
    )
    assert_denied(answer, "never changes a Secret's finalizers")
    after = given.secret()
    assert after is not None and after["metadata"]["finalizers"] == ["example.com/keep"]
    pykube.Secret(given.k8s.api, after).patch({"metadata": {"finalizers": None}})


# -- Secrets: DELETE only its copies ---------------------------------------------------------
DELETE_DENIED: list[tuple[str, Existing]] = [
    ("an Opaque Secret", lambda g: unmanaged("Opaque")),
    (
        "a dockerconfigjson Secret, even one consenting to adoption",
        lambda g: unmanaged(annotations=consent(g.tenant)),
    ),
    (
        "one with only the tenant label",
        lambda g: unmanaged(labels={names.LABEL_TENANT: g.tenant}),
    ),
    (
        "one another tool manages",
        lambda g: unmanaged(labels={names.LABEL_MANAGED_BY: "helm", names.LABEL_TENANT: g.tenant}),
    ),
    (
        "a user's own Secret wearing the copy's labels, without an ownerReference to a tenant",
        lambda g: unmanaged(
            labels={names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.LABEL_TENANT: g.tenant}
        ),
    ),
    (
        "a copy another controller claimed (not orphaned: fought over)",
        lambda g: g.manifest(put("metadata", "ownerReferences", value=[g.owner(controller=True)])),
    ),
    (
        "a copy whose TenantRegistry ownerReference names another tenant than its label",
        lambda g: g.manifest(put(*LABELS, names.LABEL_TENANT, value="someone-else")),
    ),
]


def test_operator_cannot_forge_ownership_of_a_users_labelled_secret_then_delete_it(
    given: Given, as_operator: AsOperator
) -> None:
    """Review 10b: with UPDATE deciding by labels, a patch adding the ownerReference and the
    content, then a DELETE, took a user's Secret in two requests."""
    labels = copy_manifest(given.copy(), given.ns)["metadata"]["labels"]
    before = given.create_secret(unmanaged(labels=labels))
    assert_denied(
        as_operator.merge_patch("secrets", given.ns, "regcred", rotation(given, before)),
        "may change only its copies",
    )
    assert_denied(as_operator.delete("secrets", given.ns, "regcred"), "may delete only its copies")
    after = given.secret()
    assert (
        after is not None
        and after["metadata"]["resourceVersion"] == (before["metadata"]["resourceVersion"])
    )


def test_operator_re_owns_its_orphaned_copy(given: Given, as_operator: AsOperator) -> None:
    existing = given.create_secret(
        given.manifest(put("metadata", "ownerReferences", value=[given.owner()]))
    )
    patch = adoption(given, existing)  # keeps the foreign owner, adds the tenant's
    assert as_operator.merge_patch("secrets", given.ns, "regcred", patch).code == 200
    owners = (given.secret() or {})["metadata"]["ownerReferences"]
    assert [o["kind"] for o in owners] == ["ConfigMap", names.KIND]


def test_operator_deletes_its_copy_orphaned_of_its_tenant(
    given: Given, as_operator: AsOperator
) -> None:
    """`kubectl delete treg --cascade=orphan`: the garbage collector strips the ownerReference
    (also with a foreign owner an adopted Secret kept)."""
    given.create_secret(given.manifest(put("metadata", "ownerReferences", value=None)))
    assert as_operator.delete("secrets", given.ns, "regcred").code == 200
    given.create_secret(given.manifest(put("metadata", "ownerReferences", value=[given.owner()])))
    assert as_operator.delete("secrets", given.ns, "regcred").code == 200


def test_operator_deletes_its_copy_of_any_size(given: Given, as_operator: AsOperator) -> None:
    """The size limits never stand in the way of cleanup: a DELETE walks nothing."""
    given.create_secret(given.manifest(put("metadata", "annotations", value=many("a", 5000))))
    assert as_operator.delete("secrets", given.ns, "regcred").code == 200


@pytest.mark.parametrize("existing", [pytest.param(e, id=i) for i, e in DELETE_DENIED])
def test_operator_deletes_only_its_copies(
    given: Given, as_operator: AsOperator, existing: Existing
) -> None:
    given.create_secret(existing(given))
    assert_denied(as_operator.delete("secrets", given.ns, "regcred"), "may delete only its copies")
    assert given.secret() is not None


def test_operator_cannot_delete_or_change_the_credentials_it_reads(
    k8s: Cluster, as_operator: AsOperator, unique: str
) -> None:
    name = f"vap-creds-{unique}"
    k8s.credentials(name)
    assert_denied(as_operator.delete("secrets", OPERATOR_NS, name), "may delete only its copies")
    answer = as_operator.merge_patch(
        "secrets", OPERATOR_NS, name, {"stringData": {"password": "x"}}
    )
    assert_denied(answer, "may change only its copies")
    assert k8s.copy(OPERATOR_NS, name) is not None


def test_kubectl_as_the_operator_is_denied_too(given: Given) -> None:
    """The same, through kubectl: delete, label and create someone else's Secret."""
    given.create_secret(unmanaged("Opaque"))
    kubeconfig = given.k8s.cp.serviceaccount_kubeconfig(OPERATOR_NS, "tenant-registry-operator")
    for verb in (
        ("delete", "secret", "regcred", "-n", given.ns),
        ("label", "secret", "regcred", "-n", given.ns, "x=y"),
        ("create", "secret", "generic", "forged", "-n", given.ns, "--from-literal=a=b"),
    ):
        with pytest.raises(KubectlError, match="denied request"):
            given.k8s.cp.kubectl(*verb, kubeconfig=kubeconfig)
    assert given.secret() is not None and given.secret("forged") is None


# -- Secrets: what the operator does write, allowed -------------------------------------------
def test_operator_creates_rotates_and_deletes_its_copy(
    given: Given, as_operator: AsOperator
) -> None:
    assert as_operator.create("secrets", given.ns, given.manifest()).code == 201
    existing = given.secret()
    assert existing is not None
    rotated = DesiredCopy(given.tenant, given.uid, "regcred", Content(b'{"auths":{}}'), "h2")
    patch = copy_patch(rotated, existing["metadata"]["resourceVersion"])
    assert as_operator.merge_patch("secrets", given.ns, "regcred", patch).code == 200
    assert as_operator.delete("secrets", given.ns, "regcred").code == 200
    assert given.secret() is None


def test_operator_adopts_with_consent_keeping_what_is_not_its(
    given: Given, as_operator: AsOperator
) -> None:
    owner = given.owner()
    existing = given.create_secret(
        {
            **unmanaged(
                annotations={**consent(given.tenant), "team": "a"},
                labels={"team": "a"},
                ownerReferences=[owner],
            ),
            "data": {names.DOCKERCONFIGJSON_KEY: b64("{}"), "notes": b64("theirs")},
        }
    )
    answer = as_operator.merge_patch("secrets", given.ns, "regcred", adoption(given, existing))
    assert answer.code == 200, answer
    adopted = given.secret()
    assert adopted is not None
    assert adopted["metadata"]["labels"] == {
        "team": "a",
        names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
        names.LABEL_TENANT: given.tenant,
    }
    assert adopted["metadata"]["ownerReferences"] == [owner, ours(given)]
    assert set(adopted["data"]) == {names.DOCKERCONFIGJSON_KEY}
    assert adopted["metadata"]["annotations"]["team"] == "a"


def test_a_stripped_tenant_label_may_be_put_back_for_the_owning_tenant(
    given: Given, as_operator: AsOperator
) -> None:
    existing = given.create_secret(given.manifest(put(*LABELS, names.LABEL_TENANT, value=None)))
    answer = as_operator.merge_patch("secrets", given.ns, "regcred", rotation(given, existing))
    assert answer.code == 200, answer
    repaired = given.secret()
    assert (
        repaired is not None and repaired["metadata"]["labels"][names.LABEL_TENANT] == given.tenant
    )


# -- ServiceAccounts: only its own entries and its own two annotations -------------------------
ENTRIES = names.ANNOTATION_SA_ENTRIES
ESCAPED = {
    ENTRIES: "registry.tenancy.dev~1added-pull-secrets",
    WORKLOAD_IDENTITY: "iam.gke.io~1gcp-service-account",
}


def service_account(
    g: Given, entries: list[str], claims: str, annotations: dict[str, str] | None = None
) -> Obj:
    """ServiceAccount `app`: a user's entries around ours (`regcred`), our claim, a
    workload-identity annotation (and `annotations`) and a label, as a real cluster's
    ServiceAccount has."""
    body = {
        "metadata": {
            "name": "app",
            "namespace": g.ns,
            "labels": {"team": "a"},
            "annotations": {
                WORKLOAD_IDENTITY: "app@example.iam.gserviceaccount.com",
                **(annotations or {}),
            },
        },
        "imagePullSecrets": [{"name": n} for n in entries],
    }
    if claims:
        body["metadata"]["annotations"][ENTRIES] = claims
    sa = pykube.ServiceAccount(g.k8s.api, body)
    sa.create()
    return dict(sa.obj)


def claim(g: Given, *secrets: str) -> str:
    return ",".join(f"{g.tenant}/{s}" for s in secrets)


def set_claims(value: str) -> dict[str, Any]:
    """The JSON Patch op writing our added-pull-secrets annotation."""
    return {"op": "add", "path": f"/metadata/annotations/{ESCAPED[ENTRIES]}", "value": value}


USUAL = ["user-a", "regcred", "user-b"]
Ops = Callable[[Given], list[dict[str, Any]]]
SA_DENIED: list[tuple[str, list[str], Ops, str]] = [
    (
        "add a label",
        USUAL,
        lambda g: [{"op": "add", "path": "/metadata/labels/x", "value": "y"}],
        "labels, ownerReferences or finalizers",
    ),
    (
        "add an ownerReference (garbage collection would delete the ServiceAccount)",
        USUAL,
        lambda g: [{"op": "add", "path": "/metadata/ownerReferences", "value": [g.owner()]}],
        "labels, ownerReferences or finalizers",
    ),
    (
        "add a finalizer",
        USUAL,
        lambda g: [{"op": "add", "path": "/metadata/finalizers", "value": ["example.com/x"]}],
        "labels, ownerReferences or finalizers",
    ),
    (
        "change the workload identity",
        USUAL,
        lambda g: [
            {
                "op": "replace",
                "path": f"/metadata/annotations/{ESCAPED[WORKLOAD_IDENTITY]}",
                "value": "attacker@example.iam.gserviceaccount.com",
            }
        ],
        "changes only the annotations",
    ),
    (
        "remove the workload identity",
        USUAL,
        lambda g: [{"op": "remove", "path": f"/metadata/annotations/{ESCAPED[WORKLOAD_IDENTITY]}"}],
        "changes only the annotations",
    ),
    (
        "add an annotation of its own choosing",
        USUAL,
        lambda g: [
            {
                "op": "add",
                "path": "/metadata/annotations/eks.amazonaws.com~1role-arn",
                "value": "arn:aws:iam::1:role/admin",
            }
        ],
        "changes only the annotations",
    ),
    (
        "set secrets",
        USUAL,
        lambda g: [{"op": "add", "path": "/secrets", "value": [{"name": "regcred"}]}],
        "secrets or automountServiceAccountToken",
    ),
    (
        "turn off the token mount",
        USUAL,
        lambda g: [{"op": "add", "path": "/automountServiceAccountToken", "value": False}],
        "secrets or automountServiceAccountToken",
    ),
    (
        "remove a user's entry",
        USUAL,
        lambda g: [{"op": "remove", "path": "/imagePullSecrets/0"}],
        "never adds, removes or reorders imagePullSecrets entries it did not claim",
    ),
    (
        "reorder the user's entries",
        USUAL,
        lambda g: [
            {
                "op": "replace",
                "path": "/imagePullSecrets",
                "value": [{"name": "user-b"}, {"name": "regcred"}, {"name": "user-a"}],
            }
        ],
        "never adds, removes or reorders imagePullSecrets entries it did not claim",
    ),
    (
        "add an entry without claiming it",
        USUAL,
        lambda g: [{"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "planted"}}],
        "never adds, removes or reorders imagePullSecrets entries it did not claim",
    ),
    (
        "claim a user's entry",
        USUAL,
        lambda g: [set_claims(claim(g, "regcred", "user-a"))],
        "an entry that was there before is never claimed",
    ),
    (
        "claim a user's entry and remove it",
        USUAL,
        lambda g: [
            set_claims(claim(g, "regcred", "user-a")),
            {"op": "remove", "path": "/imagePullSecrets/0"},
        ],
        "removes an imagePullSecrets entry only if added-pull-secrets claimed it",
    ),
    (
        "claim a name in advance, to remove the entry a user adds later",
        USUAL,
        lambda g: [set_claims(claim(g, "regcred", "later"))],
        "claims a name in added-pull-secrets only together with the entry it adds",
    ),
    (
        "remove its entry but keep the claim",
        USUAL,
        lambda g: [{"op": "remove", "path": "/imagePullSecrets/1"}],
        "removes an imagePullSecrets entry only if added-pull-secrets claimed it",
    ),
    (
        "remove its entry and the user's of the same name",
        ["user-a", "regcred", "user-b", "regcred"],
        lambda g: [
            {"op": "remove", "path": "/imagePullSecrets/3"},
            {"op": "remove", "path": "/imagePullSecrets/1"},
            {"op": "remove", "path": f"/metadata/annotations/{ESCAPED[ENTRIES]}"},
        ],
        "removes an imagePullSecrets entry only if added-pull-secrets claimed it, one per name",
    ),
    (
        "add a second entry of its name",
        USUAL,
        lambda g: [{"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "regcred"}}],
        "adds an imagePullSecrets entry only where none of that name exists",
    ),
]


@pytest.mark.parametrize(
    ("entries", "ops", "because"),
    [pytest.param(e, o, b, id=i) for i, e, o, b in SA_DENIED],
)
def test_operator_changes_only_its_entries_and_annotations_on_a_service_account(
    given: Given, as_operator: AsOperator, entries: list[str], ops: Ops, because: str
) -> None:
    before = service_account(given, entries, claim(given, "regcred"))
    answer = as_operator.json_patch("serviceaccounts", given.ns, "app", ops(given))
    assert_denied(answer, because)
    after = given.k8s.sa(given.ns, "app")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def _entries(n: int) -> list[str]:
    return [f"user-secret-{i:05d}" for i in range(n)]


def test_at_the_size_limits_the_rules_still_hold(given: Given, as_operator: AsOperator) -> None:
    """Up to the limits (1,000 entries, 1,000 annotations, 50 claims) the operator's own add
    and removal pass, and removing a user's entry is denied for what it is."""
    user = _entries(950)
    mine = [f"t{i}-pull" for i in range(49)]
    claims = ",".join(f"t{i}/t{i}-pull" for i in range(49))
    # 997 + the workload identity + added-pull-secrets = 999 annotations; 999 entries.
    service_account(given, user + mine, claims, many("team.example/a", 997))
    started = time.monotonic()
    add = as_operator.json_patch("serviceaccounts", given.ns, "app", add_ours(given, claims))
    took = time.monotonic() - started
    print(f"\nadd at the limits (1,000 entries, 999 annotations, 50 claims): {took:.2f} s")
    assert add.code == 200, add
    denied = as_operator.json_patch(
        "serviceaccounts", given.ns, "app", [{"op": "remove", "path": "/imagePullSecrets/500"}]
    )
    assert_denied(denied, "never adds, removes or reorders imagePullSecrets entries it did not")
    removal = as_operator.json_patch(
        "serviceaccounts",
        given.ns,
        "app",
        [
            {"op": "remove", "path": f"/imagePullSecrets/{len(user) + len(mine)}"},
            set_claims(claims),
        ],
    )
    assert removal.code == 200, removal
    assert given.k8s.pull_secrets(given.ns, "app") == user + mine


def add_ours(g: Given, claims: str = "") -> list[dict[str, Any]]:
    """The operator's add (desired._sa_patch): our entry, claimed in the same write."""
    return [
        {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "regcred"}},
        set_claims(f"{claims},{claim(g, 'regcred')}" if claims else claim(g, "regcred")),
    ]


TENANTS_50 = ",".join(f"t{i}/t{i}-pull" for i in range(50))
# What a tenant can make of its own ServiceAccount. Each collection a rule walks costs the API
# server O(n^2) CPU in CEL, so over the limits every write of the operator is denied at once.
SIZE_DENIED: list[tuple[str, Callable[[Given], Obj], Ops, str]] = [
    (
        "our entry would be the 1,001st",
        lambda g: service_account(g, _entries(1000), ""),
        add_ours,
        "too large for the operator: 1001 imagePullSecrets entries, 2 annotations,"
        " 1 added-pull-secrets items (at most 1000, 1000 and 50)",
    ),
    (
        "20,000 entries (2.3 s of API server CPU per write without the limits)",
        lambda g: service_account(g, _entries(20_000), ""),
        add_ours,
        "too large for the operator: 20001 imagePullSecrets entries",
    ),
    (
        "removing our entry from 1,001: cleanup too",
        lambda g: service_account(g, [*_entries(1000), "regcred"], claim(g, "regcred")),
        lambda g: [
            {"op": "remove", "path": "/imagePullSecrets/1000"},
            {"op": "remove", "path": f"/metadata/annotations/{ESCAPED[ENTRIES]}"},
        ],
        "too large for the operator: 1001 imagePullSecrets entries, 2 annotations,"
        " 1 added-pull-secrets items before the change (at most 1000, 1000 and 50)",
    ),
    (
        "a 51st claim (one per tenant that selects it)",
        lambda g: service_account(g, [f"t{i}-pull" for i in range(50)], TENANTS_50),
        lambda g: add_ours(g, TENANTS_50),
        "too large for the operator: 51 imagePullSecrets entries, 2 annotations,"
        " 51 added-pull-secrets items (at most 1000, 1000 and 50)",
    ),
    (
        "1,001 annotations",
        lambda g: service_account(g, ["user-a"], "", many("team.example/a", 1000)),
        add_ours,
        "too large for the operator: 2 imagePullSecrets entries, 1002 annotations",
    ),
    (
        "a claims annotation with 5,000 items (parsed by the rules, 3 macros per item)",
        lambda g: service_account(g, ["user-a"], ",".join(["x/y"] * 5000)),
        add_ours,
        "too large for the operator: 1 imagePullSecrets entries, 2 annotations,"
        " 5000 added-pull-secrets items before the change",
    ),
]


@pytest.mark.parametrize(
    ("make", "ops", "because"),
    [pytest.param(m, o, b, id=i) for i, m, o, b in SIZE_DENIED],
)
def test_over_the_size_limits_the_operator_writes_nothing(
    given: Given,
    as_operator: AsOperator,
    make: Callable[[Given], Obj],
    ops: Ops,
    because: str,
) -> None:
    before = make(given)
    try:
        started = time.monotonic()
        answer = as_operator.json_patch("serviceaccounts", given.ns, "app", ops(given))
        print(f"\ndenied in {time.monotonic() - started:.2f} s")
        assert_denied(answer, because)
        after = given.k8s.sa(given.ns, "app")
        assert after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    finally:
        # One of them claims an entry for the module's tenant, which the operator could then
        # never remove: the tenant's deletion would wait (retrying) for the rest of the run.
        pykube.ServiceAccount(given.k8s.api, before).delete()


def test_operator_adds_and_removes_only_its_entry_among_many(
    k8s: Cluster, unique: str, given: Given
) -> None:
    """The session operator's own patches, end to end, on a ServiceAccount with 999 user
    entries (ours is the 1,000th: the policy's limit), a workload identity and a label: in,
    then out, and nothing else changes."""
    name = f"vap-many-{unique}"
    user = _entries(999)
    service_account(given, user, "")
    k8s.credentials(name)
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[{"server": "many.example", "credentialsRef": {"name": name}, "verify": False}],
        namespaces={"names": [given.ns]},
        serviceAccounts={"names": ["app"]},
    )
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(given.ns, "app"), what="our entry")
    sa = k8s.sa(given.ns, "app") or {}
    assert k8s.pull_secrets(given.ns, "app") == [*user, f"{name}-pull"]
    assert sa["metadata"]["annotations"][ENTRIES] == f"{name}/{name}-pull"
    assert sa["metadata"]["annotations"][WORKLOAD_IDENTITY] == "app@example.iam.gserviceaccount.com"
    k8s.delete_tenant(name)
    wait_for(lambda: k8s.pull_secrets(given.ns, "app") == user, what="only our entry removed")
    sa = k8s.sa(given.ns, "app") or {}
    assert ENTRIES not in sa["metadata"]["annotations"]
    assert sa["metadata"]["annotations"][WORKLOAD_IDENTITY] == "app@example.iam.gserviceaccount.com"
    assert sa["metadata"]["labels"] == {"team": "a"}


def test_a_service_account_over_the_limits_is_reported_forbidden_with_the_rule(
    k8s: Cluster, unique: str, given: Given
) -> None:
    """The session operator meets a tenant's ServiceAccount with 1,000 entries: its write is
    denied (ours would be the 1,001st), the namespace fails as Forbidden with the policy's
    rule in status, and the copy is there all the same."""
    name = f"vap-big-{unique}"
    service_account(given, _entries(1000), "")
    k8s.credentials(name)
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[{"server": "big.example", "credentialsRef": {"name": name}, "verify": False}],
        namespaces={"names": [given.ns]},
        serviceAccounts={"names": ["app"]},
    )

    def failure() -> dict[str, Any]:
        return next(
            (f for f in k8s.status(name).get("failures", []) if f["namespace"] == given.ns), {}
        )

    wait_for(lambda: failure().get("reason") == "Forbidden", what="Forbidden in status")
    message = failure()["message"]
    assert message.endswith(
        "denied request: too large for the operator: 1001 imagePullSecrets entries,"
        " 2 annotations, 1 added-pull-secrets items (at most 1000, 1000 and 50)"
    ), message
    assert k8s.condition(name, "Ready")["status"] == "False"
    assert k8s.copy(given.ns, f"{name}-pull") is not None
    assert f"{name}-pull" not in k8s.pull_secrets(given.ns, "app")
    k8s.delete_tenant(name)


# -- Pods: deleted only when a controller that makes a new one owns them and they wait on a
# pull refused for authentication, outside kube-* and the operator's namespace ---------------
AUTH_BACK_OFF = (
    'Back-off pulling image "acme.example/a:1": ErrImagePull: rpc error: code = Unknown desc = '
    "failed to pull and unpack image: unexpected status from HEAD request to "
    "https://acme.example/v2/a/manifests/1: 401 Unauthorized"
)


def replica_set(k8s: Cluster, ns: str) -> Obj:
    """A real ReplicaSet to own Pods (garbage collection deletes a Pod whose owner is gone);
    no ReplicaSet controller runs here, so it makes none itself."""
    rs = pykube.ReplicaSet(k8s.api, {
        "metadata": {"name": "owner-rs", "namespace": ns},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "app", "image": "a:1"}]}}},
    })  # fmt: skip
    if not rs.exists():
        rs.create()
    rs.reload()
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "owner-rs",
            "uid": rs.obj["metadata"]["uid"], "controller": True}  # fmt: skip


def stuck_pod(
    given: Given,
    name: str,
    *,
    owned: bool | str = True,
    waiting: str = "ImagePullBackOff",
    message: str = AUTH_BACK_OFF,
    ns: str = "",
    finalizer: bool = False,
) -> Obj:
    """A Pod (unscheduled: no kubelet here), its status written as the kubelet would. `owned`:
    by a ReplicaSet (True), by a ConfigMap as controller ("configmap") or by nobody."""
    ns = ns or given.ns
    wait_for(lambda: given.k8s.sa(ns) is not None, what="the default ServiceAccount")
    meta: Obj = {"name": name, "namespace": ns}
    if owned == "configmap":
        meta["ownerReferences"] = [given.owner(controller=True)]
    elif owned:
        meta["ownerReferences"] = [replica_set(given.k8s, ns)]
    if finalizer:
        meta["finalizers"] = ["example.com/hold"]
    restricted = {  # the operator's namespace enforces Pod Security "restricted"
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {"name": "app", "image": "acme.example/a:1", "securityContext": restricted}
    pod = pykube.Pod(given.k8s.api, {"metadata": meta, "spec": {"containers": [container]}})
    pod.create()
    if waiting:
        status = {"waiting": {"reason": waiting, "message": message}}
        patch = {"status": {"containerStatuses": [{
            "name": "app", "image": "acme.example/a:1", "imageID": "", "ready": False,
            "restartCount": 0, "state": status,
        }]}}  # fmt: skip
        given.k8s.cp.kubectl(
            "patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
    pod.reload()
    return dict(pod.obj)


def pod_exists(given: Given, name: str, ns: str = "") -> bool:
    return (
        pykube.Pod.objects(given.k8s.api, namespace=ns or given.ns).get_or_none(name=name)
        is not None
    )


def release(given: Given, name: str, ns: str = "") -> None:
    """Remove a test finalizer, and the Pod with it."""
    pod = pykube.Pod.objects(given.k8s.api, namespace=ns or given.ns).get_or_none(name=name)
    if pod is not None:
        pod.patch({"metadata": {"finalizers": None}})
        if pod.exists():
            pod.delete()


def test_operator_deletes_a_pod_only_if_a_known_controller_owns_it_and_it_waits_on_auth(
    given: Given, as_operator: AsOperator
) -> None:
    stuck_pod(given, "naked", owned=False)
    assert_denied(as_operator.delete("pods", given.ns, "naked"), "only a Pod a controller owns")
    stuck_pod(given, "by-configmap", owned="configmap")  # controller: true promises no new Pod
    assert_denied(
        as_operator.delete("pods", given.ns, "by-configmap"), "only a Pod a controller owns"
    )
    stuck_pod(given, "running", waiting="")
    assert_denied(
        as_operator.delete("pods", given.ns, "running"),
        "only a Pod with a container waiting in ImagePullBackOff",
    )
    stuck_pod(given, "crashing", waiting="CrashLoopBackOff")
    assert_denied(
        as_operator.delete("pods", given.ns, "crashing"),
        "only a Pod with a container waiting in ImagePullBackOff",
    )
    stuck_pod(given, "not-found", message='Back-off pulling image "a": ErrImagePull: not found')
    assert_denied(
        as_operator.delete("pods", given.ns, "not-found"), "for an authentication failure"
    )
    names_ = ("naked", "by-configmap", "running", "crashing", "not-found")
    assert all(pod_exists(given, n) for n in names_)
    stuck_pod(given, "stuck")
    answer = as_operator.delete("pods", given.ns, "stuck")
    assert answer.code < 300, answer
    wait_for(lambda: not pod_exists(given, "stuck"), what="the stuck Pod deleted")


@pytest.mark.parametrize("where", ["kube-system", OPERATOR_NS])
def test_operator_deletes_no_pod_in_kube_namespaces_or_its_own(
    given: Given, as_operator: AsOperator, where: str
) -> None:
    name = f"victim-{given.ns}"[:60]
    stuck_pod(given, name, ns=where)
    try:
        assert_denied(
            as_operator.delete("pods", where, name), "in a kube-* namespace or in its own"
        )
        assert pod_exists(given, name, where)
    finally:
        release(given, name, where)
        pykube.ReplicaSet.objects(given.k8s.api, namespace=where).get(name="owner-rs").delete()


@pytest.fixture
def pod_writes_granted(control_plane: ControlPlane) -> Iterator[None]:
    """RBAC that lets the operator's identity create, update and patch Pods and evict them
    (deploy/ grants none of it): what is denied then is the admission policy's doing."""
    name = f"test-grant-pod-writes-{uuid.uuid4().hex[:6]}"
    rbac = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name},
         "rules": [{"apiGroups": [""], "resources": ["pods", "pods/eviction", "pods/status"],
                    "verbs": ["create", "update", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": "tenant-registry-operator",
                       "namespace": OPERATOR_NS}]},
    ]  # fmt: skip
    control_plane.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
    )
    try:
        yield
    finally:
        control_plane.kubectl("delete", "clusterrolebinding,clusterrole", name)


def test_operator_never_creates_or_changes_a_pod_whatever_rbac_grants(
    given: Given, as_operator: AsOperator, pod_writes_granted: None
) -> None:
    pod = stuck_pod(given, "victim")
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "intruder", "namespace": given.ns},
        "spec": {"containers": [{"name": "app", "image": "acme.example/a:1"}]},
    }
    because = "never creates, updates or patches a Pod"

    def denied(answer: Any) -> bool:
        return answer.denied and because in answer.message

    # RBAC allows these now (granted above): the policy denies them (422), not RBAC (403).
    # RBAC caches refresh at once for new bindings, but wait in case of a slow informer.
    wait_for(lambda: denied(as_operator.create("pods", given.ns, body)), what="create denied")
    assert_denied(
        as_operator.merge_patch("pods", given.ns, "victim", {"metadata": {"labels": {"x": "y"}}}),
        because,
    )
    assert_denied(
        as_operator.merge_patch("pods", given.ns, "victim/status", {"status": {"phase": "Failed"}}),
        because,
    )
    assert_denied(as_operator.create("pods/victim/eviction", given.ns, {
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "victim", "namespace": given.ns},
    }), because)  # fmt: skip
    assert not pod_exists(given, "intruder")
    after = pykube.Pod.objects(given.k8s.api, namespace=given.ns).get(name="victim").obj
    assert after["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]
