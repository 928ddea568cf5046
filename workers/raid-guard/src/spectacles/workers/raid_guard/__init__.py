"""Raid-guard: detects bursts of member joins and locks the guild down, once per raid."""

from spectacles.workers.raid_guard.alert import raid_alert
from spectacles.workers.raid_guard.config import RaidAction, RaidConfig, RaidConfigError
from spectacles.workers.raid_guard.detector import (
    Joiner,
    Raid,
    RaidContinues,
    RaidDetector,
    RaidStarted,
)
from spectacles.workers.raid_guard.guard import RaidGuard, joiner_from_event
from spectacles.workers.raid_guard.restore import (
    RESTORE_ROUTING_KEY,
    RestoreLookupFailed,
    RestoreNotScheduled,
    RestoreOrder,
    RestoreScheduler,
)

__all__ = [
    "RESTORE_ROUTING_KEY",
    "Joiner",
    "Raid",
    "RaidAction",
    "RaidConfig",
    "RaidConfigError",
    "RaidContinues",
    "RaidDetector",
    "RaidGuard",
    "RaidStarted",
    "RestoreLookupFailed",
    "RestoreNotScheduled",
    "RestoreOrder",
    "RestoreScheduler",
    "joiner_from_event",
    "raid_alert",
]
