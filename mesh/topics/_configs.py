"""The topic-level configs of Apache Kafka 4.x, each with the rule the broker applies to its value.

Checking keys and values offline means a typo (``retention.mss``) or a bad value fails in
``mesh topics validate`` or CI, not halfway through an ``apply``. The list is what a Kafka 4.3
broker reports for a topic (DescribeConfigs); the bounds are the broker's own (probed with
CreateTopics ``validate_only``). ``normalize`` exists because the broker rewrites some values
(``0.50`` comes back as ``0.5``), and comparing raw strings would report false drift.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

_INT_MAX = 2**31 - 1
_LONG_MAX = 2**63 - 1
_THROTTLED = re.compile(r"\*|(\d+:\d+)(\s*,\s*\d+:\d+)*|")


@dataclass(frozen=True)
class ConfigKey:
    """One topic config: how to check a value and how to compare two values."""

    check: Callable[[str], str | None]
    """Returns why ``value`` is invalid, or None."""
    normalize: Callable[[str], str] = str.strip


def _integer(low: int, high: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            number = int(value.strip())
        except ValueError:
            return f"must be an integer (got {value!r})"
        if low <= number <= high:
            return None
        if number < low and high in (_INT_MAX, _LONG_MAX):
            return f"must be at least {low} (got {number})"
        return f"must be between {low} and {high} (got {number})"

    return check


def _gzip_level(value: str) -> str | None:
    problem = _integer(-1, 9)(value)
    if problem is None and int(value) == 0:
        return "must be between 1 and 9, or -1 for the codec's default (got 0)"
    return problem


def _ratio(value: str) -> str | None:
    try:
        number = float(value)
    except ValueError:
        return f"must be a number (got {value!r})"
    return None if 0.0 <= number <= 1.0 else f"must be between 0 and 1 (got {value})"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value.strip() in choices:
            return None
        return f"must be one of {', '.join(choices)} (got {value!r})"

    return check


def _boolean(value: str) -> str | None:
    ok = value.strip().lower() in ("true", "false")
    return None if ok else f"must be true or false (got {value!r})"


def _cleanup_policy(value: str) -> str | None:
    parts = [part.strip() for part in value.split(",")]
    if parts and all(part in ("compact", "delete") for part in parts):
        return None
    return f"must be delete, compact or compact,delete (got {value!r})"


def _throttled_replicas(value: str) -> str | None:
    if _THROTTLED.fullmatch(value.strip()):
        return None
    return f"must be '*' or a list of partition:broker pairs such as 0:1,1:2 (got {value!r})"


def _normal_integer(value: str) -> str:
    try:
        return str(int(value.strip()))
    except ValueError:
        return value.strip()


def _normal_float(value: str) -> str:
    try:
        return repr(float(value))
    except ValueError:
        return value.strip()


def _normal_policy(value: str) -> str:
    return ",".join(sorted({part.strip() for part in value.split(",")}))


def _normal_list(value: str) -> str:
    return ",".join(part.strip() for part in value.split(","))


def _long(low: int) -> ConfigKey:
    return ConfigKey(_integer(low, _LONG_MAX), _normal_integer)


def _int(low: int, high: int = _INT_MAX) -> ConfigKey:
    return ConfigKey(_integer(low, high), _normal_integer)


_BOOL = ConfigKey(_boolean, lambda value: value.strip().lower())
_THROTTLED_KEY = ConfigKey(_throttled_replicas, _normal_list)

TOPIC_CONFIGS: dict[str, ConfigKey] = {
    "cleanup.policy": ConfigKey(_cleanup_policy, _normal_policy),
    "compression.gzip.level": ConfigKey(_gzip_level, _normal_integer),
    "compression.lz4.level": _int(1, 17),
    "compression.type": ConfigKey(
        _one_of("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
    ),
    "compression.zstd.level": _int(-131072, 22),
    "delete.retention.ms": _long(0),
    "file.delete.delay.ms": _long(0),
    "flush.messages": _long(1),
    "flush.ms": _long(0),
    "follower.replication.throttled.replicas": _THROTTLED_KEY,
    "index.interval.bytes": _int(0),
    "leader.replication.throttled.replicas": _THROTTLED_KEY,
    "local.retention.bytes": _long(-2),
    "local.retention.ms": _long(-2),
    "max.compaction.lag.ms": _long(1),
    "max.message.bytes": _int(0),
    "message.timestamp.after.max.ms": _long(0),
    "message.timestamp.before.max.ms": _long(0),
    "message.timestamp.type": ConfigKey(_one_of("CreateTime", "LogAppendTime")),
    "min.cleanable.dirty.ratio": ConfigKey(_ratio, _normal_float),
    "min.compaction.lag.ms": _long(0),
    "min.insync.replicas": _int(1),
    "preallocate": _BOOL,
    "remote.log.copy.disable": _BOOL,
    "remote.log.delete.on.disable": _BOOL,
    "remote.storage.enable": _BOOL,
    # The broker accepts any long; every negative value means "no limit", so only -1 is allowed.
    "retention.bytes": _long(-1),
    "retention.ms": _long(-1),
    "segment.bytes": _int(1_048_576),  # Kafka 4.0 raised the minimum to 1 MiB (KIP-1030)
    "segment.index.bytes": _int(4),
    "segment.jitter.ms": _long(0),
    "segment.ms": _long(1),
    "unclean.leader.election.enable": _BOOL,
}
"""Every topic-level config a Kafka 4.x broker accepts, by name."""

REMOVED_IN_KAFKA_4: dict[str, str] = {
    "message.format.version": "removed in Kafka 4.0 (only record format v2 remains)",
    "message.downconversion.enable": "removed in Kafka 4.0 (no more down-conversion)",
    "message.timestamp.difference.max.ms": (
        "removed in Kafka 4.0; use message.timestamp.before.max.ms and "
        "message.timestamp.after.max.ms"
    ),
}

ALWAYS_REPORTED = frozenset(
    {"cleanup.policy", "max.message.bytes", "retention.ms", "segment.bytes"}
)
"""Keys a Kafka broker reports for every topic, set or not. A broker whose DescribeConfigs lacks
them (the embedded Tansu) reports only the configs given to the topic, not the defaults."""


def config_problem(key: str, value: str) -> str | None:
    """Why ``key: value`` is not a valid topic config, or None if it is."""
    if key in REMOVED_IN_KAFKA_4:
        return f"config {key!r} was {REMOVED_IN_KAFKA_4[key]}"
    rule = TOPIC_CONFIGS.get(key)
    if rule is None:
        hint = difflib.get_close_matches(key, TOPIC_CONFIGS, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown topic config {key!r}{suggestion}"
    problem = rule.check(value)
    return None if problem is None else f"config {key} {problem}"


def same_value(key: str, left: str | None, right: str | None) -> bool:
    """Whether two values of ``key`` mean the same to the broker (``0.50`` == ``0.5``)."""
    if left is None or right is None:
        return left is right
    rule = TOPIC_CONFIGS.get(key)
    normalize = rule.normalize if rule is not None else str.strip
    return normalize(left) == normalize(right)
