"""Label and annotation keys, API names and field names: constants only."""

GROUP = "registry.tenancy.dev"
VERSION = "v1alpha1"
PLURAL = "tenantregistries"
KIND = "TenantRegistry"
API_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_OPERATOR_NAMESPACE = "tenant-registry-system"
COMPONENT = "tenant-registry-operator"
# On the operator's Deployment in deploy/: how `tenant-registry uninstall` finds an operator
# that would restore what it removes.
LABEL_APP_NAME = "app.kubernetes.io/name"
OPERATOR_SELECTOR = f"{LABEL_APP_NAME}={COMPONENT}"
# Events about a cluster-scoped object may only live in "default" (API validation of
# involvedObject.namespace); `kubectl describe treg NAME` finds them there.
EVENTS_NAMESPACE = "default"

# On every copy (the generated Secret in a tenant namespace).
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = COMPONENT
LABEL_TENANT = f"{GROUP}/tenant"
ANNOTATION_CONTENT_HASH = f"{GROUP}/content-hash"
# On a copy under a previous secretName, once the entries moved to the new one: when it may be
# deleted (RFC 3339, UTC). Pods admitted with the old name meanwhile can still start; the time
# is on the copy, so a restarted operator neither forgets the copy nor deletes it early.
ANNOTATION_DELETE_AFTER = f"{GROUP}/delete-after"
# Server-side selector for the watch on copies: only ours reach the operator.
COPY_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE},{LABEL_TENANT}"

# On an existing Secret in a tenant namespace, put there by whoever owns it: consent that the
# named TenantRegistry (conflictPolicy Adopt) may take the Secret over. Without it, nothing is
# adopted; the admission policy enforces the same rule.
ANNOTATION_ADOPT = f"{GROUP}/adopt"

# On a ServiceAccount: the imagePullSecrets entries this operator added (comma-separated
# Secret names), written in the same JSON Patch as the entry itself.
ANNOTATION_SA_ENTRIES = f"{GROUP}/added-pull-secrets"
# On a ServiceAccount: entries (tenant/secret) another writer kept removing, so the operator
# stopped re-adding them. Survives restarts; delete the annotation to let it try again.
ANNOTATION_SA_CONTESTED = f"{GROUP}/contested-pull-secrets"

# Kopf's own bookkeeping on the TenantRegistry, renamed into our domain.
FINALIZER = f"{GROUP}/cleanup"
KOPF_PREFIX = GROUP

DOCKERCONFIGJSON_TYPE = "kubernetes.io/dockerconfigjson"
DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
BASIC_AUTH_TYPE = "kubernetes.io/basic-auth"

# A label value (the tenant's name is one, on every copy) has at most 63 characters.
LABEL_VALUE_MAX = 63

# A Secret's data may not exceed 1 MiB (etcd's and the apiserver's limit).
SECRET_MAX_BYTES = 1024 * 1024
# Status lives in etcd too: at most this many per-namespace failures are listed.
MAX_STATUS_FAILURES = 20
