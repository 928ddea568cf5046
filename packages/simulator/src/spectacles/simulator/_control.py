"""The control API (`/_sim/...`): act as users, inspect the world and inject gateway faults."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from aiohttp import web

from spectacles.simulator._actions import Actions
from spectacles.simulator._errors import SimulatorError, UnknownEntityError
from spectacles.simulator._flood import Flooder
from spectacles.simulator._gateway import GatewayHub
from spectacles.simulator._stats import Stats

__all__ = ["CONTROL_PREFIX", "ControlApi"]

CONTROL_PREFIX: Final = "/_sim"
MAX_JOINS: Final = 10_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_decode = msgspec.json.Decoder().decode


class ControlError(SimulatorError):
    """A control API request that cannot be served (404 when nothing matched)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def _int_param(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit():
        raise ControlError(f"{name} must be a number, got {raw!r}")
    return int(raw)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = _decode(raw)
    except msgspec.DecodeError as error:
        raise ControlError(f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ControlError("the body must be a JSON object")
    return data


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ControlError(f"{key} must be a number between {low} and {high}, got {value!r}")
    return float(value)


def _flag(request: web.Request, key: str, default: bool) -> bool:
    raw = request.query.get(key)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ControlError(f"{key} must be true or false, got {raw!r}")


class ControlApi:
    """Registers `/_sim/...` routes."""

    def __init__(
        self, actions: Actions, hub: GatewayHub, flooder: Flooder, stats: Stats, seed: int
    ) -> None:
        self.actions = actions
        self.world = actions.world
        self.hub = hub
        self.flooder = flooder
        self.stats = stats
        self._rng = random.Random(seed + 1)

    def register(self, app: web.Application) -> None:
        """Add every control route."""
        p = CONTROL_PREFIX
        routes: list[tuple[str, str, Handler]] = [
            ("GET", p, self.index),
            ("GET", p + "/guilds", self.list_guilds),
            ("GET", p + "/guilds/{guild_id}", self.get_guild),
            ("POST", p + "/guilds/{guild_id}/channels/{channel_id}/messages", self.post_message),
            ("GET", p + "/channels/{channel_id}/messages", self.list_messages),
            ("POST", p + "/guilds/{guild_id}/members", self.join_members),
            ("POST", p + "/shards/{shard_id}/reconnect", self.reconnect),
            ("POST", p + "/shards/{shard_id}/invalidate", self.invalidate),
            ("POST", p + "/shards/{shard_id}/close", self.close),
            ("POST", p + "/shards/{shard_id}/drop", self.drop),
            ("POST", p + "/shards/{shard_id}/stall", self.stall),
            ("POST", p + "/flood", self.flood),
            ("GET", p + "/stats", self.get_stats),
            ("POST", p + "/reset-stats", self.reset_stats),
            ("GET", p + "/rest-log", self.rest_log),
            ("GET", p + "/sessions", self.list_sessions),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._wrap(handler))

    @staticmethod
    def _wrap(handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except SimulatorError as error:
                return _json(error.body(), error.status)

        return handle

    async def index(self, request: web.Request) -> web.StreamResponse:
        """What the control API offers."""
        return _json(
            {
                "guilds": "GET /_sim/guilds, GET /_sim/guilds/{gid}",
                "messages": "POST /_sim/guilds/{gid}/channels/{cid}/messages, "
                "GET /_sim/channels/{cid}/messages",
                "joins": "POST /_sim/guilds/{gid}/members",
                "faults": "POST /_sim/shards/{sid}/reconnect|invalidate|close|drop|stall",
                "flood": "POST /_sim/flood",
                "observe": "GET /_sim/stats, POST /_sim/reset-stats, GET /_sim/rest-log, "
                "GET /_sim/sessions",
            }
        )

    # -- world ------------------------------------------------------------------------------

    async def list_guilds(self, request: web.Request) -> web.StreamResponse:
        """Every guild: ids, channels, verification level, shard."""
        return _json([self.actions.guild_summary(g) for g in self.world.guilds.values()])

    async def get_guild(self, request: web.Request) -> web.StreamResponse:
        """One guild with members (and account ages), bans and timeouts."""
        guild = self.world.guild(_int_param(request, "guild_id"))
        return _json(self.actions.guild_detail(guild))

    async def post_message(self, request: web.Request) -> web.StreamResponse:
        """A user says something: MESSAGE_CREATE."""
        guild_id = _int_param(request, "guild_id")
        channel_id = _int_param(request, "channel_id")
        body = await _body(request)
        guild = self.world.guild(guild_id)
        if channel_id not in guild.channels:
            raise UnknownEntityError("channel", channel_id)
        content = body.get("content", "")
        if not isinstance(content, str):
            raise ControlError("content must be a string")
        raw_author = body.get("author_id")
        if raw_author is None:
            author_id = self.world.random_member(guild_id, rng=self._rng).user.id
        else:
            try:
                author_id = int(raw_author)
            except (TypeError, ValueError):
                raise ControlError(f"author_id must be a snowflake, got {raw_author!r}") from None
        message = self.actions.post_message(
            channel_id, author_id, content, embeds=body.get("embeds") or None
        )
        data = self.actions.message_event(message)
        return _json(data)

    async def list_messages(self, request: web.Request) -> web.StreamResponse:
        """Every stored message of the channel, oldest first (`?after=ID` for only newer ones)."""
        channel = self.world.channel(_int_param(request, "channel_id"))
        after_raw = request.query.get("after", "0")
        if not after_raw.isdigit():
            raise ControlError(f"after must be a message id, got {after_raw!r}")
        after = int(after_raw)
        return _json([m.to_json() for m in channel.messages if m.id > after])

    async def join_members(self, request: web.Request) -> web.StreamResponse:
        """`count` new accounts aged `account_age_days` join, `interval_ms` apart."""
        guild_id = _int_param(request, "guild_id")
        self.world.guild(guild_id)
        body = await _body(request)
        count = int(_number(body, "count", 1, 1, MAX_JOINS))
        interval = _number(body, "interval_ms", 0, 0, 3_600_000) / 1000
        age = _number(body, "account_age_days", 1.0, 0, 10_000)
        name = body.get("name_prefix")
        if name is not None and not isinstance(name, str):
            raise ControlError("name_prefix must be a string")
        wait = bool(body.get("wait", interval == 0))
        if interval == 0 or wait:
            ids = await self._joins(guild_id, count, interval, age, name)
            return _json({"guild_id": str(guild_id), "joined": [str(i) for i in ids]})
        self.hub.spawn(self._joins(guild_id, count, interval, age, name))
        return _json(
            {"guild_id": str(guild_id), "scheduled": count, "interval_ms": interval * 1000}, 202
        )

    async def _joins(
        self, guild_id: int, count: int, interval: float, age: float, name: str | None
    ) -> list[int]:
        ids = []
        for index in range(count):
            if index and interval:
                await asyncio.sleep(interval)
            member = self.actions.join(guild_id, age, name=name)
            ids.append(member.user.id)
        return ids

    # -- faults -----------------------------------------------------------------------------

    def _affected(self, shard_id: int, count: int, action: str) -> web.Response:
        if count == 0:
            raise ControlError(f"no live connection on shard {shard_id} to {action}", 404)
        return _json({"shard": shard_id, "connections": count, "action": action})

    async def reconnect(self, request: web.Request) -> web.StreamResponse:
        """Op 7 RECONNECT."""
        shard_id = _int_param(request, "shard_id")
        return self._affected(shard_id, self.hub.send_reconnect(shard_id), "reconnect")

    async def invalidate(self, request: web.Request) -> web.StreamResponse:
        """Op 9 INVALID_SESSION with `?resumable=true|false` (default false)."""
        shard_id = _int_param(request, "shard_id")
        resumable = _flag(request, "resumable", False)
        count = self.hub.send_invalid_session(shard_id, resumable)
        return self._affected(shard_id, count, "invalidate")

    async def close(self, request: web.Request) -> web.StreamResponse:
        """Close with `?code=N` (default 4000)."""
        shard_id = _int_param(request, "shard_id")
        raw = request.query.get("code", "4000")
        if not raw.isdigit() or not (1000 <= int(raw) <= 4999) or int(raw) in (1005, 1006):
            raise ControlError(f"code must be a websocket close code 1000-4999, got {raw!r}")
        reason = request.query.get("reason", "Closed by the simulator control API.")
        count = await self.hub.close_shard(shard_id, int(raw), reason)
        return self._affected(shard_id, count, "close")

    async def drop(self, request: web.Request) -> web.StreamResponse:
        """Cut the TCP connection without a close frame."""
        shard_id = _int_param(request, "shard_id")
        return self._affected(shard_id, self.hub.drop_shard(shard_id), "drop")

    async def stall(self, request: web.Request) -> web.StreamResponse:
        """Stop ACKing heartbeats (`?stalled=false` to start again)."""
        shard_id = _int_param(request, "shard_id")
        stalled = _flag(request, "stalled", True)
        return self._affected(shard_id, self.hub.stall_shard(shard_id, stalled), "stall")

    async def flood(self, request: web.Request) -> web.StreamResponse:
        """Send `count` MESSAGE_CREATEs to each live session (of `shard`), at `rate` per second."""
        body = await _body(request)
        event = body.get("event", "MESSAGE_CREATE")
        count = int(_number(body, "count", 1000, 1, 100_000_000))
        rate_raw = body.get("rate")
        rate = None if rate_raw is None else _number(body, "rate", 0, 1, 10_000_000)
        shard_raw = body.get("shard")
        shard = None if shard_raw is None else int(_number(body, "shard", 0, 0, 1_000_000))
        if not isinstance(event, str):
            raise ControlError("event must be a string such as MESSAGE_CREATE")
        self.flooder.check_event(event)
        targets = len(self.flooder.targets(shard))
        if not targets:
            where = "any shard" if shard is None else f"shard {shard}"
            raise ControlError(f"no live session with GUILD_MESSAGES on {where} to flood", 404)
        coro = self.flooder.flood(count, rate=rate, shard=shard, event=event)
        if body.get("wait", False):
            return _json((await coro).to_json())
        self.hub.spawn(coro)
        return _json({"scheduled": count, "sessions": targets}, 202)

    # -- observation ------------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.StreamResponse:
        """Counters: dispatches per shard, connections, identifies, resumes, 429s, ..."""
        data = self.stats.to_json()
        data["sessions"] = len(self.hub.sessions)
        return _json(data)

    async def reset_stats(self, request: web.Request) -> web.StreamResponse:
        """Zero the counters and the REST log."""
        self.stats.reset()
        return _json(self.stats.to_json())

    async def rest_log(self, request: web.Request) -> web.StreamResponse:
        """Every REST call the bot made (method, path, status), oldest first."""
        return _json([call.to_json() for call in self.stats.rest_log])

    async def list_sessions(self, request: web.Request) -> web.StreamResponse:
        """Gateway sessions, live or waiting for a RESUME."""
        return _json(
            [
                {
                    "session_id": s.session_id,
                    "shard": [s.shard_id, s.num_shards],
                    "seq": s.seq,
                    "intents": s.intents,
                    "connected": s.connection is not None,
                    "presence": s.presence,
                    "presence_updates": s.presence_updates,
                }
                for s in self.hub.sessions.values()
            ]
        )
