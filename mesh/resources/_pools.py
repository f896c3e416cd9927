"""Pools of nodes declared in configuration: ``resources/pools.yaml`` (or ``MESH_RESOURCE_POOLS``).

The file is the operator's declaration; the allocator publishes each pool as a ``PoolDeclared``
on ``resources`` so that the ledger, and every tool that replays it, sees the same pools. Format::

    policy: fair              # default policy: fair | priority | demand | predictive
    placement: best_fit       # default placement: best_fit | cheapest
    horizon_seconds: 300      # predictive: reserve for work expected this soon
    discovery: {pool: agents, enabled: true}   # hosts that agents report become nodes
    pools:
      - id: general
        policy: fair          # optional, per pool; also `placement`, `preempt`, `labels`
        nodes:
          - id: n1            # `count: 3` makes n1-1, n1-2, n1-3
            cpu: 8            # cores
            memory_mb: 16384
            network_mbps: 1000
            storage_mb: 102400
            gpu: 0
            cost_per_hour: 0.40          # the whole node; an allocation pays its dominant share
            unit_costs: {gpu: 2.5}       # or per unit-hour of each resource
            speed: 1.0                   # relative; divides estimated durations
    quotas:                   # applied when the ledger has no quota for the tenant yet
      - tenant: default
        limits: {cpu: 16, memory_mb: 32768}   # a missing or zero resource is not limited
        max_allocations: 100
        max_cost_per_hour: 10
        policy: priority      # optional: the tenant's own policy
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.errors import ConfigError
from mesh.events import (
    PlacementName,
    PolicyName,
    PoolDeclared,
    PoolNode,
    Producer,
    QuotaSet,
    Resources,
    UnitCosts,
    meta,
)
from mesh.resources._policies import AllocatorConfig, Policy
from mesh.resources._vectors import RESOURCES, stack, to_resources

DEFAULT_POOLS_FILE = Path("resources") / "pools.yaml"

_Ident = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Amounts(_Strict):
    cpu: float = Field(default=0.0, ge=0)
    memory_mb: int = Field(default=0, ge=0)
    network_mbps: float = Field(default=0.0, ge=0)
    storage_mb: int = Field(default=0, ge=0)
    gpu: int = Field(default=0, ge=0)

    def resources(self) -> Resources:
        return Resources(**self.model_dump(include=set(RESOURCES)))


class _Node(_Amounts):
    id: _Ident
    count: int = Field(default=1, ge=1, le=2_000)
    cost_per_hour: float = Field(default=0.0, ge=0)
    unit_costs: UnitCosts = Field(default_factory=UnitCosts)
    speed: float = Field(default=1.0, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)

    def nodes(self) -> list[PoolNode]:
        ids = [self.id] if self.count == 1 else [f"{self.id}-{i}" for i in range(1, self.count + 1)]
        return [
            PoolNode(
                node_id=node_id,
                capacity=self.resources(),
                cost_per_hour=self.cost_per_hour,
                unit_costs=self.unit_costs,
                speed=self.speed,
                labels=self.labels,
            )
            for node_id in ids
        ]


class _Pool(_Strict):
    id: _Ident
    policy: PolicyName | None = None
    placement: PlacementName | None = None
    preempt: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    nodes: list[_Node] = Field(min_length=1)


class _Quota(_Strict):
    tenant: str = Field(min_length=1, max_length=100)
    limits: _Amounts = Field(default_factory=_Amounts)
    max_allocations: int | None = Field(default=None, ge=0)
    max_cost_per_hour: float | None = Field(default=None, ge=0)
    policy: PolicyName | None = None
    preempt: bool | None = None


class _Discovery(_Strict):
    pool: _Ident = "agents"
    enabled: bool = True


class _File(_Strict):
    policy: PolicyName = "fair"
    placement: PlacementName = "best_fit"
    preempt: bool = False
    horizon_seconds: float = Field(default=300.0, gt=0)
    liveness_intervals: float = Field(default=3.0, gt=0)
    discovery: _Discovery = Field(default_factory=_Discovery)
    pools: list[_Pool] = Field(default_factory=list)
    quotas: list[_Quota] = Field(default_factory=list)


class PoolsConfig:
    """What the pools file declares: pools, default quotas and the allocator's defaults."""

    def __init__(self, data: _File | None = None, *, source: Path | None = None) -> None:
        self._data = data or _File()
        self.source = source
        self.config = AllocatorConfig(
            default=Policy(self._data.policy, self._data.placement, self._data.preempt),
            horizon_seconds=self._data.horizon_seconds,
            discovery_pool=self._data.discovery.pool,
            discovery=self._data.discovery.enabled,
            liveness_intervals=self._data.liveness_intervals,
        )

    @property
    def pool_ids(self) -> list[str]:
        """Declared pool ids, in file order."""
        return [pool.id for pool in self._data.pools]

    def pools(self, producer: Producer, *, now: datetime | None = None) -> list[PoolDeclared]:
        """One ``PoolDeclared`` per declared pool (capacity and cost are the nodes' sums)."""
        declared = []
        for pool in self._data.pools:
            nodes = [node for spec in pool.nodes for node in spec.nodes()]
            declared.append(
                PoolDeclared(
                    **meta(producer, correlation_id=f"pools-{pool.id}", occurred_at=now),
                    pool_id=pool.id,
                    capacity=to_resources(stack(n.capacity for n in nodes).sum(axis=0)),
                    cost_per_hour=sum(n.cost_per_hour for n in nodes),
                    labels=pool.labels,
                    nodes=nodes,
                    policy=pool.policy,
                    placement=pool.placement,
                    preempt=pool.preempt,
                )
            )
        return declared

    def quotas(self, producer: Producer, *, now: datetime | None = None) -> list[QuotaSet]:
        """One ``QuotaSet`` per quota in the file."""
        return [
            QuotaSet(
                **meta(producer, correlation_id=f"quota-{quota.tenant}", occurred_at=now),
                tenant=quota.tenant,
                limits=quota.limits.resources(),
                max_allocations=quota.max_allocations,
                max_cost_per_hour=quota.max_cost_per_hour,
                policy=quota.policy,
                preempt=quota.preempt,
            )
            for quota in self._data.quotas
        ]


