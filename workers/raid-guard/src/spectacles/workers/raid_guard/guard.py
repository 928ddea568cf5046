"""Raid-guard's reactions, and the one way a raid ends: a restore order delivered later.

Detection is the pure ``RaidDetector``. At a raid this module reads the verification level, parks
a ``RestoreOrder`` with ``publish_later`` (durable, so it outlives this replica), then raises the
level, alerts and acts on young accounts. The order comes back every ``tick`` to whichever replica
is active then; once the guild has been quiet for the cooldown it ends the raid and restores the
level. A REST call that still fails after the client's retries is logged and counted, never raised:
re-running the handler would repeat the actions that did succeed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from prometheus_client import Counter

from spectacles.broker import BrokerError, DeadLetter, publish_later, scheduled
from spectacles.models import AllowedMentions, Channel, GuildMemberAdd, Snowflake, decode_model
from spectacles.rest import Forbidden, NotFound, RestError, Route
from spectacles.worker import Context, Worker, WorkerSettings
from spectacles.workers.raid_guard.config import RaidAction, RaidConfig
from spectacles.workers.raid_guard.detector import Joiner, Raid, RaidDetector, RaidStarted

HIGH: Final = 3
"""Verification level HIGH: members must be registered for 10 minutes before talking."""
LEVELS: Final = {0: "NONE", 1: "LOW", 2: "MEDIUM", 3: "HIGH", 4: "VERY_HIGH"}
RESTORE: Final = "raid-guard.restore"
"""Routing key (on the events exchange) of restore orders; the worker's queue is bound to it."""
MAX_LISTED: Final = 15
"""Joiners named in an alert: it stays under Discord's 2,000 characters however big the raid."""
VERBS: Final = {"alert": "alert only", "kick": "kicked", "ban": "banned"}
_P: Final = "spectacles_raid_guard"
RAIDS: Final = Counter(f"{_P}_raids_detected_total", "Raids detected (alerted).")
ADOPTED: Final = Counter(f"{_P}_raids_adopted_total", "Raids taken over after a failover.")
LEVEL: Final = Counter(f"{_P}_verification_changes_total", "raised|restored|left", ("change",))
FAILED: Final = Counter(f"{_P}_rest_failures_total", "Failed after retries.", ("operation",))


class RestoreOrder(msgspec.Struct, frozen=True):
    """End ``guild_id``'s raid once it was quiet for the cooldown after ``last_join``.

    ``previous_level`` is restored if the level is still HIGH (ours); None when raid-guard did
    not raise it. ``last_join`` is wall-clock time, so any replica can judge it.
    """

    guild_id: str
    raid_id: str
    previous_level: int | None
    last_join: float = 0.0  # orders parked by earlier versions have none: restored at once


def build_worker(config: RaidConfig, settings: WorkerSettings | None) -> tuple[Worker, RaidGuard]:
    """The raid-guard worker: single active consumer, so a guild's joins are never split."""
    worker = Worker("raid-guard", settings=settings, single_active_consumer=True)
    guard = RaidGuard(config, worker)
    worker.on("GUILD_MEMBER_ADD")(guard.on_member_add)
    worker.on(RESTORE, custom=True, model=RestoreOrder)(guard.on_restore)
    return worker, guard


def joiner_from_event(member: GuildMemberAdd) -> Joiner:
    """A ``Joiner`` from GUILD_MEMBER_ADD; the account's creation time comes from its id."""
    joined, user = member.joined_at or datetime.now(UTC), member.user
    joined = joined if joined.tzinfo else joined.replace(tzinfo=UTC)
    created, name = Snowflake(user.id).created_at, user.global_name or user.username
    return Joiner(int(member.guild_id), int(user.id), joined, created, name)


def format_age(age: timedelta) -> str:
    """``3 h``, ``412 d``: precise for young accounts, short for old ones."""
    return f"{age.total_seconds() / 3600:.0f} h" if age.days < 2 else f"{age.days} d"


