"""Raid-guard's reactions: lock the guild down, alert the moderators, act on young accounts.

Detection is the pure ``RaidDetector``; this module adds the Discord side effects and the end
of a raid: a durable ``RestoreOrder`` parked in RabbitMQ (see ``restore.py``), or, when RabbitMQ
cannot take it, an in-process timer. A REST call that still fails after the client's own retries
is logged and counted, never raised: re-running the handler would only repeat the actions that
did succeed (the restore is the exception: it is parked again and retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

import msgspec
import structlog

from spectacles.broker import DeadLetter
from spectacles.models import (
    AllowedMentions,
    Channel,
    DecodeError,
    Guild,
    GuildMemberAdd,
    Snowflake,
    decode_model,
)
from spectacles.observability import get_logger
from spectacles.rest import RestClient, RestError, Route
from spectacles.workers.raid_guard import metrics
from spectacles.workers.raid_guard.alert import VERIFICATION_NAMES, raid_alert
from spectacles.workers.raid_guard.config import RaidAction, RaidConfig
from spectacles.workers.raid_guard.detector import (
    Joiner,
    Raid,
    RaidContinues,
    RaidDetector,
    RaidStarted,
)
from spectacles.workers.raid_guard.restore import (
    RestoreLookupFailed,
    RestoreNotScheduled,
    RestoreOrder,
    RestoreScheduler,
)

__all__ = ["HIGH", "RaidGuard", "joiner_from_event"]

T = TypeVar("T")

HIGH: Final = 3
"""Verification level HIGH: members must be registered for 10 minutes before talking."""
GUILD_TEXT: Final = 0
MAX_RESTORE_TRIES: Final = 5
"""A restore still failing at Discord after this many tries is dead-lettered (and logged)."""


def joiner_from_event(member: GuildMemberAdd, received_at: datetime | None = None) -> Joiner:
    """A ``Joiner`` from GUILD_MEMBER_ADD; the account's creation time comes from its id."""
    user = member.user
    joined_at = member.joined_at or received_at or datetime.now(UTC)
    if joined_at.tzinfo is None:
        joined_at = joined_at.replace(tzinfo=UTC)
    return Joiner(
        guild_id=int(member.guild_id),
        user_id=int(user.id),
        joined_at=joined_at,
        account_created_at=Snowflake(user.id).created_at,
        name=user.global_name or user.username,
    )


