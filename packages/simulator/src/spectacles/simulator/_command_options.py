"""Turn the control API's `{"option": value}` into the `data.options`/`resolved` Discord sends.

Discord's client only lets a user submit values a command's definition allows, so anything else
(an unknown option, a missing required one, a wrong type, a value outside the choices or bounds)
is refused with a message naming the option.
"""

from __future__ import annotations

from typing import Any

from spectacles.simulator._command_checks import SUB_COMMAND, SUB_COMMAND_GROUP
from spectacles.simulator._control import ControlError
from spectacles.simulator._entities import Guild
from spectacles.simulator._interactions import member_permissions
from spectacles.simulator._world import World

__all__ = ["build_options"]

STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = 3, 4, 5, 6, 7, 8, 9, 10


class _Resolver:
    def __init__(self, world: World, guild: Guild) -> None:
        self.world = world
        self.guild = guild
        self.resolved: dict[str, dict[str, Any]] = {}

    def add(self, kind: str, key: int, value: dict[str, Any]) -> None:
        self.resolved.setdefault(kind, {})[str(key)] = value

    def user(self, user_id: int) -> bool:
        user = self.world.users.get(user_id)
        if user is None:
            return False
        self.add("users", user_id, user.to_json())
        member = self.guild.members.get(user_id)
        if member is not None:
            data = member.to_json(with_user=False)
            data["permissions"] = str(member_permissions(self.guild, member))
            self.add("members", user_id, data)
        return True

    def role(self, role_id: int) -> bool:
        role = next((r for r in self.guild.roles if r.id == role_id), None)
        if role is not None:
            self.add("roles", role_id, role.to_json())
        return role is not None

    def channel(self, channel_id: int) -> bool:
        channel = self.guild.channels.get(channel_id)
        if channel is None:
            return False
        self.add(
            "channels",
            channel_id,
            {
                "id": str(channel.id),
                "name": channel.name,
                "type": 0,
                "permissions": "0",
                "parent_id": None,
                "nsfw": False,
                "flags": 0,
                "guild_id": str(channel.guild_id),
                "topic": channel.topic,
                "position": channel.position,
                "rate_limit_per_user": 0,
                "last_message_id": None,
                "permission_overwrites": [],
            },
        )
        return True


def build_options(
    world: World, guild: Guild, command_name: str, definitions: list[dict[str, Any]], given: Any
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The interaction's `data.options` and `data.resolved` for the given values."""
    resolver = _Resolver(world, guild)
    options = _level(resolver, f"/{command_name}", definitions, given or {})
    return options, resolver.resolved


def _level(
    resolver: _Resolver, where: str, definitions: list[dict[str, Any]], given: Any
) -> list[dict[str, Any]]:
    if not isinstance(given, dict):
        raise ControlError(f"options of {where} must be a JSON object of name → value")
    by_name = {d["name"]: d for d in definitions}
    nested = [d for d in definitions if d.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
    if nested:
        if len(given) != 1 or next(iter(given)) not in by_name:
            names = ", ".join(d["name"] for d in nested)
            raise ControlError(f"{where} needs exactly one sub-command of: {names}")
        name, inner = next(iter(given.items()))
        definition = by_name[name]
        return [
            {
                "name": name,
                "type": definition["type"],
                "options": _level(
                    resolver, f"{where} {name}", definition.get("options") or [], inner or {}
                ),
            }
        ]
    result = []
    for name, value in given.items():
        option = by_name.get(name)
        if option is None:
            known = ", ".join(by_name) or "none"
            raise ControlError(f"{where} has no option {name!r} (its options: {known})")
        result.append(
            {
                "name": name,
                "type": option["type"],
                "value": _value(resolver, f"{where} {name}", option, value),
            }
        )
    missing = [d["name"] for d in definitions if d.get("required") and d["name"] not in given]
    if missing:
        raise ControlError(f"{where} needs the required option(s) {', '.join(missing)}")
    return result


def _value(resolver: _Resolver, where: str, definition: dict[str, Any], value: Any) -> Any:
    kind = definition["type"]
    if kind == STRING:
        if not isinstance(value, str):
            raise ControlError(f"{where} must be a string")
        low, high = definition.get("min_length", 0), definition.get("max_length", 6000)
        if not low <= len(value) <= high:
            raise ControlError(f"{where} must be {low}-{high} characters long")
    elif kind in (INTEGER, NUMBER):
        ok = isinstance(value, int) if kind == INTEGER else isinstance(value, (int, float))
        if not ok or isinstance(value, bool):
            raise ControlError(f"{where} must be {'an integer' if kind == INTEGER else 'a number'}")
        low, high = definition.get("min_value"), definition.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ControlError(f"{where} must be between {low} and {high}")
    elif kind == BOOLEAN:
        if not isinstance(value, bool):
            raise ControlError(f"{where} must be true or false")
    elif kind in (USER, CHANNEL, ROLE, MENTIONABLE):
        return _entity(resolver, where, kind, value)
    else:
        raise ControlError(f"{where}: option type {kind} cannot be simulated")
    choices = definition.get("choices")
    if choices and value not in [c.get("value") for c in choices]:
        raise ControlError(f"{where} must be one of {[c.get('value') for c in choices]}")
    return value


def _entity(resolver: _Resolver, where: str, kind: int, value: Any) -> str:
    try:
        entity_id = int(value)
    except (TypeError, ValueError):
        raise ControlError(f"{where} must be a snowflake id, got {value!r}") from None
    found = {
        USER: resolver.user,
        CHANNEL: resolver.channel,
        ROLE: resolver.role,
    }.get(kind)
    if found is not None:
        ok = found(entity_id)
    else:  # MENTIONABLE: a user or a role
        ok = resolver.user(entity_id) or resolver.role(entity_id)
    if not ok:
        raise ControlError(f"{where}: no such {'entity' if found is None else 'id'} {entity_id}")
    return str(entity_id)
