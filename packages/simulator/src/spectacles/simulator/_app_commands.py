"""Application commands (slash, user and message commands), global and per guild.

The REST routes follow Discord's: POST upserts by (type, name) and answers 201 for a new
command, 200 for a replaced one; PUT overwrites the whole set; ids survive an overwrite that
keeps a name, the version changes whenever a command does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiohttp import web

from spectacles.simulator._command_checks import (
    CHAT_INPUT,
    MESSAGE_COMMAND,
    USER_COMMAND,
    FormErrors,
    check_command,
)
from spectacles.simulator._errors import SimulatorError, ValidationError
from spectacles.simulator._rest import _body, _json, _Route, _snowflake_param
from spectacles.simulator._world import World

__all__ = ["AppCommand", "AppCommandsApi", "CommandRegistry", "UnknownCommandError"]

# Per scope (global, or one guild), by command type (Discord's documented limits).
COMMAND_LIMITS: Final = {CHAT_INPUT: 100, USER_COMMAND: 15, MESSAGE_COMMAND: 15}
_PASSTHROUGH: Final = ("name_localizations", "description_localizations")


class UnknownCommandError(SimulatorError):
    """10063 Unknown application command."""

    status = 404
    code = 10063

    def __init__(self) -> None:
        super().__init__("Unknown application command")


class _MissingAccess(SimulatorError):
    status = 403
    code = 50001

    def __init__(self) -> None:
        super().__init__("Missing Access")


class _TooManyCommands(SimulatorError):
    code = 30032

    def __init__(self, limit: int) -> None:
        super().__init__(f"Maximum number of application commands reached ({limit})")


@dataclass(slots=True)
class AppCommand:
    """One registered command; `body` is the validated request body it was made from."""

    id: int
    application_id: int
    guild_id: int | None
    version: int
    body: dict[str, Any]

    @property
    def type(self) -> int:
        """CHAT_INPUT (1), USER (2) or MESSAGE (3)."""
        return int(self.body.get("type", CHAT_INPUT))

    @property
    def name(self) -> str:
        """The command's name (unique per type within its scope)."""
        return str(self.body["name"])

    @property
    def options(self) -> list[dict[str, Any]]:
        """The option definitions (empty when none)."""
        return list(self.body.get("options") or [])

    def to_json(self) -> dict[str, Any]:
        """The application command object."""
        body = self.body
        permissions = body.get("default_member_permissions")
        data: dict[str, Any] = {
            "id": str(self.id),
            "application_id": str(self.application_id),
            "version": str(self.version),
            "default_member_permissions": None if permissions is None else str(permissions),
            "type": self.type,
            "name": self.name,
            "description": body.get("description") or "",
            "dm_permission": body.get("dm_permission", True),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types") or [0],
            "nsfw": bool(body.get("nsfw", False)),
        }
        for key in _PASSTHROUGH:
            data[key] = body.get(key)
        if self.options:
            data["options"] = self.options
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        return data


