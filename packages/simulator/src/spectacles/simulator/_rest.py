"""Discord's REST API (`/api/v10`): the routes a moderation bot uses, with auth and rate limits."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import msgspec
from aiohttp import web

from spectacles.simulator._actions import Actions
from spectacles.simulator._errors import SimulatorError, UnknownEntityError, ValidationError
from spectacles.simulator._gateway import GatewayHub
from spectacles.simulator._ratelimit import RateLimiter, Verdict
from spectacles.simulator._stats import RestCall, Stats

__all__ = ["API_PREFIX", "RestApi"]

API_PREFIX: Final = "/api/v10"
_MAJOR_PARAMETERS: Final = ("channel_id", "guild_id", "webhook_id", "interaction_token")
# The docs' example default sound (resources/soundboard.mdx); Discord ships a handful like it.
_DEFAULT_SOUNDS: Final = (
    {
        "name": "quack",
        "sound_id": "1",
        "volume": 1.0,
        "emoji_id": None,
        "emoji_name": "\N{DUCK}",
        "available": True,
    },
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    template: str
    handler: Handler
    auth: bool = True
    # Routes the token in the path authorises (interaction responses) have route buckets
    # but are outside the global limit.
    global_limit: bool = True

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def major(self) -> str | None:
        return next((p for p in _MAJOR_PARAMETERS if "{" + p + "}" in self.template), None)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def _snowflake_param(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit():
        raise ValidationError.field(name, "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.')
    return int(raw)


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON body (or multipart `payload_json`), else Discord's 50109."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        raw: Any = form.get("payload_json", "{}")
        raw = raw.encode() if isinstance(raw, str) else b"{}"
    else:
        raw = await request.read()
    if not raw:
        return {}
    try:
        data = _decode(raw)
    except msgspec.DecodeError:
        data = None
    if not isinstance(data, dict):
        raise ValidationError(50109, "The request body contains invalid JSON.")
    return data


class RestApi:
    """Registers the REST routes and wraps each with auth, rate limiting, logging and errors."""

    def __init__(
        self, actions: Actions, hub: GatewayHub, limiter: RateLimiter, stats: Stats
    ) -> None:
        self.actions = actions
        self.world = actions.world
        self.config = actions.config
        self.hub = hub
        self.limiter = limiter
        self.stats = stats
        self._authorization = f"Bot {self.config.token}"
        # Routes of other modules (application commands, interactions), set before register().
        self.extra_routes: list[_Route] = []
        # The application's key and interactions endpoint (see `_webhook_out.py`).
        self.application_fields: Callable[[], dict[str, Any]] = dict

    def routes(self) -> list[_Route]:
        """Every route, as (method, template) → handler."""
        return [
            _Route("GET", "/gateway", self.get_gateway, auth=False),
            _Route("GET", "/gateway/bot", self.get_gateway_bot),
            _Route("GET", "/users/@me", self.get_current_user),
            _Route("GET", "/users/{user_id}", self.get_user),
            _Route("GET", "/oauth2/applications/@me", self.get_application),
            _Route("GET", "/applications/@me", self.get_application),
            _Route("GET", "/soundboard-default-sounds", self.get_default_sounds),
            _Route("GET", "/guilds/{guild_id}", self.get_guild),
            _Route("PATCH", "/guilds/{guild_id}", self.modify_guild),
            _Route("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            _Route("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            _Route("PATCH", "/guilds/{guild_id}/members/{user_id}", self.modify_member),
            _Route("DELETE", "/guilds/{guild_id}/members/{user_id}", self.kick_member),
            _Route("GET", "/guilds/{guild_id}/bans/{user_id}", self.get_ban),
            _Route("PUT", "/guilds/{guild_id}/bans/{user_id}", self.ban_member),
            _Route("DELETE", "/guilds/{guild_id}/bans/{user_id}", self.unban_member),
            _Route("GET", "/channels/{channel_id}", self.get_channel),
            _Route("GET", "/channels/{channel_id}/messages", self.get_messages),
            _Route("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message),
            _Route("POST", "/channels/{channel_id}/messages", self.create_message),
            *self.extra_routes,
        ]

    def register(self, app: web.Application) -> None:
        """Add the routes (and a JSON 404 for everything else under the prefix)."""
        for route in self.routes():
            app.router.add_route(route.method, API_PREFIX + route.template, self._wrap(route))
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._not_found)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        response = _json({"message": "404: Not Found", "code": 0}, 404)
        self._log(request, response.status, None)
        return response

    def _wrap(self, route: _Route) -> Handler:
        major = route.major

        async def handle(request: web.Request) -> web.StreamResponse:
            verdict: Verdict | None = None
            if route.auth and request.headers.get("Authorization") != self._authorization:
                response: web.StreamResponse = _json(
                    {"message": "401: Unauthorized", "code": 0}, 401
                )
            else:
                major_value = request.match_info.get(major, "") if major else ""
                limited = route.auth or not route.global_limit
                verdict = (
                    self.limiter.check(route.key, major_value, count_global=route.global_limit)
                    if limited
                    else None
                )
                if verdict is not None and not verdict.allowed:
                    self.stats.rate_limited += 1
                    if verdict.is_global:
                        self.stats.global_rate_limited += 1
                    response = _json(verdict.body(), 429)
                else:
                    try:
                        response = await route.handler(request)
                    except SimulatorError as error:
                        response = _json(error.body(), error.status)
                if verdict is not None:
                    response.headers.update(verdict.headers)
            self._log(request, response.status, verdict.bucket if verdict else None)
            return response

        return handle

    def _log(self, request: web.Request, status: int, bucket: str | None) -> None:
        self.stats.rest_requests += 1
        path = request.path.removeprefix(API_PREFIX)
        token = request.match_info.get("interaction_token")
        if token:  # an interaction token is a credential: keep it out of the log
            path = path.replace(token, "{token}")
        reason = _audit_reason(request)
        self.stats.rest_log.append(
            RestCall(time.time(), request.method, path, status, bucket, reason)
        )

    # -- gateway and identity ---------------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.StreamResponse:
        """The websocket URL to connect to."""
        return _json({"url": self.hub.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.StreamResponse:
        """URL, recommended shards and the identify budget."""
        return _json(
            {
                "url": self.hub.gateway_url,
                "shards": self.config.shards,
                "session_start_limit": self.hub.session_start_limit(),
            }
        )

    async def get_current_user(self, request: web.Request) -> web.StreamResponse:
        """The bot's own user."""
        return _json(self.world.bot.to_private_json())

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        """Any user by id (10013 when unknown)."""
        return _json(self.world.user(_snowflake_param(request, "user_id")).to_json())

    async def get_application(self, request: web.Request) -> web.StreamResponse:
        """The bot's application (discord.py reads it at login)."""
        bot = self.world.bot
        return _json(
            {
                "id": str(self.world.application_id),
                "name": bot.username,
                "icon": None,
                "description": "A bot running against the Spectacles Discord simulator.",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "flags_new": "0",
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "explicit_content_filter": 0,
                "eligible_oauth2_scopes": [],
                "owner": self.world.users[next(iter(self.world.guilds.values())).owner_id].to_json()
                if self.world.guilds
                else bot.to_json(),
                "team": None,
                "bot": bot.to_json(),
                "rpc_origins": [],
                "redirect_uris": [],
                "tags": [],
                "approximate_guild_count": len(self.world.guilds),
                "approximate_user_install_count": 0,
                "approximate_user_authorization_count": 0,
                **self.application_fields(),
            }
        )

    async def get_default_sounds(self, request: web.Request) -> web.StreamResponse:
        """Discord's built-in soundboard sounds (py-cord fetches them after READY)."""
        return _json([dict(sound) for sound in _DEFAULT_SOUNDS])

    # -- guilds -----------------------------------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.StreamResponse:
        """A guild (10004 when unknown)."""
        guild = self.world.guild(_snowflake_param(request, "guild_id"))
        data = guild.to_json()
        data["approximate_member_count"] = len(guild.members)
        return _json(data)

    async def modify_guild(self, request: web.Request) -> web.StreamResponse:
        """Change settings such as `verification_level`; fires GUILD_UPDATE."""
        guild_id = _snowflake_param(request, "guild_id")
        guild = self.actions.modify_guild(guild_id, await _body(request))
        return _json(guild.to_json())

    async def get_guild_channels(self, request: web.Request) -> web.StreamResponse:
        """The guild's channels."""
        guild = self.world.guild(_snowflake_param(request, "guild_id"))
        return _json([c.to_json() for c in guild.channels.values()])

    async def get_member(self, request: web.Request) -> web.StreamResponse:
        """A member (10007 when not in the guild)."""
        guild_id = _snowflake_param(request, "guild_id")
        member = self.world.member(guild_id, _snowflake_param(request, "user_id"))
        return _json(member.to_json())

    def _guard_owner(self, guild_id: int, user_id: int) -> None:
        if self.world.guild(guild_id).owner_id == user_id:
            error = SimulatorError("Missing Permissions")
            error.status, error.code = 403, 50013
            raise error

    async def modify_member(self, request: web.Request) -> web.StreamResponse:
        """Timeout (`communication_disabled_until`) or nick; fires GUILD_MEMBER_UPDATE."""
        guild_id = _snowflake_param(request, "guild_id")
        user_id = _snowflake_param(request, "user_id")
        body = await _body(request)
        self.world.member(guild_id, user_id)
        if "communication_disabled_until" in body:
            self._guard_owner(guild_id, user_id)
        member = self.actions.modify_member(guild_id, user_id, body)
        return _json(member.to_json())

    async def kick_member(self, request: web.Request) -> web.StreamResponse:
        """Kick; fires GUILD_MEMBER_REMOVE."""
        guild_id = _snowflake_param(request, "guild_id")
        user_id = _snowflake_param(request, "user_id")
        self.world.member(guild_id, user_id)
        self._guard_owner(guild_id, user_id)
        self.actions.kick(guild_id, user_id)
        return web.Response(status=204)

    async def get_ban(self, request: web.Request) -> web.StreamResponse:
        """A ban (10026 when there is none)."""
        guild = self.world.guild(_snowflake_param(request, "guild_id"))
        user_id = _snowflake_param(request, "user_id")
        ban = guild.bans.get(user_id)
        if ban is None:
            raise UnknownEntityError("ban", user_id)
        return _json(ban.to_json())

    async def ban_member(self, request: web.Request) -> web.StreamResponse:
        """Ban; fires GUILD_BAN_ADD (and GUILD_MEMBER_REMOVE for a member)."""
        guild_id = _snowflake_param(request, "guild_id")
        user_id = _snowflake_param(request, "user_id")
        body = await _body(request)
        seconds = body.get("delete_message_seconds")
        if seconds is None and "delete_message_days" in body:
            days = body["delete_message_days"]
            seconds = days * 86400 if isinstance(days, int) else -1
        seconds = 0 if seconds is None else seconds
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds <= 604800:
            raise ValidationError.field(
                "delete_message_seconds", "NUMBER_TYPE_MAX", "Must be between 0 and 604800."
            )
        self.world.guild(guild_id)
        self.world.user(user_id)
        self._guard_owner(guild_id, user_id)
        reason = _audit_reason(request)
        self.actions.ban(guild_id, user_id, reason=reason, delete_message_seconds=seconds)
        return web.Response(status=204)

    async def unban_member(self, request: web.Request) -> web.StreamResponse:
        """Unban; fires GUILD_BAN_REMOVE."""
        guild_id = _snowflake_param(request, "guild_id")
        self.actions.unban(guild_id, _snowflake_param(request, "user_id"))
        return web.Response(status=204)

    # -- channels and messages --------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        """A channel (10003 when unknown)."""
        return _json(self.world.channel(_snowflake_param(request, "channel_id")).to_json())

    async def get_messages(self, request: web.Request) -> web.StreamResponse:
        """Newest messages first, `limit` 1-100 (default 50)."""
        channel = self.world.channel(_snowflake_param(request, "channel_id"))
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 100:
            raise ValidationError.field("limit", "NUMBER_TYPE_MAX", "Must be between 1 and 100.")
        newest = list(channel.messages)[-limit:]
        return _json([m.to_json() for m in reversed(newest)])

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        """One message (10008 when unknown)."""
        channel = self.world.channel(_snowflake_param(request, "channel_id"))
        message_id = _snowflake_param(request, "message_id")
        message = channel.find(message_id)
        if message is None:
            raise UnknownEntityError("message", message_id)
        return _json(message.to_json())

    async def create_message(self, request: web.Request) -> web.StreamResponse:
        """Post as the bot; 50006 when empty, 50035 over 2000 chars; fires MESSAGE_CREATE."""
        channel_id = _snowflake_param(request, "channel_id")
        body = await _body(request)
        self.world.channel(channel_id)
        content = body.get("content") or ""
        if not isinstance(content, str):
            content = str(content)
        embeds = body.get("embeds") or []
        if not isinstance(embeds, list) or len(embeds) > 10:
            raise ValidationError.field("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer.")
        if not all(isinstance(embed, dict) for embed in embeds):
            raise ValidationError.field("embeds", "MODEL_TYPE_CONVERT", "Must be objects.")
        # Discord types every embed a bot posts as "rich".
        embeds = [{"type": "rich", **embed} for embed in embeds]
        reference = body.get("message_reference")
        if reference is not None and not isinstance(reference, dict):
            raise ValidationError.field(
                "message_reference", "MODEL_TYPE_CONVERT", "Must be an object."
            )
        message = self.actions.post_message(
            channel_id,
            self.world.bot.id,
            content,
            embeds=embeds,
            message_reference=reference,
            nonce=body.get("nonce"),
        )
        return _json(message.to_json())


def _audit_reason(request: web.Request) -> str | None:
    """Discord expects the audit-log reason URL-encoded and stores it decoded."""
    raw = request.headers.get("X-Audit-Log-Reason")
    return unquote(raw) if raw is not None else None
