"""HTTP faces of interactions: the app's callback and webhook routes, and the control API's.

The callback and webhook routes need no bot token (the interaction token in the path is the
credential) and are outside the global rate limit, as on Discord.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from spectacles.simulator._command_checks import CHAT_INPUT, MESSAGE_COMMAND, USER_COMMAND
from spectacles.simulator._command_options import build_options
from spectacles.simulator._control import CONTROL_PREFIX, ControlApi, ControlError, _int_param
from spectacles.simulator._control import _body as _control_body
from spectacles.simulator._entities import Member, Message
from spectacles.simulator._interactions import (
    MESSAGE_COMPONENT,
    Interaction,
    Interactions,
    command_data,
)
from spectacles.simulator._live_view import channel_view
from spectacles.simulator._rest import _body, _json, _Route, _snowflake_param

__all__ = ["InteractionControlApi", "InteractionRestApi"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TRUE = ("1", "true", "True")
MAX_VIEW = 500


class InteractionRestApi:
    """`/interactions/{id}/{token}/callback` and `/webhooks/{application_id}/{token}/...`."""

    def __init__(self, interactions: Interactions) -> None:
        self.interactions = interactions

    def routes(self) -> list[_Route]:
        """Every route; `@original` is registered before `{message_id}` so it wins."""
        hook = "/webhooks/{application_id}/{interaction_token}"
        routes = [
            _Route(
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                self.callback,
                auth=False,
                global_limit=False,
            ),
            _Route("POST", hook, self.followup, auth=False, global_limit=False),
        ]
        for path in (hook + "/messages/@original", hook + "/messages/{message_id}"):
            routes += [
                _Route("GET", path, self.get_message, auth=False, global_limit=False),
                _Route("PATCH", path, self.edit_message, auth=False, global_limit=False),
                _Route("DELETE", path, self.delete_message, auth=False, global_limit=False),
            ]
        return routes

    async def callback(self, request: web.Request) -> web.StreamResponse:
        """The initial response; `?with_response=true` returns the callback response object."""
        interaction_id = _snowflake_param(request, "interaction_id")
        body = await _body(request)
        token = request.match_info["interaction_token"]
        response = self.interactions.callback(interaction_id, token, body)
        if request.query.get("with_response") in _TRUE:
            return _json(response)
        return web.Response(status=204)

    def _interaction(self, request: web.Request) -> Interaction:
        application_id = _snowflake_param(request, "application_id")
        return self.interactions.by_token(application_id, request.match_info["interaction_token"])

    def _message(self, request: web.Request) -> tuple[Interaction, Message]:
        interaction = self._interaction(request)
        ref = request.match_info.get("message_id", "@original")
        return interaction, self.interactions.find_message(interaction, ref)

    async def followup(self, request: web.Request) -> web.StreamResponse:
        """A follow-up message; `?wait=true` answers with it, else 204."""
        interaction = self._interaction(request)
        message = self.interactions.followup(interaction, await _body(request))
        if request.query.get("wait") in _TRUE:
            return _json(message.to_json())
        return web.Response(status=204)

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        """`@original` or a follow-up."""
        return _json(self._message(request)[1].to_json())

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        """Edit `@original` (e.g. after a deferral) or a follow-up."""
        interaction, message = self._message(request)
        changes = await _body(request)
        return _json(self.interactions.edit_message(interaction, message, changes).to_json())

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        """Delete `@original` or a follow-up (204)."""
        interaction, message = self._message(request)
        self.interactions.delete_message(interaction, message)
        return web.Response(status=204)


class InteractionControlApi:
    """`POST /_sim/guilds/{gid}/channels/{cid}/interactions`, `GET /_sim/interactions[/{id}]`."""

    def __init__(self, interactions: Interactions, seed: int) -> None:
        self.interactions = interactions
        self.world = interactions.world
        self._rng = random.Random(seed + 2)

    def register(self, app: web.Application) -> None:
        """Add the control routes (errors as the rest of the control API answers them)."""
        p = CONTROL_PREFIX
        routes: list[tuple[str, str, Handler]] = [
            ("POST", p + "/guilds/{guild_id}/channels/{channel_id}/interactions", self.invoke),
            (
                "POST",
                p + "/guilds/{guild_id}/channels/{channel_id}/messages/{message_id}/components",
                self.use_component,
            ),
            ("GET", p + "/interactions", self.list_interactions),
            ("GET", p + "/interactions/{interaction_id}", self.get_interaction),
            ("GET", p + "/commands", self.list_commands),
            ("GET", p + "/channels/{channel_id}/view", self.channel_view),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, ControlApi._wrap(handler))

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        """A member uses a command: `{"command", "options"?, "user_id"?, "type"?, "target_id"?}`."""
        guild_id = _int_param(request, "guild_id")
        channel_id = _int_param(request, "channel_id")
        body = await _control_body(request)
        guild = self.world.guild(guild_id)
        if channel_id not in guild.channels:
            raise ControlError(f"channel {channel_id} is not in guild {guild_id}", 404)
        name = body.get("command")
        if not isinstance(name, str) or not name:
            raise ControlError('command must be a command name such as "ping"')
        kind = body.get("type", CHAT_INPUT)
        if kind not in (CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND):
            raise ControlError("type must be 1 (slash), 2 (user) or 3 (message command)")
        member = self._member(guild_id, body.get("user_id"))
        command = self.interactions.command_for(guild, member, name, kind)
        if command is None:
            raise ControlError(
                f"no command {name!r} (type {kind}) is registered for guild {guild_id} or "
                "globally, or it is not offered to this member; Discord's client would not "
                "offer it",
                404,
            )
        data = command_data(command)
        if kind == CHAT_INPUT:
            options, resolved = build_options(
                self.world, guild, name, command.options, body.get("options")
            )
            if options:
                data["options"] = options
            if resolved:
                data["resolved"] = resolved
        else:
            data.update(self._target(guild_id, channel_id, kind, body.get("target_id")))
        interaction = self.interactions.invoke(guild_id, channel_id, member.user.id, command, data)
        return _json(
            {
                "id": str(interaction.id),
                "token": interaction.token,
                "application_id": str(self.world.application_id),
                "delivery": interaction.delivery,
                "delivered_to": interaction.delivered_to,
            }
        )

    async def use_component(self, request: web.Request) -> web.StreamResponse:
        """A member clicks a component of a bot message: `{"custom_id", "user_id"?, "values"?}`."""
        guild_id = _int_param(request, "guild_id")
        channel_id = _int_param(request, "channel_id")
        message_id = _int_param(request, "message_id")
        body = await _control_body(request)
        guild = self.world.guild(guild_id)
        if channel_id not in guild.channels:
            raise ControlError(f"channel {channel_id} is not in guild {guild_id}", 404)
        message = self.world.channel(channel_id).find(message_id)
        if message is None:
            raise ControlError(f"no message {message_id} in channel {channel_id}", 404)
        custom_id = body.get("custom_id")
        component = _find_component(message.to_json().get("components") or [], custom_id)
        if component is None:
            raise ControlError(f"message {message_id} has no component {custom_id!r}", 404)
        member = self._member(guild_id, body.get("user_id"))
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component.get("type")}
        if "values" in body:
            data["values"] = body["values"]
        interaction = self.interactions.invoke(
            guild_id,
            channel_id,
            member.user.id,
            None,
            data,
            interaction_type=MESSAGE_COMPONENT,
            message=message,
        )
        return _json(
            {
                "id": str(interaction.id),
                "token": interaction.token,
                "application_id": str(self.world.application_id),
                "delivery": interaction.delivery,
                "delivered_to": interaction.delivered_to,
            }
        )

    def _member(self, guild_id: int, raw: Any) -> Member:
        if raw is None:
            return self.world.random_member(guild_id, rng=self._rng)
        try:
            user_id = int(raw)
        except (TypeError, ValueError):
            raise ControlError(f"user_id must be a snowflake, got {raw!r}") from None
        return self.world.member(guild_id, user_id)

    def _target(self, guild_id: int, channel_id: int, kind: int, raw: Any) -> dict[str, Any]:
        try:
            target = int(raw)
        except (TypeError, ValueError):
            raise ControlError("user and message commands need a target_id") from None
        if kind == USER_COMMAND:
            member = self.world.member(guild_id, target)
            member_json = member.to_json(with_user=False)
            resolved = {
                "users": {str(target): member.user.to_json()},
                "members": {str(target): member_json},
            }
        else:
            message = self.world.channel(channel_id).find(target)
            if message is None:
                raise ControlError(f"no message {target} in channel {channel_id}", 404)
            resolved = {"messages": {str(target): message.to_json()}}
        return {"target_id": str(target), "resolved": resolved}

    def _find(self, request: web.Request) -> Interaction:
        interaction_id = _int_param(request, "interaction_id")
        interaction = self.interactions.by_id.get(interaction_id)
        if interaction is None:
            raise ControlError(f"no interaction {interaction_id}", 404)
        return interaction

    async def get_interaction(self, request: web.Request) -> web.StreamResponse:
        """Its state: response, follow-ups, failure, timestamps."""
        return _json(self.interactions.state(self._find(request)))

    async def list_interactions(self, request: web.Request) -> web.StreamResponse:
        """Every interaction, oldest first; `?channel_id=` and `?after=<id>` narrow it."""
        channel = request.query.get("channel_id")
        after = request.query.get("after", "0")
        if (channel is not None and not channel.isdigit()) or not after.isdigit():
            raise ControlError("channel_id and after must be snowflake ids")
        return _json(
            [
                self.interactions.state(i)
                for i in self.interactions.by_id.values()
                if i.id > int(after) and (channel is None or i.channel_id == int(channel))
            ]
        )

    async def channel_view(self, request: web.Request) -> web.StreamResponse:
        """The live view's items for a channel (`?limit=`, default 50, at most 500)."""
        channel_id = _int_param(request, "channel_id")
        raw = request.query.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_VIEW:
            raise ControlError(f"limit must be 1-{MAX_VIEW}, got {raw!r}")
        return _json(channel_view(self.world, self.interactions, channel_id, int(raw)))

    async def list_commands(self, request: web.Request) -> web.StreamResponse:
        """Registered commands: `global` and per guild id."""
        registry = self.interactions.commands
        return _json(
            {
                "global": [c.to_json() for c in registry.scope(None)],
                "guilds": {
                    str(g): [c.to_json() for c in registry.scope(g)]
                    for g in self.world.guilds
                    if registry.scope(g)
                },
            }
        )


def _find_component(components: list[Any], custom_id: Any) -> dict[str, Any] | None:
    for component in components:
        if not isinstance(component, dict):
            continue
        if component.get("custom_id") == custom_id:
            return component
        inner = _find_component(component.get("components") or [], custom_id)
        if inner is not None:
            return inner
    return None
