"""The Resource Allocator: pools, quotas and allocations as a ledger on ``resources``.

Layers, each importing only those above it::

    _vectors    resources as numpy vectors                                   (pure)
    _policies   who goes first: fair (DRF), priority, demand, predictive     (pure)
    _placement  the node table and vectorised scoring; the Python reference  (pure)
    _pools      the pools file (resources/pools.yaml)                        (files)
    _discovery  hosts that agents report, as nodes                            (pure)
    _quotas     per-tenant limits and their denial reasons                    (pure)
    _ledger     the state folded from ``resources``                           (pure)
    _cost       cost per allocation and per workflow                          (pure)
    _round      the working state of one round; pool policies; reservations   (pure)
    _decisions  the events a round answers with                               (pure)
    _allocator  the decision function: ledger → decisions                     (pure)
    _requests   ready tasks → requests, endings → releases                    (pure)
    _usage      the usage report                                              (pure)
    _api        ``Allocator``: the seed API in-process                        (pure)

The component (``run_resources(settings, stop)``, reading the topics into an ``Allocator``,
publishing records, tombstones and dead letters) is :mod:`mesh.resources.runtime`.

In-process::

    allocator = Allocator(load_pools(path).pools(producer))
    decision = allocator.allocate_resources(ResourceRequest(Resources(cpu=2), tenant="acme"))
"""

from mesh.resources._allocator import decide
from mesh.resources._api import COMPONENT, Allocator, ResourceRequest, default_producer
from mesh.resources._cost import WorkflowCost, accrued, workflow_costs
from mesh.resources._discovery import Discovery
from mesh.resources._ledger import Decision, Held, Ledger, Waiting, Wanted
from mesh.resources._placement import (
    CLOSED_LABEL,
    Ask,
    Choice,
    NodeTable,
    NumpyPlacer,
    Placer,
    PythonPlacer,
    pool_nodes,
)
from mesh.resources._policies import AllocatorConfig, Policy
from mesh.resources._pools import (
    DEFAULT_POOLS_FILE,
    PoolsConfig,
    load_pools,
    parse_pools,
    pools_path,
)
from mesh.resources._quotas import Quota, describe_limits
from mesh.resources._requests import (
    ReleaseTarget,
    allocation_id_for,
    forecast_for_plan,
    release_target,
    request_for_ready,
)
from mesh.resources._round import pool_policy
from mesh.resources._usage import PoolUsage, ResourceUsage, TenantUsage, quota_summary
from mesh.resources._vectors import RESOURCES, to_resources, to_vector

__all__ = [
    "CLOSED_LABEL",
    "COMPONENT",
    "DEFAULT_POOLS_FILE",
    "RESOURCES",
    "Allocator",
    "AllocatorConfig",
    "Ask",
    "Choice",
    "Decision",
    "Discovery",
    "Held",
    "Ledger",
    "NodeTable",
    "NumpyPlacer",
    "Placer",
    "Policy",
    "PoolUsage",
    "PoolsConfig",
    "PythonPlacer",
    "Quota",
    "ReleaseTarget",
    "ResourceRequest",
    "ResourceUsage",
    "TenantUsage",
    "Waiting",
    "Wanted",
    "WorkflowCost",
    "accrued",
    "allocation_id_for",
    "decide",
    "default_producer",
    "describe_limits",
    "forecast_for_plan",
    "load_pools",
    "parse_pools",
    "pool_nodes",
    "pool_policy",
    "pools_path",
    "quota_summary",
    "release_target",
    "request_for_ready",
    "to_resources",
    "to_vector",
    "workflow_costs",
]
