"""Prometheus metrics of the gateway (default registry, served by the HealthServer).

The relay hot path does not touch these: shards count events in plain dicts and
`MetricsFlusher` adds the deltas here about once a second, because a labelled prometheus
counter increment costs more than the rest of relaying one small event.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CLUSTER_FAILOVERS",
    "CLUSTER_HANDOVERS",
    "CLUSTER_LEASES",
    "CLUSTER_MEMBERS",
    "CLUSTER_SHARDS_OWNED",
    "CLUSTER_TAKEOVER_SECONDS",
    "COMMANDS",
    "CONFIRM_LATENCY",
    "EVENTS_OVERSIZE",
    "EVENTS_PUBLISHED",
    "EVENTS_RECEIVED",
    "EVENTS_UNROUTED",
    "HEARTBEAT_LATENCY",
    "IDENTIFIES",
    "IDENTIFY_LOCK_WAIT",
    "IN_FLIGHT",
    "MALFORMED_PAYLOADS",
    "RECONNECTS",
    "RESUMES",
    "SHARD_STATE",
]

EVENTS_RECEIVED: Final = Counter(
    "spectacles_gateway_events_received",
    "Dispatch events received from Discord.",
    ["shard", "event"],
)
EVENTS_PUBLISHED: Final = Counter(
    "spectacles_gateway_events_published",
    "Dispatch events confirmed by RabbitMQ.",
    ["shard", "event"],
)
EVENTS_OVERSIZE: Final = Counter(
    "spectacles_gateway_events_oversize",
    "Dispatch events too large to relay, stored as a record in {group}.oversize instead.",
    ["shard", "event"],
)
EVENTS_UNROUTED: Final = Counter(
    "spectacles_gateway_events_unrouted",
    "Dispatch events no queue was bound to receive, kept in {group}.unrouted instead.",
    ["event"],
)
CONFIRM_LATENCY: Final = Histogram(
    "spectacles_gateway_confirm_latency_seconds",
    "Time from publishing an event to RabbitMQ's confirm (sampled).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
HEARTBEAT_LATENCY: Final = Gauge(
    "spectacles_gateway_heartbeat_latency_seconds",
    "Time between the last heartbeat and its ACK.",
    ["shard"],
)
SHARD_STATE: Final = Gauge(
    "spectacles_gateway_shard_state",
    "1 for the state each shard is in, 0 for the others.",
    ["shard", "state"],
)
IDENTIFIES: Final = Counter(
    "spectacles_gateway_identifies", "IDENTIFY payloads sent (new sessions).", ["shard"]
)
IDENTIFY_LOCK_WAIT: Final = Histogram(
    "spectacles_gateway_identify_lock_wait_seconds",
    "Time an IDENTIFY waited for its bucket's lock in RabbitMQ (other gateways, outages).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
RESUMES: Final = Counter("spectacles_gateway_resumes", "RESUME payloads sent.", ["shard"])
RECONNECTS: Final = Counter(
    "spectacles_gateway_reconnects",
    "Connections ended and retried, by reason.",
    ["shard", "reason"],
)
IN_FLIGHT: Final = Gauge(
    "spectacles_gateway_in_flight", "Events published and not yet confirmed by RabbitMQ."
)
COMMANDS: Final = Counter(
    "spectacles_gateway_commands",
    "Gateway commands from workers, by outcome (sent, rejected).",
    ["shard", "outcome"],
)
MALFORMED_PAYLOADS: Final = Counter(
    "spectacles_gateway_malformed_payloads",
    "Gateway payloads msgspec refused, by outcome (relayed with 'd' as received, skipped).",
    ["shard", "outcome"],
)

# The gateway cluster (`shards.ids = "auto"`, see cluster.py).
CLUSTER_SHARDS_OWNED: Final = Gauge(
    "spectacles_gateway_cluster_shards_owned",
    "Shards whose lease this process holds (auto mode).",
)
CLUSTER_MEMBERS: Final = Gauge(
    "spectacles_gateway_cluster_members",
    "Live gateway processes of the group as this process sees them (auto mode).",
)
CLUSTER_LEASES: Final = Counter(
    "spectacles_gateway_cluster_leases",
    "Shard leases taken, released (handed over) and lost (connection to RabbitMQ gone).",
    ["event"],
)
CLUSTER_FAILOVERS: Final = Counter(
    "spectacles_gateway_cluster_failovers",
    "Shards this process took over from a process that died or lost RabbitMQ.",
)
CLUSTER_HANDOVERS: Final = Counter(
    "spectacles_gateway_cluster_handovers",
    "Shards handed over gracefully (rebalance or SIGTERM), given away or taken.",
    ["direction"],
)
CLUSTER_TAKEOVER_SECONDS: Final = Histogram(
    "spectacles_gateway_cluster_takeover_seconds",
    "Time from taking a shard's lease to its session READY again (includes the takeover "
    "delay), by kind: failover, handover or new.",
    ["kind"],
    buckets=(0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0),
)