class CommandRegistry:
    """Every scope's commands, keyed by (type, name) as Discord makes them unique."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._scopes: dict[int | None, dict[tuple[int, str], AppCommand]] = {}

    def scope(self, guild_id: int | None) -> list[AppCommand]:
        """The commands of one scope (None = global), oldest first."""
        return list(self._scopes.get(guild_id, {}).values())

    def get(self, guild_id: int | None, command_id: int) -> AppCommand:
        """A command of the scope by id, else 10063."""
        for command in self._scopes.get(guild_id, {}).values():
            if command.id == command_id:
                return command
        raise UnknownCommandError

    def available(self, guild_id: int, name: str, kind: int = CHAT_INPUT) -> AppCommand | None:
        """What a guild member's client offers under `name`: the guild's command, else global."""
        for scope in (guild_id, None):
            command = self._scopes.get(scope, {}).get((kind, name))
            if command is not None:
                return command
        return None

    def upsert(self, guild_id: int | None, body: dict[str, Any]) -> tuple[AppCommand, bool]:
        """Create or replace by (type, name); True when the command is new."""
        errors = FormErrors()
        check_command(body, errors)
        errors.raise_if_any()
        commands = self._scopes.setdefault(guild_id, {})
        key = (int(body.get("type", CHAT_INPUT)), str(body["name"]))
        existing = commands.get(key)
        if existing is not None:
            existing.body = dict(body)
            existing.version = self.world.next_id()
            return existing, False
        limit = COMMAND_LIMITS[key[0]]
        if sum(1 for k in commands if k[0] == key[0]) >= limit:
            raise _TooManyCommands(limit)
        command = self._new(guild_id, body)
        commands[key] = command
        return command, True

    def overwrite(self, guild_id: int | None, bodies: Any) -> list[AppCommand]:
        """Replace the scope's commands (PUT); commands keeping their name keep their id."""
        errors = FormErrors()
        if not isinstance(bodies, list):
            errors.add((), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            errors.raise_if_any()
        seen: set[tuple[int, str]] = set()
        for index, body in enumerate(bodies):
            check_command(body, errors, (str(index),))
            if isinstance(body, dict) and isinstance(body.get("name"), str):
                key = (body.get("type", CHAT_INPUT), body["name"])
                if key in seen:
                    errors.add(
                        (str(index), "name"),
                        "APPLICATION_COMMANDS_DUPLICATE_NAME",
                        "Application command names must be unique",
                    )
                seen.add(key)
        for kind, limit in COMMAND_LIMITS.items():
            if sum(1 for k in seen if k[0] == kind) > limit:
                errors.add((), "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
        errors.raise_if_any()
        old = self._scopes.get(guild_id, {})
        fresh: dict[tuple[int, str], AppCommand] = {}
        for body in bodies:
            key = (int(body.get("type", CHAT_INPUT)), str(body["name"]))
            command = old.get(key)
            if command is None:
                command = self._new(guild_id, body)
            elif command.body != body:
                command.body = dict(body)
                command.version = self.world.next_id()
            fresh[key] = command
        self._scopes[guild_id] = fresh
        return list(fresh.values())

    def edit(self, guild_id: int | None, command_id: int, changes: dict[str, Any]) -> AppCommand:
        """PATCH: merge, validate the result, keep (type, name) unique."""
        command = self.get(guild_id, command_id)
        merged = {**command.body, **changes, "type": command.type}
        errors = FormErrors()
        check_command(merged, errors)
        errors.raise_if_any()
        commands = self._scopes[guild_id]
        key = (command.type, str(merged["name"]))
        clash = commands.get(key)
        if clash is not None and clash is not command:
            errors.add(
                ("name",),
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                "Application command names must be unique",
            )
            errors.raise_if_any()
        del commands[(command.type, command.name)]
        command.body = merged
        command.version = self.world.next_id()
        commands[key] = command
        return command

    def delete(self, guild_id: int | None, command_id: int) -> None:
        """Remove a command, else 10063."""
        command = self.get(guild_id, command_id)
        del self._scopes[guild_id][(command.type, command.name)]

    def _new(self, guild_id: int | None, body: dict[str, Any]) -> AppCommand:
        command_id = self.world.next_id()
        return AppCommand(command_id, self.world.application_id, guild_id, command_id, dict(body))


def _commands_json(commands: Iterable[AppCommand]) -> web.Response:
    return _json([c.to_json() for c in commands])


class AppCommandsApi:
    """The REST routes under `/applications/{application_id}/[guilds/{guild_id}/]commands`."""

    def __init__(self, registry: CommandRegistry) -> None:
        self.registry = registry
        self.world = registry.world

    def routes(self) -> list[_Route]:
        """Global and guild variants of list, create, overwrite, get, edit and delete."""
        routes: list[_Route] = []
        for base in (
            "/applications/{application_id}/commands",
            "/applications/{application_id}/guilds/{guild_id}/commands",
        ):
            routes += [
                _Route("GET", base, self.list_commands),
                _Route("POST", base, self.create_command),
                _Route("PUT", base, self.overwrite_commands),
                _Route("GET", base + "/{command_id}", self.get_command),
                _Route("PATCH", base + "/{command_id}", self.edit_command),
                _Route("DELETE", base + "/{command_id}", self.delete_command),
            ]
        return routes

    def _scope(self, request: web.Request) -> int | None:
        if _snowflake_param(request, "application_id") != self.world.application_id:
            raise _MissingAccess
        if "guild_id" not in request.match_info:
            return None
        guild_id = _snowflake_param(request, "guild_id")
        self.world.guild(guild_id)
        return guild_id

    async def list_commands(self, request: web.Request) -> web.StreamResponse:
        """Every command of the scope."""
        return _commands_json(self.registry.scope(self._scope(request)))

    async def create_command(self, request: web.Request) -> web.StreamResponse:
        """Upsert by name: 201 when new, 200 when it replaced a command of that name."""
        scope = self._scope(request)
        command, created = self.registry.upsert(scope, await _body(request))
        return _json(command.to_json(), 201 if created else 200)

    async def overwrite_commands(self, request: web.Request) -> web.StreamResponse:
        """Bulk overwrite: the body is the scope's complete new list."""
        scope = self._scope(request)
        bodies = _decode_list(await request.read())
        return _commands_json(self.registry.overwrite(scope, bodies))

    async def get_command(self, request: web.Request) -> web.StreamResponse:
        """One command by id (10063 when unknown)."""
        scope = self._scope(request)
        command_id = _snowflake_param(request, "command_id")
        return _json(self.registry.get(scope, command_id).to_json())

    async def edit_command(self, request: web.Request) -> web.StreamResponse:
        """Change some fields of a command."""
        scope = self._scope(request)
        command_id = _snowflake_param(request, "command_id")
        changes = await _body(request)
        return _json(self.registry.edit(scope, command_id, changes).to_json())

    async def delete_command(self, request: web.Request) -> web.StreamResponse:
        """Delete a command (204)."""
        scope = self._scope(request)
        self.registry.delete(scope, _snowflake_param(request, "command_id"))
        return web.Response(status=204)


def _decode_list(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw or b"null")
    except msgspec.DecodeError:
        raise ValidationError(50109, "The request body contains invalid JSON.") from None
