"""RabbitMQ client for Spectacles: topology, confirmed publishing, consuming, RPC, gateway commands.

The wire contract these implement is in ``docs/wire-format.md``. The worker SDK built on it is
its own distribution, ``spectacles-worker`` (``spectacles.worker``).
"""

from ._backoff import Backoff
from ._translate import BROKER_FAILURES
from .admin import AccessRefused, BrokerAdmin, EntityLocked, NoSuchEntity, Received
from .broker import Broker
from .commands import GatewayCommands, parse_command, shard_for_guild, validate_command
from .consumer import Consumer, DeliveryHandler, Outcome
from .delayed import Scheduled, delay_queue_name, publish_later, scheduled
from .delivery import ATTEMPTS_HEADER, ERROR_HEADER, Delivery
from .errors import (
    BrokerError,
    BrokerUnavailable,
    ConnectionLost,
    DeadLetter,
    InvalidCommand,
    PublishError,
    PublishNacked,
    PublishReturned,
    PublishTooLarge,
    RpcError,
    RpcTimeout,
    TopologyMismatch,
)
from .lease import Lease, LeaseHolder, LeaseLost, LeaseTimeout
from .publisher import ConfirmListener, Publisher
from .rpc import RpcClient, RpcHandler, RpcServer
from .settings import BrokerSettings
from .topology import QueueSpec, QueueType, Topology

__all__ = [
    "ATTEMPTS_HEADER",
    "BROKER_FAILURES",
    "ERROR_HEADER",
    "AccessRefused",
    "Backoff",
    "Broker",
    "BrokerAdmin",
    "BrokerError",
    "BrokerSettings",
    "BrokerUnavailable",
    "ConfirmListener",
    "ConnectionLost",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "DeliveryHandler",
    "EntityLocked",
    "GatewayCommands",
    "InvalidCommand",
    "Lease",
    "LeaseHolder",
    "LeaseLost",
    "LeaseTimeout",
    "NoSuchEntity",
    "Outcome",
    "PublishError",
    "PublishNacked",
    "PublishReturned",
    "PublishTooLarge",
    "Publisher",
    "QueueSpec",
    "QueueType",
    "Received",
    "RpcClient",
    "RpcError",
    "RpcHandler",
    "RpcServer",
    "RpcTimeout",
    "Scheduled",
    "Topology",
    "TopologyMismatch",
    "delay_queue_name",
    "parse_command",
    "publish_later",
    "scheduled",
    "shard_for_guild",
    "validate_command",
]
