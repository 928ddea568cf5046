"""The worker SDK: a bot feature is a ``Worker`` plus slash commands and event handlers.

```python
worker = Worker("ping")

@worker.command("ping", description="Latency check")
async def ping(interaction: Interaction, ctx: CommandContext) -> None:
    await ctx.respond("Pong!")

@worker.on("MESSAGE_CREATE")
async def on_message(message: MessageCreate, ctx: Context) -> None:
    ...

worker.run()
```
"""

from spectacles.worker._commands import CommandSender
from spectacles.worker._commands_app import CommandHandler
from spectacles.worker._context import Context
from spectacles.worker._interaction_context import CommandContext
from spectacles.worker._settings import (
    DEFAULT_API_URL,
    QueueType,
    WorkerConfigError,
    WorkerSettings,
)
from spectacles.worker._worker import EventHandler, Worker

__all__ = [
    "DEFAULT_API_URL",
    "CommandContext",
    "CommandHandler",
    "CommandSender",
    "Context",
    "EventHandler",
    "QueueType",
    "Worker",
    "WorkerConfigError",
    "WorkerSettings",
]
