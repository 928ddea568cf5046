"""Composition root of {{name}}: settings from the environment, handlers wired, run."""

from __future__ import annotations

from spectacles.models import MessageCreate
from spectacles.worker import Context, Worker, WorkerSettings
from spectacles.workers.{{module}}.handlers import answer

__all__ = ["build_worker", "main"]


def build_worker(settings: WorkerSettings | None = None) -> Worker:
    """The {{name}} worker; its queue is ``{BROKER_GROUP}.{{name}}``."""
    worker = Worker("{{name}}", settings=settings)

    @worker.on("MESSAGE_CREATE")
    async def on_message(message: MessageCreate, ctx: Context) -> None:
        reply = await answer(message, ctx.rest)
        if reply is not None:
            ctx.log.info("replied", reply_id=str(reply.id))

    return worker


def main() -> None:
    """Console script ``spectacles-{{name}}``."""
    build_worker().run()


if __name__ == "__main__":
    main()
