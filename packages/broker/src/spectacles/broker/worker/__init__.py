"""The worker SDK: a bot feature is a ``Worker`` plus a few ``@worker.on(EVENT)`` handlers.

```python
worker = Worker("ping")

@worker.on("MESSAGE_CREATE")
async def on_message(message: MessageCreate, ctx: Context) -> None:
    ...

worker.run()
```
"""

from spectacles.broker.worker._commands import CommandSender
from spectacles.broker.worker._context import Context
from spectacles.broker.worker._settings import (
    DEFAULT_API_URL,
    QueueType,
    WorkerConfigError,
    WorkerSettings,
)
from spectacles.broker.worker._worker import Handler, Worker

__all__ = [
    "DEFAULT_API_URL",
    "CommandSender",
    "Context",
    "Handler",
    "QueueType",
    "Worker",
    "WorkerConfigError",
    "WorkerSettings",
]