def pools_path(configured: Path | None, *, cwd: Path | None = None) -> Path | None:
    """The pools file to read: the configured one, else ``./resources/pools.yaml`` if present."""
    if configured is not None:
        return configured
    default = (cwd or Path.cwd()) / DEFAULT_POOLS_FILE
    return default if default.is_file() else None


def load_pools(path: Path | None) -> PoolsConfig:
    """Read a pools file (None = no declared pools); every mistake is one ``ConfigError`` line."""
    if path is None:
        return PoolsConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the pools file {path}: {exc.strerror or exc}") from exc
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML") from exc
    return parse_pools(raw or {}, source=path)


def parse_pools(data: Any, *, source: Path | None = None) -> PoolsConfig:
    """A pools configuration from already-parsed data (the YAML file's shape)."""
    path = source or Path("<pools>")
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        at = ".".join(str(part) for part in first["loc"]) or "(file)"
        raise ConfigError(f"{path}: {at}: {first['msg']}") from exc
    ids = [pool.id for pool in parsed.pools]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{path}: pool {duplicates[0]!r} is declared more than once")
    for pool in parsed.pools:
        names = [node.node_id for spec in pool.nodes for node in spec.nodes()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{path}: pool {pool.id!r} has node {twice[0]!r} more than once")
    if parsed.discovery.enabled and parsed.discovery.pool in ids:
        raise ConfigError(
            f"{path}: pool {parsed.discovery.pool!r} is also the discovery pool; rename one"
        )
    return PoolsConfig(parsed, source=source)
