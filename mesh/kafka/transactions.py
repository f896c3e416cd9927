"""Does the broker offer Kafka transactions? Asked once, when the manager starts.

ApiVersions first: a broker that lacks InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
EndTxn or TxnOffsetCommit has none. The embedded Tansu broker lists them all yet answers
InitProducerId for a transactional id with an unknown error, so a broker that lists them must
also let a probe producer initialise. A broker that does not answer in time is an error, not a
reason to quietly fall back to at-least-once.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.protocol.admin import ApiVersionRequest

from mesh.errors import BrokerError
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors, open_admin
from mesh.log import get_logger
from mesh.settings import Settings

TRANSACTION_APIS = frozenset({22, 24, 25, 26, 28})
"""InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit."""

PROBE_SECONDS = 30.0

NO_TRANSACTIONS = "no transactions on this broker: running at-least-once (duplicates recognised)"
"""What a component says at start on a broker without transactions (the embedded one): a
fact about the path it takes, not a failure."""

log = get_logger("mesh.workflows.runtime")


async def supports_transactions(settings: Settings, probe_id: str) -> bool:
    """True if the broker lets a transactional producer with id ``probe_id`` initialise."""
    async with open_admin(settings) as admin:
        with kafka_errors(settings, "ask the broker for its API versions"):
            # aiokafka keeps the versions it negotiated private; asking again is one round trip.
            response = await admin._send_request(ApiVersionRequest())
    offered = {int(key) for key, _low, _high in response.api_versions}
    missing = TRANSACTION_APIS - offered
    if missing:
        log.info(NO_TRANSACTIONS, missing_apis=sorted(missing))
        return False
    probe = AIOKafkaProducer(**client_kwargs(settings), transactional_id=probe_id)
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            await probe.start()
    except (KafkaConnectionError, KafkaTimeoutError, OSError) as exc:
        with kafka_errors(settings, "initialise a transactional producer"):
            raise exc
    except TimeoutError as exc:
        raise BrokerError(
            f"the transaction coordinator did not answer within {PROBE_SECONDS:.0f} s"
        ) from exc
    except TransactionalIdAuthorizationFailed:
        log.warning(
            "transactions refused: this principal may not use transactional ids; running "
            "at-least-once (grant it to run exactly-once)",
            transactional_id=probe_id,
        )
        return False
    except KafkaError:
        # The embedded broker's answer: nothing failed, the mesh takes its other path.
        log.info(NO_TRANSACTIONS)
        return False
    finally:
        await stop_clients(probe)
    return True