class RaidGuard:
    """Per-process raid state and reactions; one instance per worker process.

    Exactly one process may hold it for a given guild at a time — the worker runs on a
    single-active-consumer queue for that reason (see the README).
    """

    def __init__(
        self,
        config: RaidConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        log: structlog.stdlib.BoundLogger | None = None,
    ) -> None:
        self.config = config
        self.detector = RaidDetector(
            threshold=config.join_threshold, window=timedelta(seconds=config.window_seconds)
        )
        self._clock = clock
        self._log = log or get_logger("spectacles.raid_guard")
        self._scheduler: RestoreScheduler | None = None
        # Only for raids whose end could not be parked in RabbitMQ (the in-process fallback).
        self._previous_level: dict[int, int] = {}
        self._watchers: dict[int, asyncio.Task[None]] = {}

    def attach(self, scheduler: RestoreScheduler) -> None:
        """Park raid ends in RabbitMQ from now on (called at worker start, once connected)."""
        self._scheduler = scheduler

    async def on_member_add(
        self,
        member: GuildMemberAdd,
        rest: RestClient,
        log: structlog.stdlib.BoundLogger | None = None,
    ) -> None:
        """Feed one join to the detector and react to what it says."""
        log = log or self._log
        joiner = joiner_from_event(member)
        verdict = self.detector.observe(joiner, self._clock())
        if isinstance(verdict, RaidStarted):
            if await self._adopted(verdict.raid, log):
                await asyncio.gather(
                    *(self._act(j, rest, log) for j in verdict.raid.joiners if self.is_young(j))
                )
            else:
                await self._start_raid(verdict.raid, rest, log)
        elif isinstance(verdict, RaidContinues) and self.is_young(joiner):
            await self._act(joiner, rest, log)

    def is_young(self, joiner: Joiner) -> bool:
        """Is the account younger than the configured minimum age (at join time)?"""
        return joiner.account_age < timedelta(days=self.config.min_account_age_days)

    async def on_restore(
        self,
        order: RestoreOrder,
        rest: RestClient,
        log: structlog.stdlib.BoundLogger | None = None,
    ) -> None:
        """A parked order came back: end the raid, or park it again while joins still arrive.

        The level is restored only if it is still the one raid-guard set (HIGH): a moderator who
        changed it since then had the last word. Any replica can run this, the one that raised
        the level or the standby that took over.
        """
        log = (log or self._log).bind(guild_id=order.guild_id, raid_id=order.raid_id)
        guild_id = int(order.guild_id)
        raid = self.detector.raid(guild_id)
        if raid is not None:
            remaining = raid.last_seen + self.config.cooldown_seconds - self._clock()
            if remaining > 0:
                await self._parked().schedule(order, remaining)
                log.debug("raid goes on: restore postponed", in_s=round(remaining, 3))
                return
            self._end_raid(guild_id, log)
        if order.previous_level is not None:
            await self._restore(order, guild_id, rest, log)

    async def close(self) -> None:
        """Stop the fallback timers (on shutdown); their levels stay raised — see the README."""
        watchers, self._watchers = list(self._watchers.values()), {}
        for task in watchers:
            task.cancel()
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for guild_id, level in self._previous_level.items():
            self._log.warning(
                "shutting down during a raid: verification level stays raised",
                guild_id=str(guild_id),
                restore_to=VERIFICATION_NAMES.get(level, level),
            )

    async def wait_idle(self) -> None:
        """Wait until every ongoing raid has ended (tests, drain)."""
        while self._watchers or self.detector.raiding_guilds():
            if self._watchers:
                await asyncio.gather(*self._watchers.values(), return_exceptions=True)
            else:
                await asyncio.sleep(0.05)

    # -- a raid -------------------------------------------------------------------------------

    async def _adopted(self, raid: Raid, log: structlog.stdlib.BoundLogger) -> bool:
        """Is this "new" raid one another replica started (its restore order still parked)?

        After a failover this replica's window is empty; the next burst of the same raid must
        not alert, raise or park again. The parked order marks the raid: found, the raid is
        taken over as it is (the detector already holds it) and that order ends it. When the
        delay queue cannot be searched, the raid is treated as new: a duplicate alert is better
        than a missed raid.
        """
        if self._scheduler is None:
            return False
        log = log.bind(guild_id=str(raid.guild_id))
        try:
            order = await self._scheduler.pending(str(raid.guild_id))
        except RestoreLookupFailed as exc:
            metrics.REST_FAILURES.labels("find_restore").inc()
            log.warning(
                "could not check for a raid already in progress: treating it as a new raid "
                "(a second alert is possible)",
                error=str(exc),
            )
            return False
        if order is None:
            return False
        metrics.RAIDS_ADOPTED.inc()
        metrics.ACTIVE_RAIDS.inc()
        log.warning(
            "raid already in progress (started before a failover): taken over, no new alert",
            raid_id=order.raid_id,
            joins=len(raid.joiners),
        )
        return True

    async def _start_raid(
        self, raid: Raid, rest: RestClient, log: structlog.stdlib.BoundLogger
    ) -> None:
        guild_id = raid.guild_id
        metrics.RAIDS_DETECTED.inc()
        metrics.ACTIVE_RAIDS.inc()
        log = log.bind(guild_id=str(guild_id))
        log.warning("raid detected", joins=len(raid.joiners), span_s=raid.span.total_seconds())
        guild = await self._call("get_guild", rest.get_guild(guild_id), log)
        level = guild.verification_level if guild else None
        # The end is parked *before* the level is raised: a crash in between leaves an order
        # that finds the level not ours and does nothing, never a raised level without an order.
        order = RestoreOrder(
            guild_id=str(guild_id),
            raid_id=uuid.uuid4().hex,
            previous_level=level if level is not None and level < HIGH else None,
            set_level=HIGH,
        )
        parked = await self._park_end(order, log)
        if not parked:
            self._watchers[guild_id] = asyncio.create_task(
                self._end_after_cooldown(guild_id, rest, log), name=f"raid-cooldown:{guild_id}"
            )
        verification = await self._lock_down(guild_id, level, rest, log, remember=not parked)
        young = [j for j in raid.joiners if self.is_young(j)]
        channel_id = await self._alert_channel(guild_id, guild, rest, log)
        if channel_id is None:
            metrics.REST_FAILURES.labels("alert_no_channel").inc()
            log.error(
                "raid alert has no channel: set RAID_MODLOG_CHANNEL_ID or RAID_MODLOG_CHANNELS, "
                "create a #mod-log channel, or give the guild a system channel"
            )
        else:
            text = raid_alert(raid, self.config, verification=verification, young=young)
            await self._call(
                "create_message",
                rest.create_message(channel_id, text, allowed_mentions=AllowedMentions()),
                log,
            )
        await asyncio.gather(*(self._act(j, rest, log) for j in young))

    async def _alert_channel(
        self,
        guild_id: int,
        guild: Guild | None,
        rest: RestClient,
        log: structlog.stdlib.BoundLogger,
    ) -> int | None:
        """Configured channel, else the guild's #mod-log, else its system channel."""
        configured = self.config.modlog_channel_for(guild_id)
        if configured is not None:
            return configured
        route = Route("GET", "/guilds/{guild_id}/channels", guild_id=guild_id)
        raw = await self._call("get_guild_channels", rest.request(route), log)
        if raw is not None:
            try:
                channels = decode_model(list[Channel], raw)
            except DecodeError as exc:
                log.error("unexpected channel list from Discord", error=str(exc))
            else:
                for channel in channels:
                    if (
                        channel.type == GUILD_TEXT
                        and channel.name == self.config.modlog_channel_name
                    ):
                        return int(channel.id)
        return int(guild.system_channel_id) if guild and guild.system_channel_id else None

    async def _park_end(self, order: RestoreOrder, log: structlog.stdlib.BoundLogger) -> bool:
        """Park the raid's end in RabbitMQ; False means the in-process timer must do it."""
        if self._scheduler is None:
            return False
        try:
            await self._scheduler.schedule(order, self.config.cooldown_seconds)
        except RestoreNotScheduled as exc:
            metrics.REST_FAILURES.labels("park_restore").inc()
            log.error(
                "could not park the restore in RabbitMQ: an in-process timer restores instead "
                "(lost if this replica stops during the raid)",
                error=str(exc),
            )
            return False
        return True

    def _parked(self) -> RestoreScheduler:
        if self._scheduler is None:
            raise RuntimeError("a restore order arrived before RaidGuard.attach(scheduler)")
        return self._scheduler

    def _end_raid(self, guild_id: int, log: structlog.stdlib.BoundLogger) -> None:
        ended = self.detector.end(guild_id)
        if ended is not None:
            metrics.ACTIVE_RAIDS.dec()
            log.info("raid over", total_joins=ended.total_joins)

    async def _restore(
        self,
        order: RestoreOrder,
        guild_id: int,
        rest: RestClient,
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        assert order.previous_level is not None
        try:
            guild = await rest.get_guild(guild_id)
            if guild.verification_level != order.set_level:
                metrics.VERIFICATION_CHANGES.labels("left").inc()
                log.info(
                    "verification level changed since the raid: left as is",
                    level=VERIFICATION_NAMES.get(guild.verification_level),
                    not_restored_to=VERIFICATION_NAMES.get(order.previous_level),
                )
                return
            await rest.modify_guild(
                guild_id, verification_level=order.previous_level, reason="raid-guard: raid over"
            )
        except RestError as exc:
            metrics.REST_FAILURES.labels("restore").inc()
            tries = order.failures + 1
            if tries >= MAX_RESTORE_TRIES:
                log.error("giving up restoring the verification level", tries=tries, error=str(exc))
                raise DeadLetter(
                    f"restoring verification of guild {guild_id} to {order.previous_level} "
                    f"failed {tries} times: {exc}"
                ) from exc
            log.warning(
                "restoring the verification level failed; will retry",
                error=str(exc),
                tries=tries,
                retry_in_s=self.config.restore_retry_seconds,
            )
            retry = msgspec.structs.replace(order, failures=tries)
            await self._parked().schedule(retry, self.config.restore_retry_seconds)
            return
        metrics.VERIFICATION_CHANGES.labels("restored").inc()
        log.info("verification level restored", to=VERIFICATION_NAMES.get(order.previous_level))

    async def _lock_down(
        self,
        guild_id: int,
        level: int | None,
        rest: RestClient,
        log: structlog.stdlib.BoundLogger,
        *,
        remember: bool,
    ) -> str:
        """Raise verification to HIGH; returns the alert's line about it."""
        if level is None:
            return "Could not read the verification level (see the worker's logs)."
        name = VERIFICATION_NAMES.get(level, str(level))
        if level >= HIGH:
            return f"Verification level is already {name}; left as is."
        changed = await self._call(
            "modify_guild",
            rest.modify_guild(
                guild_id, verification_level=HIGH, reason="raid-guard: raid detected"
            ),
            log,
        )
        if changed is None:
            return f"Could not raise the verification level (still {name}; see the logs)."
        if remember:
            self._previous_level[guild_id] = level
        metrics.VERIFICATION_CHANGES.labels("raised").inc()
        return (
            f"Verification level raised to HIGH (was {name}); restored after "
            f"{self.config.cooldown_seconds:g} s without new joins."
        )

    async def _end_after_cooldown(
        self, guild_id: int, rest: RestClient, log: structlog.stdlib.BoundLogger
    ) -> None:
        try:
            while (raid := self.detector.raid(guild_id)) is not None:
                remaining = raid.last_seen + self.config.cooldown_seconds - self._clock()
                if remaining <= 0:
                    break
                await asyncio.sleep(remaining)
            ended = self.detector.end(guild_id)
            if ended is not None:
                metrics.ACTIVE_RAIDS.dec()
            level = self._previous_level.pop(guild_id, None)
            if level is not None:
                restored = await self._call(
                    "modify_guild",
                    rest.modify_guild(
                        guild_id, verification_level=level, reason="raid-guard: raid over"
                    ),
                    log,
                )
                if restored is not None:
                    metrics.VERIFICATION_CHANGES.labels("restored").inc()
            log.info(
                "raid over",
                total_joins=ended.total_joins if ended else None,
                restored_to=VERIFICATION_NAMES.get(level, level) if level is not None else None,
            )
        finally:
            self._watchers.pop(guild_id, None)

    async def _act(
        self, joiner: Joiner, rest: RestClient, log: structlog.stdlib.BoundLogger
    ) -> None:
        action = self.config.action
        if action is RaidAction.ALERT:
            return
        reason = (
            f"raid-guard: joined during a raid with an account "
            f"{joiner.account_age.total_seconds() / 86400:.1f} days old"
        )
        call: Awaitable[object]
        if action is RaidAction.TIMEOUT:
            until = datetime.now(UTC) + timedelta(minutes=self.config.timeout_minutes)
            call = rest.timeout_member(joiner.guild_id, joiner.user_id, until, reason=reason)
        elif action is RaidAction.KICK:
            call = rest.kick_member(joiner.guild_id, joiner.user_id, reason=reason)
        else:
            call = rest.ban_member(joiner.guild_id, joiner.user_id, reason=reason)
        done = await self._call(
            action.value, _succeeded(call), log.bind(user_id=str(joiner.user_id))
        )
        metrics.ACTIONS.labels(action.value, "done" if done else "failed").inc()

    async def _call(
        self, operation: str, call: Awaitable[T], log: structlog.stdlib.BoundLogger
    ) -> T | None:
        """Await a REST call; report a failure (log + metric) and return None instead of raising."""
        try:
            return await call
        except RestError as exc:
            metrics.REST_FAILURES.labels(operation).inc()
            log.error(
                "REST call failed after retries",
                operation=operation,
                error=str(exc),
                status=getattr(exc, "status", None),
                code=getattr(exc, "code", None),
            )
            return None


async def _succeeded(call: Awaitable[object]) -> bool:
    # kick/ban answer 204 (None); map "returned" to True so failure (None) stays distinguishable.
    await call
    return True
