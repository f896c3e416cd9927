"""The pure side of payloads by reference: references found in JSON, chunks joined and checked."""

from __future__ import annotations

import pytest

from mesh.errors import PayloadCorrupt, PayloadMissing
from mesh.events import (
    PayloadChunk,
    PayloadRef,
    Producer,
    encode_piece,
    join_payload,
    meta,
    payload_digest,
    payload_ref_in,
    payload_refs_in,
    split_payload,
    substitute_payloads,
)

ME = Producer(component="test", instance="unit")


def _stored(data: bytes, size: int) -> tuple[PayloadRef, dict[int, PayloadChunk]]:
    pieces = split_payload(data, size)
    ref = PayloadRef(
        payload_id="p1", size=len(data), sha256=payload_digest(data), chunks=len(pieces)
    )
    chunks = {
        i: PayloadChunk(
            **meta(ME, correlation_id="c"),
            payload_id="p1",
            index=i,
            count=len(pieces),
            data=encode_piece(piece),
        )
        for i, piece in enumerate(pieces)
    }
    return ref, chunks


def test_chunks_join_back_into_the_payload() -> None:
    """Pieces of any size join into the bytes they were cut from (an empty payload too)."""
    for data, size in [(b"abcdefghij", 3), (b"abc", 3), (b"", 4), (bytes(range(256)) * 5, 100)]:
        ref, chunks = _stored(data, size)
        assert join_payload(ref, chunks) == data


def test_a_missing_chunk_is_payload_missing() -> None:
    ref, chunks = _stored(b"abcdefghij", 3)
    del chunks[2]
    with pytest.raises(PayloadMissing, match="1 of 4 chunks"):
        join_payload(ref, chunks)


def test_a_changed_chunk_is_payload_corrupt() -> None:
    """Same length, other bytes: only the digest can tell, and it does."""
    ref, chunks = _stored(b"abcdefghij", 3)
    chunks[1] = chunks[1].model_copy(update={"data": encode_piece(b"XYZ")})
    with pytest.raises(PayloadCorrupt, match="sha256"):
        join_payload(ref, chunks)


def test_a_chunk_that_is_not_base64_is_payload_corrupt() -> None:
    ref, chunks = _stored(b"abcdefghij", 3)
    chunks[0] = chunks[0].model_copy(update={"data": "not base64!"})
    with pytest.raises(PayloadCorrupt, match="base64"):
        join_payload(ref, chunks)


def test_a_reference_is_found_and_replaced_anywhere_in_json() -> None:
    """Only an object whose one key is ``$payload`` with a valid reference stands for one."""
    ref, _ = _stored(b'{"x": 1}', 100)
    value = {"upstream": {"a": ref.as_value(), "b": [ref.as_value(), {"$payload": "no"}]}}
    assert payload_ref_in(ref.as_value()) == ref
    assert payload_ref_in({"$payload": "no"}) is None
    assert payload_ref_in({**ref.as_value(), "other": 1}) is None
    assert payload_refs_in(value) == [ref, ref]
    assert substitute_payloads(value, {"p1": {"x": 1}}) == {
        "upstream": {"a": {"x": 1}, "b": [{"x": 1}, {"$payload": "no"}]}
    }
