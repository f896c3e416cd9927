"""The aiokafka side of topics as code: read the cluster, then create, alter, grow and delete.

What the broker can do is read from its ApiVersions answer, not guessed from errors: the
embedded Tansu broker offers no AlterConfigs and no CreatePartitions, and aiokafka would only
fail with "cannot be used if the API version is unknown" once asked.

Configs are changed with the non-incremental AlterConfigs API on purpose: it replaces every
override of the topic with the set sent, so the declared set becomes the whole truth and an
override set by hand disappears, which is what topics as code means.

Every change waits until the metadata shows it (a created topic with a leader for each partition,
the new partition count, a deleted topic gone), so a ``check`` right after ``apply`` is stable.

A change the broker refuses is reported on its own (``failed``, with one line of reason) and
the others go on: one bad topic never hides what happened to the rest. Before anything is
changed, :meth:`TopicAdmin.preflight` asks the brokers to check the planned changes without
making them (``validate_only``), so ``plan`` and ``apply --dry-run`` show what ``apply`` would
be refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    AlterConfigsRequest,
    ApiVersionRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
)

from mesh.errors import BrokerError, BrokerUnavailable
from mesh.kafka.connection import kafka_errors, not_allowed
from mesh.settings import Settings
from mesh.topics._cluster import (
    DEFAULT_CONFIG,
    DYNAMIC_TOPIC_CONFIG,
    Api,
    BrokerCapabilities,
    ClusterState,
    ObservedConfig,
    ObservedTopic,
)
from mesh.topics._plan import Change, ChangeKind, ChangeStatus, Note, TopicPlan
from mesh.topics._words import plural

_OK = 0
_UNKNOWN_TOPIC = 3
_TOPIC_AUTHORIZATION_FAILED = 29
_CLUSTER_AUTHORIZATION_FAILED = 31
_TOPIC_EXISTS = 36
_INVALID_REPLICATION_FACTOR = 38
_NOT_AUTHORIZED = frozenset({_TOPIC_AUTHORIZATION_FAILED, _CLUSTER_AUTHORIZATION_FAILED})
_REASON_CHARS = 240
Done = Callable[[Change], None]
Failed = Callable[[Change, str], None]
_REQUESTS: dict[Api, Any] = {
    Api.CREATE_TOPICS: CreateTopicsRequest,
    Api.DELETE_TOPICS: DeleteTopicsRequest,
    Api.DESCRIBE_CONFIGS: DescribeConfigsRequest,
    Api.ALTER_CONFIGS: AlterConfigsRequest,
    Api.CREATE_PARTITIONS: CreatePartitionsRequest,
}


@dataclass(frozen=True)
class _Metadata:
    partitions: int
    replication_factor: int
    internal: bool
    led: bool
    """Every partition has a leader (a fresh topic is usable only then)."""


class TopicAdmin:
    """Topic operations over one started ``AIOKafkaAdminClient``."""

    def __init__(
        self, admin: AIOKafkaAdminClient, settings: Settings, *, visible_within: float = 30.0
    ) -> None:
        self._admin = admin
        self._settings = settings
        self._visible_within = visible_within

    async def capabilities(self) -> BrokerCapabilities:
        """The admin APIs this broker offers in a version aiokafka can speak."""
        with kafka_errors(self._settings, "ask the broker for its API versions"):
            # aiokafka keeps the versions it negotiated private; asking again is one round trip.
            response = await self._admin._send_request(ApiVersionRequest())
        offered = {int(key): (int(low), int(high)) for key, low, high in response.api_versions}
        return BrokerCapabilities.of(
            key for key, (low, high) in offered.items() if _speakable(key, low, high)
        )

    async def read_cluster(self, prefix: str) -> ClusterState:
        """Partitions and replication factor of every topic; configs of those under ``prefix``;
        how many brokers serve and their default ``min.insync.replicas``."""
        capabilities = await self.capabilities()
        metadata = await self._metadata()
        owned = [n for n, m in metadata.items() if n.startswith(prefix) and not m.internal]
        configs: dict[str, dict[str, ObservedConfig]] = {}
        if owned and capabilities.offers(Api.DESCRIBE_CONFIGS):
            configs = await self._describe_configs(owned)
        with kafka_errors(self._settings, "read the cluster's metadata"):
            brokers = [int(b["node_id"]) for b in (await self._admin.describe_cluster())["brokers"]]
        default_min_isr = None
        if brokers and capabilities.validates:
            # Tansu drops the connection when asked for broker configs: only a broker with
            # the whole topic admin API is asked.
            default_min_isr = await self._broker_min_insync(min(brokers))
        topics = {
            name: ObservedTopic(
                name, m.partitions, m.replication_factor, configs.get(name, {}), m.internal
            )
            for name, m in metadata.items()
        }
        return ClusterState(topics, capabilities, len(brokers) or None, default_min_isr)

    async def preflight(self, plan: TopicPlan, capabilities: BrokerCapabilities) -> TopicPlan:
        """The plan with each planned create, config change and partition increase that the
        brokers refuse (asked with ``validate_only``, nothing changed) marked refused, with
        the brokers' reason; unchanged on a broker that cannot be asked (see
        ``BrokerCapabilities.validates``)."""
        planned = plan.planned
        if not planned or not capabilities.validates:
            return plan
        refused: dict[tuple[ChangeKind, str], str] = {}
        unchecked: list[str] = []
        creates = [c for c in planned if c.kind is ChangeKind.CREATE]
        alters = [c for c in planned if c.kind is ChangeKind.ALTER_CONFIG]
        grows = [c for c in planned if c.kind is ChangeKind.ADD_PARTITIONS]
        answers: list[tuple[ChangeKind, Iterable[tuple[str, int, str | None]]]] = []
        with kafka_errors(self._settings, "create topics"):
            if creates:
                response = await self._admin.create_topics(
                    [_new_topic(c) for c in creates], validate_only=True
                )
                answers.append((ChangeKind.CREATE, _triples(response.topic_errors)))
            if alters:
                request = AlterConfigsRequest(
                    [
                        (int(ConfigResourceType.TOPIC), c.topic, list(c.config.items()))
                        for c in alters
                    ],
                    validate_only=True,
                )
                response = await self._admin._send_request(request)
                answers.append(
                    (
                        ChangeKind.ALTER_CONFIG,
                        (
                            (name, code, message)
                            for code, message, _type, name in response.resources
                        ),
                    )
                )
            if grows:
                counts = {c.topic: NewPartitions(c.new) for c in grows}
                response = await self._admin.create_partitions(counts, validate_only=True)
                answers.append((ChangeKind.ADD_PARTITIONS, _triples(response.topic_errors)))
        by_key = {(c.kind, c.topic): c for c in planned}
        for kind, triples in answers:
            for topic, code, message in triples:
                change = by_key.get((kind, topic))
                if change is None or code == _OK:
                    continue
                if code in _NOT_AUTHORIZED:
                    unchecked.append(topic)
                else:
                    refused[(kind, topic)] = self.reason(change, code, message)
        changes = tuple(
            c.with_status(ChangeStatus.REFUSED, refused[(c.kind, c.topic)])
            if (c.kind, c.topic) in refused
            else c
            for c in plan.changes
        )
        notes = plan.notes
        if unchecked:
            notes += (
                Note(
                    "",
                    f"the brokers did not check {plural(len(unchecked), 'planned change')}: "
                    f"{self._not_allowed(ChangeKind.CREATE, None)}",
                ),
            )
        return dataclasses.replace(plan, changes=changes, notes=notes)

    async def create(self, changes: Sequence[Change], done: Done, failed: Failed) -> None:
        """Create topics with their configs; each is done once it has a leader everywhere."""
        with kafka_errors(self._settings, "create topics"):
            response = await self._admin.create_topics([_new_topic(c) for c in changes])
        # Another apply (a second replica, the compose init job) may have created it meanwhile.
        refused = self._refused(changes, _triples(response.topic_errors), {_TOPIC_EXISTS}, failed)
        await self._wait(
            [c for c in changes if c.topic not in refused],
            lambda c, meta: c.topic in meta and meta[c.topic].led and meta[c.topic].partitions > 0,
            done,
            failed,
            "appear",
        )

    async def alter_configs(self, changes: Sequence[Change], done: Done, failed: Failed) -> None:
        """Replace each topic's overrides with its declared set (non-incremental AlterConfigs)."""
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, c.topic, dict(c.config)) for c in changes
        ]
        with kafka_errors(self._settings, "alter topic configs"):
            responses = await self._admin.alter_configs(resources)
        answers = [
            (name, code, message)
            for response in responses
            for code, message, _type, name in response.resources
        ]
        refused = self._refused(changes, answers, set(), failed)
        for change in changes:
            if change.topic not in refused:
                done(change)

    async def add_partitions(self, changes: Sequence[Change], done: Done, failed: Failed) -> None:
        """Grow partition counts; each is done once the metadata shows the new count."""
        counts = {c.topic: NewPartitions(c.new) for c in changes}
        with kafka_errors(self._settings, "add partitions"):
            response = await self._admin.create_partitions(counts)
        refused = self._refused(changes, _triples(response.topic_errors), set(), failed)
        await self._wait(
            [c for c in changes if c.topic not in refused],
            lambda c, meta: c.topic in meta and meta[c.topic].partitions == c.new,
            done,
            failed,
            "show the new partition count",
        )

    async def delete(self, changes: Sequence[Change], done: Done, failed: Failed) -> None:
        """Delete topics; each is done once it is gone from the metadata."""
        with kafka_errors(self._settings, "delete topics"):
            response = await self._admin.delete_topics([c.topic for c in changes])
        refused = self._refused(
            changes,
            ((topic, code, None) for topic, code in response.topic_error_codes),
            {_UNKNOWN_TOPIC},  # already gone is what we wanted
            failed,
        )
        remaining = [c for c in changes if c.topic not in refused]
        await self._wait(remaining, lambda c, meta: c.topic not in meta, done, failed, "disappear")

    def reason(self, change: Change, code: int, message: str | None) -> str:
        """The brokers' answer to one change as one readable line (never their text repeated
        for every topic, never more than a sentence of it)."""
        if code in _NOT_AUTHORIZED:
            return self._not_allowed(change.kind, change.topic)
        if code == _INVALID_REPLICATION_FACTOR and change.replication_factor is not None:
            return (
                f"the brokers cannot place {plural(change.replication_factor, 'replica')} "
                f"of each partition ({_sentence(message, code)})"
            )
        name = getattr(for_code(code), "message", None) or for_code(code).__name__
        return f"the brokers refuse it ({name}: {_sentence(message, code)})"

    def _not_allowed(self, kind: ChangeKind, topic: str | None) -> str:
        operation = {
            ChangeKind.CREATE: "CREATE",
            ChangeKind.ALTER_CONFIG: "ALTER_CONFIGS",
            ChangeKind.ADD_PARTITIONS: "ALTER",
            ChangeKind.DELETE: "DELETE",
        }.get(kind, "ALTER")
        return not_allowed(self._settings, operation, "topic", topic)

    def _refused(
        self,
        changes: Sequence[Change],
        answers: Iterable[tuple[str, int, str | None]],
        tolerated: set[int],
        failed: Failed,
    ) -> set[str]:
        """Report each change the brokers refused as failed; the topics refused."""
        by_topic = {c.topic: c for c in changes}
        refused: set[str] = set()
        for topic, code, message in answers:
            change = by_topic.get(topic)
            if change is None or code in (_OK, *tolerated):
                continue
            refused.add(topic)
            failed(change, self.reason(change, code, message))
        return refused

    async def _broker_min_insync(self, broker: int) -> int | None:
        """The brokers' ``min.insync.replicas`` (None if the broker does not say, or may not)."""
        resource = ConfigResource(
            ConfigResourceType.BROKER, str(broker), {"min.insync.replicas": ""}
        )
        try:
            with kafka_errors(self._settings, "describe broker configs"):
                responses = await self._admin.describe_configs([resource])
        except BrokerUnavailable:
            raise
        except BrokerError:  # not authorized to read broker configs: the check is skipped
            return None
        for response in responses:
            for found in response.to_object()["resources"]:
                for entry in found["config_entries"] if found["error_code"] == _OK else ():
                    value = str(entry["config_value"] or "").strip()
                    if entry["config_names"] == "min.insync.replicas" and value.isdigit():
                        return int(value)
        return None

    async def _metadata(self) -> dict[str, _Metadata]:
        # All topics in one request: asking for named topics may auto-create them (Tansu does).
        with kafka_errors(self._settings, "read topic metadata"):
            topics = await self._admin.describe_topics()
        found: dict[str, _Metadata] = {}
        for topic in topics:
            partitions = topic["partitions"] or []
            found[str(topic["topic"])] = _Metadata(
                partitions=len(partitions),
                replication_factor=max((len(p["replicas"]) for p in partitions), default=0),
                internal=bool(topic["is_internal"]),
                led=all(p["leader"] >= 0 for p in partitions),
            )
        return found

    async def _describe_configs(self, names: Iterable[str]) -> dict[str, dict[str, ObservedConfig]]:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        with kafka_errors(self._settings, "describe topic configs"):
            responses = await self._admin.describe_configs(resources)
        found: dict[str, dict[str, ObservedConfig]] = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                code = resource["error_code"]
                if code == _UNKNOWN_TOPIC:  # deleted since the metadata was read
                    continue
                if code != _OK:
                    name = resource["resource_name"]
                    raise BrokerError(
                        f"could not describe the configs of {name}: "
                        f"{_sentence(resource['error_message'], code)}"
                    )
                found[resource["resource_name"]] = {
                    entry["config_names"]: ObservedConfig(entry["config_value"], _source(entry))
                    for entry in resource["config_entries"]
                }
        return found

    async def _wait(
        self,
        changes: Sequence[Change],
        reached: Callable[[Change, dict[str, _Metadata]], bool],
        done: Done,
        failed: Failed,
        what: str,
    ) -> None:
        """Poll the metadata until every change is visible, reporting each as it shows (and
        those that never do, after ``visible_within`` seconds, as failed)."""
        pending = list(changes)
        if not pending:
            return
        deadline = time.monotonic() + self._visible_within
        pause = 0.05
        while True:
            meta = await self._metadata()
            for change in [c for c in pending if reached(c, meta)]:
                pending.remove(change)
                done(change)
            if not pending:
                return
            if time.monotonic() > deadline:
                for change in pending:
                    failed(
                        change,
                        f"the brokers accepted it but the topic did not {what} in the metadata "
                        f"within {self._visible_within:g} s; 'mesh topics check' shows the state",
                    )
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)


