"""RestClient: typed helpers for the Discord REST calls Spectacles workers make."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp

from spectacles.models import (
    AllowedMentions,
    ApplicationCommand,
    Channel,
    GatewayBot,
    Guild,
    Member,
    Message,
    PartialApplication,
    User,
    decode_model,
)

from ._guard import InvalidRequestGuard
from ._http import USER_AGENT, HTTPClient
from ._models import _Gateway
from ._ratelimit import RateLimiter
from ._route import Route

__all__ = ["RestClient"]

T = TypeVar("T")

#: Discord keeps at most a week of messages when banning.
_MAX_DELETE_MESSAGE_SECONDS: Final = 604_800


class RestClient:
    """Async Discord REST client for one bot token.

    ``async with RestClient(token) as rest: await rest.create_message(channel_id, "hi")``.
    The base URL comes from ``base_url``, else ``DISCORD_API_URL``, else Discord's v10 API;
    point it at ``spectacles-rest-proxy`` when several processes share the token. ``token``
    may be None only behind a proxy that adds it. Pass one ``ratelimiter`` (and
    ``invalid_request_guard``) to every client of a token in a process so they share limits.
    ``max_retries`` bounds 5xx/connection retries (backoff ``backoff_base`` doubling up to
    ``backoff_max``); ``max_ratelimit_retries`` bounds 429 retries, and a 429 asking to wait
    longer than ``max_ratelimit_wait`` seconds is raised as :class:`RateLimited` instead.
    ``proxy_auth`` is the REST proxy's shared secret (default: ``REST_PROXY_AUTH``), sent as
    ``X-Spectacles-Proxy-Auth`` to any base URL that is not Discord itself.
    """

    def __init__(
        self,
        token: str | None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        max_retries: int = 3,
        ratelimiter: RateLimiter | None = None,
        invalid_request_guard: InvalidRequestGuard | None = None,
        max_ratelimit_retries: int = 8,
        max_ratelimit_wait: float = 300.0,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        request_timeout: float = 30.0,
        user_agent: str = USER_AGENT,
        proxy_auth: str | None = None,
    ) -> None:
        self.http = HTTPClient(
            token,
            base_url=base_url,
            session=session,
            max_retries=max_retries,
            ratelimiter=ratelimiter,
            invalid_request_guard=invalid_request_guard,
            max_ratelimit_retries=max_ratelimit_retries,
            max_ratelimit_wait=max_ratelimit_wait,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            request_timeout=request_timeout,
            user_agent=user_agent,
            proxy_auth=proxy_auth,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if the client created it."""
        await self.http.close()

    async def request(
        self,
        route: Route,
        *,
        json: Any = None,
        reason: str | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> bytes:
        """Send any route (for calls without a helper); returns the raw 2xx body."""
        return await self.http.request(route, json=json, reason=reason, params=params)

    async def _fetch(self, type_: type[T], route: Route, **kwargs: Any) -> T:
        return decode_model(type_, await self.http.request(route, **kwargs))

    # -- messages -------------------------------------------------------------------------

    async def create_message(
        self,
        channel_id: int,
        content: str,
        *,
        reply_to: int | None = None,
        allowed_mentions: AllowedMentions | Mapping[str, Any] | None = None,
        embeds: Sequence[Mapping[str, Any]] | None = None,
    ) -> Message:
        """Post a message; ``reply_to`` makes it a reply to that message of the channel.

        Content rules (1..2000 characters unless embeds are sent) are left to Discord, which
        answers :class:`BadRequest` with code 50006 (empty) or 50035 (too long).
        """
        body: dict[str, Any] = {"content": content}
        if embeds:
            body["embeds"] = list(embeds)
        if allowed_mentions is not None:
            body["allowed_mentions"] = allowed_mentions
        if reply_to is not None:
            body["message_reference"] = {
                "message_id": str(reply_to),
                "channel_id": str(channel_id),
            }
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
        return await self._fetch(Message, route, json=body)

    # -- members --------------------------------------------------------------------------

    async def get_member(self, guild_id: int, user_id: int) -> Member:
        """Fetch a member of a guild (NotFound 10007 when not a member)."""
        route = Route(
            "GET", "/guilds/{guild_id}/members/{user_id}", guild_id=guild_id, user_id=user_id
        )
        return await self._fetch(Member, route)

    async def modify_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        communication_disabled_until: datetime | None,
        reason: str | None = None,
    ) -> Member:
        """Set (an aware datetime) or clear (None) a member's timeout."""
        until = None
        if communication_disabled_until is not None:
            if communication_disabled_until.tzinfo is None:
                raise ValueError(
                    "communication_disabled_until must be timezone-aware "
                    "(e.g. datetime.now(UTC) + timedelta(minutes=10))"
                )
            until = communication_disabled_until.isoformat()
        route = Route(
            "PATCH", "/guilds/{guild_id}/members/{user_id}", guild_id=guild_id, user_id=user_id
        )
        return await self._fetch(
            Member, route, json={"communication_disabled_until": until}, reason=reason
        )

    async def timeout_member(
        self, guild_id: int, user_id: int, until: datetime, *, reason: str | None = None
    ) -> Member:
        """Time a member out until ``until`` (Discord allows at most 28 days ahead)."""
        return await self.modify_member(
            guild_id, user_id, communication_disabled_until=until, reason=reason
        )

    async def kick_member(self, guild_id: int, user_id: int, *, reason: str | None = None) -> None:
        """Remove a member from the guild (they may rejoin)."""
        route = Route(
            "DELETE", "/guilds/{guild_id}/members/{user_id}", guild_id=guild_id, user_id=user_id
        )
        await self.http.request(route, reason=reason)

    async def ban_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        delete_message_seconds: int = 0,
        reason: str | None = None,
    ) -> None:
        """Ban a user, deleting their last ``delete_message_seconds`` of messages."""
        if not 0 <= delete_message_seconds <= _MAX_DELETE_MESSAGE_SECONDS:
            raise ValueError(
                f"delete_message_seconds must be 0..{_MAX_DELETE_MESSAGE_SECONDS}, "
                f"got {delete_message_seconds}"
            )
        route = Route(
            "PUT", "/guilds/{guild_id}/bans/{user_id}", guild_id=guild_id, user_id=user_id
        )
        await self.http.request(
            route, json={"delete_message_seconds": delete_message_seconds}, reason=reason
        )

    # -- guilds, channels, users ----------------------------------------------------------

    async def modify_guild(
        self,
        guild_id: int,
        *,
        verification_level: int | None = None,
        reason: str | None = None,
    ) -> Guild:
        """Change guild settings; only the given ones are sent."""
        body: dict[str, Any] = {}
        if verification_level is not None:
            if not 0 <= verification_level <= 4:
                raise ValueError(f"verification_level must be 0..4, got {verification_level}")
            body["verification_level"] = verification_level
        route = Route("PATCH", "/guilds/{guild_id}", guild_id=guild_id)
        return await self._fetch(Guild, route, json=body, reason=reason)

    async def get_guild(self, guild_id: int) -> Guild:
        """Fetch a guild."""
        return await self._fetch(Guild, Route("GET", "/guilds/{guild_id}", guild_id=guild_id))

    async def get_channel(self, channel_id: int) -> Channel:
        """Fetch a channel."""
        route = Route("GET", "/channels/{channel_id}", channel_id=channel_id)
        return await self._fetch(Channel, route)

    async def get_user(self, user_id: int) -> User:
        """Fetch any user by id."""
        return await self._fetch(User, Route("GET", "/users/{user_id}", user_id=user_id))

    async def get_current_user(self) -> User:
        """Fetch the bot's own user."""
        return await self._fetch(User, Route("GET", "/users/@me"))

    # -- gateway --------------------------------------------------------------------------

    async def get_gateway(self) -> str:
        """The gateway websocket URL (no authentication needed)."""
        return (await self._fetch(_Gateway, Route("GET", "/gateway"))).url

    async def get_gateway_bot(self) -> GatewayBot:
        """Gateway URL, recommended shard count and the IDENTIFY budget of this bot."""
        return await self._fetch(GatewayBot, Route("GET", "/gateway/bot"))

    # -- application commands -------------------------------------------------------------

    async def get_current_application(self) -> PartialApplication:
        """The bot's own application (its id is what command routes need)."""
        return await self._fetch(PartialApplication, Route("GET", "/applications/@me"))

    async def get_application_commands(
        self, application_id: int, *, guild_id: int | None = None
    ) -> list[ApplicationCommand]:
        """The registered commands, global or of one guild."""
        return await self._fetch(
            list[ApplicationCommand], _commands_route("GET", application_id, guild_id)
        )

    async def create_application_command(
        self,
        application_id: int,
        command: ApplicationCommand | Mapping[str, Any],
        *,
        guild_id: int | None = None,
    ) -> ApplicationCommand:
        """Create a command, or update the one with the same name (Discord upserts by name).

        Unlike the bulk overwrite (``PUT``), this never deletes other commands.
        """
        route = _commands_route("POST", application_id, guild_id)
        return await self._fetch(ApplicationCommand, route, json=command)

    # -- interactions (exempt from the global rate limit) ---------------------------------

    async def create_interaction_response(
        self, interaction_id: int, token: str, response: Mapping[str, Any]
    ) -> None:
        """Answer an interaction once, within 3 s: ``{"type": 4, "data": {...}}`` or a defer."""
        route = Route(
            "POST",
            "/interactions/{interaction_id}/{interaction_token}/callback",
            interaction_id=interaction_id,
            interaction_token=token,
        )
        await self.http.request(route, json=response)

    async def edit_original_response(
        self, application_id: int, token: str, message: Mapping[str, Any]
    ) -> Message:
        """Edit the interaction's first answer (fills in a deferred one)."""
        route = Route(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            webhook_id=application_id,
            webhook_token=token,
        )
        return await self._fetch(Message, route, json=message)

    async def create_followup_message(
        self, application_id: int, token: str, message: Mapping[str, Any]
    ) -> Message:
        """Send another message for an answered interaction (up to 15 minutes later)."""
        route = Route(
            "POST",
            "/webhooks/{webhook_id}/{webhook_token}",
            webhook_id=application_id,
            webhook_token=token,
        )
        return await self._fetch(Message, route, json=message)


def _commands_route(method: str, application_id: int, guild_id: int | None) -> Route:
    if guild_id is None:
        return Route(
            method, "/applications/{application_id}/commands", application_id=application_id
        )
    return Route(
        method,
        "/applications/{application_id}/guilds/{guild_id}/commands",
        application_id=application_id,
        guild_id=guild_id,
    )
