"""The Spectacles gateway: Discord shards relayed into RabbitMQ with nothing lost.

Run it with `spectacles-gateway --config gateway.toml`; embed it with `GatewayService`.
"""

from .config import GatewayConfig, load_config, parse_config, parse_shard_ids
from .errors import (
    ConfigError,
    GatewayError,
    GatewayUnreachable,
    IdentifyLimitExceeded,
    ServerClosed,
    TransportError,
)
from .identify import IdentifyQueue
from .ratelimit import SendLimiter
from .relay import Relay
from .service import GatewayService
from .session import ResumeTracker, SessionState
from .session_store import (
    AmqpSessionStore,
    FileSessionStore,
    NullSessionStore,
    SessionStore,
    create_session_store,
    session_queue_name,
)
from .shard import Shard, ShardState
from .sink import EventSink, MemorySink, SinkError, SinkRefused, SinkUnavailable
from .transport import GatewayTransport

__all__ = [
    "AmqpSessionStore",
    "ConfigError",
    "EventSink",
    "FileSessionStore",
    "GatewayConfig",
    "GatewayError",
    "GatewayService",
    "GatewayTransport",
    "GatewayUnreachable",
    "IdentifyLimitExceeded",
    "IdentifyQueue",
    "MemorySink",
    "NullSessionStore",
    "Relay",
    "ResumeTracker",
    "SendLimiter",
    "ServerClosed",
    "SessionState",
    "SessionStore",
    "Shard",
    "ShardState",
    "SinkError",
    "SinkRefused",
    "SinkUnavailable",
    "TransportError",
    "create_session_store",
    "load_config",
    "parse_config",
    "parse_shard_ids",
    "session_queue_name",
]
