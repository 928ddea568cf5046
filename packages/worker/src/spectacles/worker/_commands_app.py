"""Slash commands of a worker: registration at start, and routing INTERACTION_CREATE to them.

Every worker that has commands binds its own queue to INTERACTION_CREATE, so each of them
sees every interaction; a worker answers the commands it declared and acks the others
without a word (another worker owns them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from spectacles.models import (
    ApplicationCommand,
    ApplicationCommandOption,
    Interaction,
    InteractionType,
    to_builtins,
)
from spectacles.rest import NotFound, RestClient
from spectacles.worker._context import Context
from spectacles.worker._interaction_context import CommandContext

__all__ = ["CommandHandler", "CommandRouter", "CommandSpec", "register_commands"]

CommandHandler = Callable[[Interaction, CommandContext], Awaitable[None]]
"""``async def handler(interaction, ctx) -> None``; answer with ``ctx.respond(...)``."""

#: Fields Discord adds to a registered command; they say nothing about what the user sees.
_SERVER_FIELDS = ("id", "application_id", "guild_id", "version")


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One slash command: its definition and its handler."""

    definition: ApplicationCommand
    handler: CommandHandler
    defer_ephemeral: bool = False


class CommandRouter:
    """Runs the handler of a command interaction, deferring it when the handler is slow."""

    def __init__(self, worker: str, defer_after: Callable[[], float]) -> None:
        self.commands: dict[str, CommandSpec] = {}
        self._worker = worker
        self._defer_after = defer_after
        self._log = structlog.stdlib.get_logger("spectacles.worker.commands", worker=worker)

    def add(self, spec: CommandSpec) -> None:
        """Own the command ``spec.definition.name`` (once per worker)."""
        name = spec.definition.name
        if name in self.commands:
            raise ValueError(f"worker {self._worker!r} already has a command /{name}")
        self.commands[name] = spec

    async def dispatch(self, interaction: Interaction, ctx: Context) -> None:
        """The INTERACTION_CREATE handler: route type-2 interactions by ``data.name``."""
        data = interaction.data
        if interaction.type != InteractionType.APPLICATION_COMMAND or data is None:
            return  # components, autocomplete...: not answered by slash-command handlers
        spec = self.commands.get(data.name)
        if spec is None:
            return  # another worker's command: it answers, we only ack our copy
        command_ctx = CommandContext(ctx, interaction)
        task = asyncio.ensure_future(spec.handler(interaction, command_ctx))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._defer_after())
            if not done:
                # Slow handler: say "thinking..." before Discord's 3 s are up; its respond()
                # then edits this deferred answer.
                await command_ctx.defer(ephemeral=spec.defer_ephemeral)
                command_ctx.log.info("command deferred automatically", command=data.name)
            await task
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        if not command_ctx.acknowledged:
            command_ctx.log.warning(
                "command handler returned without answering; Discord shows it as failed",
                command=data.name,
            )


async def register_commands(
    rest: RestClient,
    commands: Sequence[ApplicationCommand],
    *,
    application_id: int | None,
    guild_ids: Sequence[int],
    log: structlog.stdlib.BoundLogger,
) -> int:
    """Upsert each command that differs from what Discord has; returns the application id.

    One ``POST`` per command (Discord upserts by name) and never the bulk ``PUT``, which would
    delete the commands of other workers. Replicas starting together send the same upserts,
    which is harmless; a command already registered identically is skipped (no rate limit
    spent).
    """
    app_id = application_id or await _application_id(rest)
    for guild_id in guild_ids or (None,):
        existing = {
            (command.name, command.type): _comparable(command)
            for command in await rest.get_application_commands(app_id, guild_id=guild_id)
        }
        for command in commands:
            if existing.get((command.name, command.type)) == _comparable(command):
                log.debug("command already registered", command=command.name, guild_id=guild_id)
                continue
            await rest.create_application_command(app_id, command, guild_id=guild_id)
            log.info("command registered", command=command.name, guild_id=guild_id)
    return app_id


def build_definition(
    name: str,
    description: str,
    options: Sequence[ApplicationCommandOption | dict[str, Any]],
) -> ApplicationCommand:
    """The command's definition, validated here rather than by a 400 at start."""
    if not name or len(name) > 32 or name != name.lower() or " " in name:
        raise ValueError(f"command name {name!r} must be 1-32 lowercase characters, no spaces")
    if not 1 <= len(description) <= 100:
        raise ValueError(f"command /{name} needs a description of 1-100 characters")
    typed = [
        option
        if isinstance(option, ApplicationCommandOption)
        else ApplicationCommandOption(**option)
        for option in options
    ]
    return ApplicationCommand(name=name, description=description, options=typed)


def _comparable(command: ApplicationCommand) -> Any:
    fields = to_builtins(command)
    for name in _SERVER_FIELDS:
        fields.pop(name, None)
    return fields


async def _application_id(rest: RestClient) -> int:
    """The bot's application id; for bots it equals the bot user's id when the route is absent."""
    try:
        return int((await rest.get_current_application()).id)
    except NotFound:
        return int((await rest.get_current_user()).id)
