"""RabbitMQ client for Spectacles: topology, confirmed publishing, consuming, RPC, gateway commands.

The wire contract these implement is in ``docs/wire-format.md``. The worker SDK lives in
``spectacles.broker.worker`` (not imported here: it pulls in the REST client).
"""

from .broker import Broker
from .commands import GatewayCommands, parse_command, shard_for_guild, validate_command
from .consumer import Consumer, Handler, Outcome
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
    "ERROR_HEADER",
    "Broker",
    "BrokerError",
    "BrokerSettings",
    "BrokerUnavailable",
    "ConfirmListener",
    "ConnectionLost",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "GatewayCommands",
    "Handler",
    "InvalidCommand",
    "Lease",
    "LeaseHolder",
    "LeaseLost",
    "LeaseTimeout",
    "Outcome",
    "PublishError",
    "PublishNacked",
    "PublishReturned",
    "PublishTooLarge",
    "Publisher",
    "QueueSpec",
    "QueueType",
    "RpcClient",
    "RpcError",
    "RpcHandler",
    "RpcServer",
    "RpcTimeout",
    "Topology",
    "TopologyMismatch",
    "parse_command",
    "shard_for_guild",
    "validate_command",
]
