"""Which type to declare a queue with when an older version may have created it otherwise.

On a cluster a queue must be quorum to survive a node loss, but RabbitMQ refuses to redeclare an
existing queue with another ``x-queue-type`` (406 PRECONDITION_FAILED, which also closes the
channel), and changing the type means deleting the queue with its messages. So a queue that
exists with another type keeps it, with a warning that tells the operator how to migrate
(docs/operations.md, "Existing queues keep their type"), instead of the service failing to start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

import aiormq

from spectacles.observability import get_logger

from ._translate import LINK_ERRORS
from .broker import Broker
from .topology import QueueSpec, QueueType

__all__ = ["declarable_spec_type", "declarable_type"]

log = get_logger(__name__)

_TIMEOUT: Final = 10.0


async def declarable_spec_type(broker: Broker, spec: QueueSpec) -> QueueType:
    """:func:`declarable_type` of a consumer's queue."""
    return await declarable_type(
        broker, spec.name, spec.queue_type, spec.arguments(broker.topology.dlx)
    )


async def declarable_type(
    broker: Broker, name: str, wanted: QueueType, arguments: Mapping[str, Any]
) -> QueueType:
    """``wanted``, or the type queue ``name`` already has.

    ``arguments`` declare the queue as ``wanted``; RabbitMQ refusing them because of the type
    means the queue exists with the other one.
    """
    channel = await broker.channel(timeout=_TIMEOUT)
    try:
        await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return wanted  # a new queue: it gets the type asked for
    finally:
        if not channel.is_closed:
            with contextlib.suppress(*LINK_ERRORS):
                await channel.close()
    channel = await broker.channel(timeout=_TIMEOUT)
    try:
        await channel.declare_queue(name, durable=True, arguments=dict(arguments))
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        if "x-queue-type" not in str(exc):
            raise
        existing: QueueType = "classic" if wanted == "quorum" else "quorum"
        log.warning(
            "queue.type_kept",
            queue=name,
            wanted=wanted,
            existing=existing,
            hint="the queue exists with another type and keeps it; to migrate, drain and delete "
            "it (it is declared again with the new type): see docs/operations.md",
        )
        return existing
    finally:
        if not channel.is_closed:
            with contextlib.suppress(*LINK_ERRORS):
                await channel.close()
    return wanted