def _speakable(key: int, low: int, high: int) -> bool:
    """Whether aiokafka implements a version of ``key`` inside the broker's range."""
    request = _REQUESTS.get(Api(key)) if key in Api._value2member_map_ else None
    versions = [cls.API_VERSION for cls in getattr(request, "_CLASSES", ())]
    return not versions or any(low <= version <= high for version in versions)


def _source(entry: dict[str, Any]) -> int:
    if "config_source" in entry:
        return int(entry["config_source"])
    return DEFAULT_CONFIG if entry.get("is_default") else DYNAMIC_TOPIC_CONFIG  # v0 answers


def _new_topic(change: Change) -> NewTopic:
    return NewTopic(
        change.topic, change.new, change.replication_factor, topic_configs=dict(change.config)
    )


def _triples(answers: Iterable[Any]) -> Iterable[tuple[str, int, str | None]]:
    """(topic, error code, error message) of a CreateTopics or CreatePartitions answer; the
    message is absent from old versions."""
    for answer in answers:
        topic, code, *rest = answer
        yield str(topic), int(code), rest[0] if rest else None


def _sentence(message: str | None, code: int) -> str:
    """The first line of the brokers' words (their error's description if they gave none),
    cut at a word boundary: a reason stays one readable line."""
    text = (message or "").strip().splitlines()[0] if (message or "").strip() else _text(code)
    if len(text) <= _REASON_CHARS:
        return text
    return text[:_REASON_CHARS].rsplit(" ", 1)[0] + " …"


def _text(code: int) -> str:
    error = for_code(code)
    return str(getattr(error, "description", "") or error.__name__)
