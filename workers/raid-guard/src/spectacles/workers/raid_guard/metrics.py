"""Raid-guard's own Prometheus metrics (the SDK adds handled/failed/latency per event)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

__all__ = [
    "ACTIONS",
    "ACTIVE_RAIDS",
    "RAIDS_ADOPTED",
    "RAIDS_DETECTED",
    "REST_FAILURES",
    "VERIFICATION_CHANGES",
]

RAIDS_DETECTED: Final = Counter(
    "spectacles_raid_guard_raids_detected_total", "Raids detected (one per raid, not per join)."
)
RAIDS_ADOPTED: Final = Counter(
    "spectacles_raid_guard_raids_adopted_total",
    "Raids taken over after a failover (their restore order was still parked): no new alert.",
)
ACTIVE_RAIDS: Final = Gauge(
    "spectacles_raid_guard_active_raids", "Guilds currently in a raid (verification raised)."
)
ACTIONS: Final = Counter(
    "spectacles_raid_guard_actions_total",
    "Actions taken on young accounts that joined during a raid.",
    ("action", "outcome"),
)
VERIFICATION_CHANGES: Final = Counter(
    "spectacles_raid_guard_verification_changes_total",
    "Verification level changes: 'raised' at a raid, 'restored' after its cooldown, 'left' when "
    "someone changed it in between (no restore).",
    ("change",),
)
REST_FAILURES: Final = Counter(
    "spectacles_raid_guard_rest_failures_total",
    "Discord REST calls that still failed after the client's retries (reported, not raised).",
    ("operation",),
)
