"""``ctx.commands``: gateway commands from a worker, on a connection opened only when needed.

Most workers never send a gateway command; opening the confirm-publisher lazily saves every
replica of those a second RabbitMQ connection.
"""

from __future__ import annotations

import asyncio

from spectacles.broker.commands import GatewayCommands
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings

__all__ = ["CommandSender"]


class CommandSender:
    """Same ``send`` / ``send_to_guild`` as ``GatewayCommands``, connecting on first use."""

    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        self._publisher: Publisher | None = None
        self._commands: GatewayCommands | None = None
        self._lock = asyncio.Lock()

    async def send(self, shard_id: int, op: int, d: object) -> None:
        """Send command ``op`` to shard ``shard_id`` (validated: ops 3, 4, 8, 31; <= 4096 B).

        Raises ``InvalidCommand`` for a bad command and ``PublishReturned`` when no gateway
        runs that shard (no queue bound), instead of dropping the command silently.
        """
        commands = await self._get()
        await commands.send(shard_id, op, d)

    async def send_to_guild(self, guild_id: int | str, shard_count: int, op: int, d: object) -> int:
        """Send command ``op`` to the shard that holds ``guild_id``; returns that shard id."""
        commands = await self._get()
        return await commands.send_to_guild(guild_id, shard_count, op, d)

    async def close(self) -> None:
        """Close the publisher if it was ever opened (waits for its confirms, bounded)."""
        publisher, self._publisher, self._commands = self._publisher, None, None
        if publisher is not None:
            await publisher.close()

    async def _get(self) -> GatewayCommands:
        async with self._lock:
            if self._commands is None:
                self._publisher = await Publisher.connect(self._settings)
                self._commands = GatewayCommands(self._publisher, self._settings.group)
            return self._commands
