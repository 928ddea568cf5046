"""Composition root of raid-guard: settings from the environment, handlers wired, run."""

from __future__ import annotations

import sys

from spectacles.broker.worker import Worker, WorkerSettings
from spectacles.workers.raid_guard.config import RaidConfig
from spectacles.workers.raid_guard.guard import RESTORE, RaidGuard

WORKER_NAME = "raid-guard"


def build_worker(
    config: RaidConfig, settings: WorkerSettings | None = None
) -> tuple[Worker, RaidGuard]:
    """The raid-guard worker and its state.

    Single-active-consumer: every replica subscribes, RabbitMQ delivers to one of them, so a
    guild's joins are never split; a standby takes over when the active one goes. Restore orders
    come back through the same queue, to whichever replica is active then.
    """
    worker = Worker(WORKER_NAME, settings=settings, single_active_consumer=True)
    guard = RaidGuard(config, worker)
    worker.on("GUILD_MEMBER_ADD")(guard.on_member_add)
    worker.on(RESTORE, custom=True)(guard.on_restore)
    return worker, guard


def main() -> None:
    """Console script ``spectacles-raid-guard``; a bad setting exits 2 naming its variable."""
    try:
        config = RaidConfig.from_env()
    except ValueError as exc:
        print(f"spectacles-raid-guard: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    build_worker(config)[0].run()


if __name__ == "__main__":
    main()
