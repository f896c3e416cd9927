"""ACLs and client quotas as code: ``access/*.yaml`` declares, per component, the principal
it runs as, what it may do and its quotas; ``mesh access plan|apply|check`` reconcile the
cluster with it, within the topic prefix and the declared principals only.

    _model   declarations, bindings and the plan     (pure)
    _load    access/*.yaml → ``AccessDeclarations``   (files)
    _admin   read, add and remove bindings           (Kafka)
"""

from mesh.access._admin import (
    apply_access,
    plan_access,
    read_acls,
    read_prefix_acls,
    read_quotas,
)
from mesh.access._load import DEFAULT_ACCESS_DIR, load_access
from mesh.access._model import (
    AccessDeclarations,
    AccessPlan,
    Acl,
    AclChange,
    AclChangeKind,
    ComponentAccess,
    Operation,
    Pattern,
    QuotaChange,
    Resource,
    diff_acls,
    diff_quotas,
    export_components,
    parse_access,
)

__all__ = [
    "DEFAULT_ACCESS_DIR",
    "AccessDeclarations",
    "AccessPlan",
    "Acl",
    "AclChange",
    "AclChangeKind",
    "ComponentAccess",
    "Operation",
    "Pattern",
    "QuotaChange",
    "Resource",
    "apply_access",
    "diff_acls",
    "diff_quotas",
    "export_components",
    "load_access",
    "parse_access",
    "plan_access",
    "read_acls",
    "read_prefix_acls",
    "read_quotas",
]
