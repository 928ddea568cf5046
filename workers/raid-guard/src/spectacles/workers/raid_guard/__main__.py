"""Composition root of raid-guard: settings from the environment, handlers wired, run."""

from __future__ import annotations

from typing import Any

from spectacles.models import GuildMemberAdd
from spectacles.settings import SettingError, exit_config_error
from spectacles.worker import Context, Worker, WorkerSettings
from spectacles.workers.raid_guard.config import RaidConfig
from spectacles.workers.raid_guard.guard import RaidGuard
from spectacles.workers.raid_guard.restore import (
    RESTORE_ROUTING_KEY,
    RestoreScheduler,
    decode_order,
)

__all__ = ["WORKER_NAME", "build_worker", "main"]

WORKER_NAME = "raid-guard"


def build_worker(
    config: RaidConfig, settings: WorkerSettings | None = None
) -> tuple[Worker, RaidGuard]:
    """The raid-guard worker and its state.

    Single-active-consumer: every replica subscribes, RabbitMQ delivers to one of them, so the
    join windows are never split; a standby takes over when the active one disconnects. The
    end of a raid is a delayed message that comes back through the same queue (``restore.py``),
    so it survives the replica that parked it.
    """
    worker = Worker(WORKER_NAME, settings=settings, single_active_consumer=True)
    guard = RaidGuard(config)

    @worker.on("GUILD_MEMBER_ADD")
    async def on_member_add(member: GuildMemberAdd, ctx: Context) -> None:
        await guard.on_member_add(member, ctx.rest, ctx.log)

    @worker.on(RESTORE_ROUTING_KEY, custom=True)
    async def on_restore(order: Any, ctx: Context) -> None:
        await guard.on_restore(decode_order(order), ctx.rest, ctx.log)

    @worker.on_startup
    async def park_restores_in_rabbitmq() -> None:
        scheduler = RestoreScheduler(worker.broker, worker=WORKER_NAME)
        await scheduler.declare()
        guard.attach(scheduler)

    worker.on_shutdown(guard.close)
    return worker, guard


def main() -> None:
    """Console script ``spectacles-raid-guard``."""
    try:
        config = RaidConfig.from_env()
    except SettingError as exc:
        exit_config_error("spectacles-raid-guard", exc)
    worker, _guard = build_worker(config)
    worker.run()


if __name__ == "__main__":
    main()
