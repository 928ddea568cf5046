"""Composition root of the ping worker: settings from the environment, handlers wired, run."""

from __future__ import annotations

from spectacles.models import Interaction, MessageCreate
from spectacles.settings import SettingError, exit_config_error
from spectacles.worker import CommandContext, Context, Worker, WorkerSettings
from spectacles.workers.ping.handlers import (
    PING_OPTIONS,
    PingConfig,
    answer_ping,
    answer_ping_command,
)

__all__ = ["build_worker", "main"]

WORKER_NAME = "ping"


def build_worker(config: PingConfig, settings: WorkerSettings | None = None) -> Worker:
    """The ping worker (settings from the environment at start unless given)."""
    worker = Worker(WORKER_NAME, settings=settings)

    @worker.command("ping", description="Check the bot's latency", options=PING_OPTIONS)
    async def ping_command(interaction: Interaction, ctx: CommandContext) -> None:
        await answer_ping_command(interaction, ctx)

    @worker.on("MESSAGE_CREATE")
    async def on_message(message: MessageCreate, ctx: Context) -> None:
        reply = await answer_ping(message, ctx.rest, config)
        if reply is not None:
            ctx.log.info("answered ping", reply_id=str(reply.id))

    return worker


def main() -> None:
    """Console script ``spectacles-ping``."""
    try:
        config = PingConfig.from_env()
    except SettingError as exc:
        exit_config_error("spectacles-ping", exc)
    build_worker(config).run()


if __name__ == "__main__":
    main()