def raid_alert(raid: Raid, config: RaidConfig, *, verification: str, young: list[Joiner]) -> str:
    """The alert: join count and window, what was done, and the joiners' account ages."""
    joiners, span = sorted(raid.joiners, key=lambda j: j.account_age), raid.span.total_seconds()
    verb = VERBS.get(config.action, f"timed out for {config.timeout_minutes} min")
    listed = [f"- <@{j.user_id}> {j.name}: {format_age(j.account_age)} old" for j in joiners]
    more = [f"... and {len(joiners) - MAX_LISTED} more"] if len(joiners) > MAX_LISTED else []
    window = f"threshold: {config.join_threshold} in {config.window_seconds:g} s"
    head = f"\N{POLICE CARS REVOLVING LIGHT} **Raid detected**: {len(joiners)} members joined"
    head += f" within {span:.1f} s ({window})."
    action = f"Action: {verb} ({len(young)} of {len(joiners)} accounts younger than"
    action += f" {config.min_account_age_days:g} days so far; later joiners of this raid too)."
    return "\n".join([head, verification, action, "Newest accounts:", *listed[:MAX_LISTED], *more])


@dataclass
class RaidGuard:
    """Per-process raid state; the worker's queue is single-active-consumer (see the README)."""

    config: RaidConfig
    worker: Worker

    def __post_init__(self) -> None:
        window = timedelta(seconds=self.config.window_seconds)
        self.detector = RaidDetector(threshold=self.config.join_threshold, window=window)
        # How often a parked order comes back to see whether the raid is over: the level is
        # restored between 1 and 1.25 cooldowns after the last join.
        self.tick = self.config.cooldown_seconds / 4

    def is_young(self, joiner: Joiner) -> bool:
        """Was the account younger than the configured minimum age when it joined?"""
        return joiner.account_age < timedelta(days=self.config.min_account_age_days)

    async def on_member_add(self, member: GuildMemberAdd, ctx: Context) -> None:
        """Feed one join to the detector; react to a raid starting or going on."""
        joiner = joiner_from_event(member)
        verdict = self.detector.observe(joiner, time.time())
        young = [joiner] if verdict and self.is_young(joiner) else []
        if isinstance(verdict, RaidStarted):
            young = [j for j in verdict.raid.joiners if self.is_young(j)]
            if not await self._adopted(verdict.raid, ctx):
                await self._start(verdict.raid, young, ctx)
        if self.config.action is not RaidAction.ALERT:
            await asyncio.gather(*(self._act(j, ctx) for j in young))

    async def on_restore(self, order: RestoreOrder, ctx: Context) -> None:
        """A parked order came back: park it again while joins go on, else end the raid."""
        raid = self.detector.raid(int(order.guild_id))
        last_join = max(order.last_join, raid.last_seen if raid else 0.0)
        if time.time() - last_join < self.config.cooldown_seconds:
            await self._park(msgspec.structs.replace(order, last_join=last_join), self.tick)
            return
        if self.detector.end(int(order.guild_id)) is not None:
            ctx.log.info("raid over", raid_id=order.raid_id)
        if order.previous_level is not None:
            await self._restore(order, ctx)

    async def _adopted(self, raid: Raid, ctx: Context) -> bool:
        """Did another replica start this raid before a failover (its order is still parked)?"""
        exchange = self.worker.broker.topology.events_exchange
        try:
            waiting = await scheduled(self.worker.broker, exchange, RESTORE, delay=self.tick)
        except BrokerError as exc:  # a second alert is better than a missed raid
            FAILED.labels("find_restore").inc()
            ctx.log.warning("could not look for a raid in progress", error=str(exc))
            return False
        if found := any(o.headers.get("guild_id") == str(raid.guild_id) for o in waiting):
            ADOPTED.inc()
            ctx.log.warning("raid in progress since before a failover: taken over, no new alert")
        return found

    async def _start(self, raid: Raid, young: list[Joiner], ctx: Context) -> None:
        RAIDS.inc()
        ctx.log.warning("raid detected", joins=len(raid.joiners), span=str(raid.span))
        guild = await self._call("get_guild", ctx.rest.get_guild(raid.guild_id), ctx)
        level = guild.verification_level if guild else None
        ours = level if level is not None and level < HIGH else None
        order = RestoreOrder(str(raid.guild_id), uuid.uuid4().hex, ours, raid.last_seen)
        # Parked before the level is raised: never a raised level without an order to restore it.
        try:
            await self._park(order, self.tick)
        except BrokerError as exc:
            FAILED.labels("park_restore").inc()
            ctx.log.error("could not park the restore: level left as is", error=str(exc))
            self.detector.end(raid.guild_id)
            level = None
        verification = await self._lock_down(raid.guild_id, level, ctx)
        configured = self.config.modlog_channels.get(raid.guild_id, self.config.modlog_channel_id)
        channel = configured or await self._by_name(raid, ctx)
        channel = channel or (int(guild.system_channel_id or 0) if guild else None)
        if not channel:
            FAILED.labels("alert_no_channel").inc()
            ctx.log.error("raid alert has no channel: set RAID_MODLOG_CHANNEL_ID or add #mod-log")
            return
        text = raid_alert(raid, self.config, verification=verification, young=young)
        post = ctx.rest.create_message(channel, text, allowed_mentions=AllowedMentions())
        await self._call("create_message", post, ctx)  # mentions listed, nobody pinged

    async def _by_name(self, raid: Raid, ctx: Context) -> int | None:
        """The guild's text channel called ``RAID_MODLOG_CHANNEL_NAME``, if there is one."""
        route = Route("GET", "/guilds/{guild_id}/channels", guild_id=raid.guild_id)
        raw = await self._call("get_guild_channels", ctx.rest.request(route), ctx)
        channels = decode_model(list[Channel], raw) if raw is not None else []
        name = self.config.modlog_channel_name
        return next((int(c.id) for c in channels if c.type == 0 and c.name == name), None)

    async def _lock_down(self, guild_id: int, level: int | None, ctx: Context) -> str:
        """Raise verification to HIGH; returns the alert's line about it."""
        name = LEVELS.get(level, str(level)) if level is not None else "unknown"
        if level is None or level >= HIGH:
            return f"Verification level left as is ({name})."
        reason = "raid-guard: raid detected"
        call = ctx.rest.modify_guild(guild_id, verification_level=HIGH, reason=reason)
        if await self._call("modify_guild", call, ctx) is None:
            return f"Could not raise the verification level (still {name}; see the logs)."
        LEVEL.labels("raised").inc()
        return f"Verification level raised to HIGH (was {name}) until the raid is over."

    async def _restore(self, order: RestoreOrder, ctx: Context) -> None:
        """Set the previous level back if it is still ours: a moderator's change wins."""
        guild_id, level = int(order.guild_id), order.previous_level
        try:
            if (await ctx.rest.get_guild(guild_id)).verification_level != HIGH:
                LEVEL.labels("left").inc()
                ctx.log.info("verification level changed since the raid: left as is")
                return
            reason = "raid-guard: raid over"
            await ctx.rest.modify_guild(guild_id, verification_level=level, reason=reason)
        except RestError as exc:  # tried again until Discord takes it, or the level is not ours
            FAILED.labels("restore").inc()
            if isinstance(exc, Forbidden | NotFound):  # retrying cannot help: a moderator's turn
                raise DeadLetter(f"restoring the verification level refused: {exc}") from None
            ctx.log.warning("restoring the verification level failed; will retry", error=str(exc))
            await self._park(order, self.config.restore_retry_seconds)
            return
        LEVEL.labels("restored").inc()
        ctx.log.info("verification level restored", to=LEVELS.get(level or 0))

    async def _park(self, order: RestoreOrder, delay: float) -> None:
        broker, body = self.worker.broker, msgspec.json.encode(order)
        exchange, headers = broker.topology.events_exchange, {"guild_id": order.guild_id}
        await publish_later(broker, exchange, RESTORE, body, delay=delay, headers=headers)

    async def _act(self, joiner: Joiner, ctx: Context) -> None:
        action, guild_id, user_id = self.config.action, joiner.guild_id, joiner.user_id
        days = joiner.account_age.total_seconds() / 86400
        reason = f"raid-guard: joined during a raid with an account {days:.1f} days old"
        call: Awaitable[object]
        if action is RaidAction.TIMEOUT:
            until = datetime.now(UTC) + timedelta(minutes=self.config.timeout_minutes)
            call = ctx.rest.timeout_member(guild_id, user_id, until, reason=reason)
        else:
            kick_or_ban = ctx.rest.kick_member if action is RaidAction.KICK else ctx.rest.ban_member
            call = kick_or_ban(guild_id, user_id, reason=reason)
        await self._call(action.value, call, ctx)

    async def _call(self, operation: str, call: Awaitable[Any], ctx: Context) -> Any:
        """Await a REST call; a failure is logged and counted, and gives None instead of raising."""
        try:
            return await call
        except RestError as exc:
            FAILED.labels(operation).inc()
            ctx.log.error("REST call failed after retries", operation=operation, error=str(exc))
            return None
