"""Payloads of any size: a reference in the event, the bytes in chunks on ``payloads``.

An output or plan too large to ride inline is stored as ``PayloadChunk`` records keyed by a
fresh payload id (so all its chunks land in one partition, in order) and referenced from the
event by a ``PayloadRef``: id, size, sha256 digest, chunk count, and where its first chunk sits.
A value that *is* a reference is the JSON object ``{"$payload": {...PayloadRef...}}``; it can
stand wherever JSON does (an output, an input), so the Workflow Manager carries it as it is and
only the reader that needs the bytes fetches them. Joining checks count, size and digest: a
missing or corrupt payload is an error, never used.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError

from mesh.errors import PayloadCorrupt, PayloadMissing
from mesh.events._envelope import Event, Frozen
from mesh.events._types import Id

REF_KEY = "$payload"
"""The one key of a JSON object that stands for a payload by reference."""


class PayloadRef(Frozen):
    """Where a payload too large for its event is, and how to check it once read."""

    payload_id: Id = Field(description="Key of its chunks on the `payloads` topic.")
    size: int = Field(ge=0, description="Length of the payload in bytes.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Hex sha256 digest of the whole payload."
    )
    chunks: int = Field(ge=1, description="How many `payload.chunk` records hold it.")
    media_type: Literal["application/json"] = Field(
        default="application/json", description="What the bytes are (UTF-8 JSON text)."
    )
    partition: int | None = Field(
        default=None, ge=0, description="Partition of `payloads` holding its chunks, if known."
    )
    offset: int | None = Field(
        default=None, ge=0, description="Offset of its first chunk there, if known."
    )

    def as_value(self) -> dict[str, Any]:
        """The JSON object that stands for the payload in an output or input."""
        return {REF_KEY: self.model_dump(mode="json", exclude_none=True)}


class PayloadChunk(Event):
    """One piece of a payload; the pieces of `payload_id`, joined in `index` order, are it."""

    type: Literal["payload.chunk"] = "payload.chunk"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "payload id"

    payload_id: Id = Field(description="The payload this chunk belongs to.")
    index: int = Field(ge=0, description="Position of the piece (from 0).")
    count: int = Field(ge=1, description="How many pieces the payload has.")
    data: str = Field(description="The piece's bytes, base64-encoded.")

    @property
    def key(self) -> str:
        return self.payload_id


def payload_ref_in(value: object) -> PayloadRef | None:
    """The reference ``value`` stands for, if it is one (``{"$payload": {...}}``)."""
    if not isinstance(value, Mapping) or len(value) != 1 or REF_KEY not in value:
        return None
    try:
        return PayloadRef.model_validate(value[REF_KEY], strict=False)
    except ValidationError:
        return None


def payload_refs_in(value: object) -> list[PayloadRef]:
    """Every reference anywhere inside the JSON ``value``."""
    found: list[PayloadRef] = []
    if (ref := payload_ref_in(value)) is not None:
        found.append(ref)
    elif isinstance(value, Mapping):
        for item in value.values():
            found.extend(payload_refs_in(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(payload_refs_in(item))
    return found


def payload_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_payload(data: bytes, chunk_bytes: int) -> list[bytes]:
    """``data`` in pieces of at most ``chunk_bytes`` (one empty piece for no data)."""
    return [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]


def encode_piece(piece: bytes) -> str:
    return base64.b64encode(piece).decode("ascii")


def join_payload(ref: PayloadRef, chunks: Mapping[int, PayloadChunk]) -> bytes:
    """The payload from its chunks by index, checked against ``ref``.

    Raises ``PayloadMissing`` when a chunk is absent and ``PayloadCorrupt`` when they do not
    decode into exactly ``ref.size`` bytes with ``ref.sha256``.
    """
    absent = [i for i in range(ref.chunks) if i not in chunks]
    if absent:
        raise PayloadMissing(
            f"payload {ref.payload_id}: {len(absent)} of {ref.chunks} chunks not found "
            "(never written, or removed by the payload topic's retention)",
            payload_id=ref.payload_id,
        )
    pieces: list[bytes] = []
    for index in range(ref.chunks):
        chunk = chunks[index]
        if chunk.count != ref.chunks:
            raise PayloadCorrupt(
                f"payload {ref.payload_id}: chunk {index} says {chunk.count} chunks, "
                f"the reference {ref.chunks}",
                payload_id=ref.payload_id,
            )
        try:
            pieces.append(base64.b64decode(chunk.data, validate=True))
        except ValueError as exc:
            raise PayloadCorrupt(
                f"payload {ref.payload_id}: chunk {index} is not base64 ({exc})",
                payload_id=ref.payload_id,
            ) from exc
    data = b"".join(pieces)
    found = payload_digest(data)
    if len(data) != ref.size or found != ref.sha256:
        raise PayloadCorrupt(
            f"payload {ref.payload_id}: {len(data)} bytes with sha256 {found[:12]}…, "
            f"expected {ref.size} bytes with {ref.sha256[:12]}…",
            payload_id=ref.payload_id,
        )
    return data


def substitute_payloads(value: Any, found: Mapping[str, Any]) -> Any:
    """``value`` with every reference replaced by its payload from ``found`` (by payload id)."""
    if (ref := payload_ref_in(value)) is not None:
        return found[ref.payload_id]
    if isinstance(value, Mapping):
        return {key: substitute_payloads(item, found) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [substitute_payloads(item, found) for item in value]
    return value
