"""The gateway process: wires config, RabbitMQ, the session store, shards, commands and health.

`GatewayService.run()` is the whole life of the process: install the SIGTERM/SIGINT handlers
(first, so a stop during start-up is honoured at once), plan the shards from /gateway/bot,
connect to RabbitMQ (fail fast), wait out a fatal-close block of the token (see
`fatal_block.py`), load saved sessions, start every shard, then wait for a stop signal or for
the last shard to stop; on the way out it waits for in-flight confirms, saves each session and
closes the shards with a resumable code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any, Final

from spectacles.broker import BROKER_FAILURES, Backoff
from spectacles.broker.broker import Broker
from spectacles.broker.errors import BrokerError
from spectacles.broker.publisher import Publisher
from spectacles.broker.settings import BrokerSettings
from spectacles.broker.topology import (
    OVERSIZE_QUEUE_ARGUMENTS,
    UNROUTED_QUEUE_ARGUMENTS,
    Topology,
)
from spectacles.models import DecodeError, GatewayBot
from spectacles.observability import HealthServer, get_logger
from spectacles.rest import RestClient, RestError, Unauthorized

from . import metrics
from .cluster import ShardCluster
from .commands import CommandRelay
from .config import GatewayConfig
from .errors import ConfigError, GatewayError, GatewayUnreachable, IdentifyBlocked
from .fatal_block import FatalBlockStore
from .identify import BucketLock, IdentifyQueue, identify_spacing
from .identify_lock import create_bucket_lock, create_quota_ledger
from .relay import Relay
from .session import SessionState
from .session_store import SessionStore, create_session_store
from .shard import Shard, ShardState

__all__ = ["EXIT_CONFIG", "EXIT_FATAL", "EXIT_OK", "GatewayService", "run_service"]

EXIT_OK: Final = 0
EXIT_FATAL: Final = 1
EXIT_CONFIG: Final = 2
METRICS_FLUSH_INTERVAL: Final = 1.0
STORE_TIMEOUT: Final = 5.0
DISCOVERY_TIMEOUT: Final = 10.0  # one attempt of GET /gateway/bot (the REST client retries)
# While a fatal-close block holds the start-up, RabbitMQ is asked this often whether it was
# lifted (`spectacles-gateway unblock`) or is over.
FATAL_BLOCK_RECHECK: Final = 5.0
FATAL_RECORD_ATTEMPTS: Final = 3
# An unchanged session is saved again once this fraction of the store's TTL has passed, so the
# saved entry of a quiet shard never expires while the shard runs.
SESSION_REFRESH_FRACTION: Final = 1 / 3
# What a store (RabbitMQ, a file) raises when it cannot answer now: logged and retried.
_STORE_ERRORS: Final = (*BROKER_FAILURES, OSError)

log = get_logger("spectacles.gateway")


class _Plan:
    """Shard count, ids and URL decided at start-up."""

    def __init__(self, count: int, ids: tuple[int, ...], url: str, queue: IdentifyQueue) -> None:
        self.count = count
        self.ids = ids
        self.url = url
        self.identify_queue = queue


class GatewayService:
    """Runs the configured shards of one process and relays their events to RabbitMQ."""

    def __init__(self, config: GatewayConfig, *, connection_name: str | None = None) -> None:
        self.config = config
        self.connection_name = (
            connection_name or f"spectacles-gateway:{socket.gethostname()}:{os.getpid()}"
        )
        self.shards: dict[int, Shard] = {}
        self.publisher: Publisher | None = None
        self.broker: Broker | None = None
        self.health: HealthServer | None = None
        self._store: SessionStore | None = None
        self._identify_lock: BucketLock | None = None
        self._identify_queue: IdentifyQueue | None = None
        self._fatal: FatalBlockStore | None = None
        self._blocked: IdentifyBlocked | None = None  # start-up waits out this block
        self._fatal_records: list[asyncio.Task[None]] = []
        self._starter: asyncio.Task[None] | None = None  # starts the shards still to IDENTIFY
        self._commands: CommandRelay | None = None
        self._plan: _Plan | None = None
        self.cluster: ShardCluster | None = None  # auto mode: shards come and go with leases
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._saved: dict[int, tuple[str, int]] = {}
        self._saved_at: dict[int, float] = {}  # wall clock of each shard's last save
        self._flushed: dict[int, dict[str, Any]] = {}
        self._unrouted_flushed: Counter[str] = Counter()
        self._started = False
        self._save_soon = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle

    async def run(self, *, install_signal_handlers: bool = True) -> int:
        """Start, wait for a signal or for every shard to stop, shut down; the exit code.

        The signal handlers come first: a SIGTERM while start-up waits (RabbitMQ, /gateway/bot,
        a fatal-close block) cancels the start-up and exits 0 at once.
        """
        if install_signal_handlers:
            self._install_signal_handlers()
        try:
            starting = asyncio.create_task(self.start(), name="gateway-start")
            stop = asyncio.create_task(self._stop.wait())
            interrupted = False
            try:
                await asyncio.wait([starting, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not starting.done():
                    interrupted = True
                    starting.cancel()
                    await asyncio.gather(starting, return_exceptions=True)
            if interrupted:
                log.info("stop requested during start-up; nothing was started")
                return EXIT_OK
            starting.result()  # raises a start-up error
            if self._stop.is_set():
                return EXIT_OK
            return await self.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        """Ask `run()` to shut down (what SIGTERM / SIGINT do)."""
        self._stop.set()

    async def start(self) -> None:
        """Connect everything and start the shards; raises on a fatal start-up problem."""
        config = self.config
        self._started = True
        if config.metrics.enabled:
            views = {"/cluster": self.cluster_status}
            self.health = HealthServer(config.metrics.address, ready=self.readiness, views=views)
            await self.health.start()
            log.info("health and metrics listening", port=self.health.port)
        plan = self._plan = await self._make_plan()
        settings = BrokerSettings(
            amqp_url=config.amqp_url, group=config.broker_group, url_order=config.amqp_url_order
        )
        topology = Topology(config.broker_group)
        self.publisher = await Publisher.connect(
            settings,
            max_in_flight=config.gateway.max_in_flight,
            connection_name=f"{self.connection_name}:publisher",
            unrouted_queue=topology.unrouted_queue,
        )
        await self.publisher.declare_events_exchange()
        await self.publisher.declare_queue(topology.oversize_queue, OVERSIZE_QUEUE_ARGUMENTS)
        await self.publisher.declare_queue(topology.unrouted_queue, UNROUTED_QUEUE_ARGUMENTS)
        self.broker = await Broker.connect(
            settings, connection_name=f"{self.connection_name}:control"
        )
        self._store = create_session_store(config.session_store, self.broker)
        # Buckets are shared by every process of the bot: take turns with the others.
        self._identify_lock = create_bucket_lock(
            config.gateway.identify_lock,
            self.broker,
            max_concurrency=plan.identify_queue.max_concurrency,
        )
        plan.identify_queue.lock = self._identify_lock
        plan.identify_queue.ledger = create_quota_ledger(
            config.gateway.identify_lock, self.broker, config.token
        )
        self._identify_queue = plan.identify_queue
        self._fatal = FatalBlockStore(self.broker, config.token, config.gateway.fatal_block)
        await self._wait_out_fatal_block()
        self._tasks.append(asyncio.create_task(self._save_periodically(), name="session-saver"))
        self._tasks.append(asyncio.create_task(self._flush_metrics(), name="metrics-flusher"))
        self._commands = CommandRelay(self.broker, self.shards, config.gateway.commands_queue_type)
        if config.shards.auto:
            await self._start_cluster(plan, settings)
            return
        sessions = await self._load_sessions(plan)
        plan.identify_queue.check_capacity(sum(1 for i in plan.ids if i not in sessions))
        for shard_id in plan.ids:
            self.shards[shard_id] = self._new_shard(shard_id, sessions.get(shard_id))
        for shard in self.shards.values():
            if shard.shard_id in sessions:
                await shard.start()  # RESUME is not paced: it starts at once
        waves = _identify_waves(
            [s for s in self.shards.values() if s.shard_id not in sessions], plan.identify_queue
        )
        for shard in [shard for wave in waves[:2] for shard in wave]:
            await shard.start()
        if len(waves) > 2:
            self._starter = asyncio.create_task(
                self._start_waves(waves[2:], identify_spacing(plan.identify_queue.interval)),
                name="shard-starter",
            )
        await self._commands.start()
        log.info(
            "gateway started",
            shards=list(plan.ids),
            shard_count=plan.count,
            events=sorted(config.events),
            resumable=sorted(sessions),
            identify_lock=config.gateway.identify_lock,
        )

    def _new_shard(self, shard_id: int, session: SessionState | None) -> Shard:
        plan, config = self._plan, self.config
        assert plan is not None and self.publisher is not None
        shard = Shard(
            shard_id,
            plan.count,
            token=config.token,
            intents=config.intents,
            gateway_url=plan.url,
            publisher=self.publisher,
            events=config.events,
            identify_queue=plan.identify_queue,
            settings=config.gateway,
            presence=config.presence,
            session=session,
        )
        shard.on_state_change = self._on_shard_state
        _export_state(shard, shard.state)
        return shard

    # ----------------------------------------------------------------- auto mode (cluster.py)

    async def _start_cluster(self, plan: _Plan, settings: BrokerSettings) -> None:
        self.cluster = ShardCluster(
            self,
            settings,
            group=self.config.broker_group,
            shard_count=plan.count,
            member_id=self.connection_name.removeprefix("spectacles-gateway:"),
            settings=self.config.cluster,
            connection_name=f"{self.connection_name}:cluster",
        )
        await self.cluster.start()
        log.info(
            "gateway started in auto mode: sharing the shards with the group's other processes",
            shard_count=plan.count,
            events=sorted(self.config.events),
            member=self.cluster.member_id,
        )

    async def run_shard(self, shard_id: int, kind: str, claimed_at: float) -> None:
        """Start a shard whose lease this process just took (RESUME when a session is saved)."""
        assert self._plan is not None
        session = await self._load_session(shard_id, self._plan.count)
        shard = self._new_shard(shard_id, session)
        self.shards[shard_id] = shard
        await shard.start()
        log.info("shard taken", shard_id=shard_id, kind=kind, resume=session is not None)
        self._spawn(self._subscribe_commands(shard))
        self._spawn(self._observe_takeover(shard, kind, claimed_at))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """A background task stop() cancels; finished ones are dropped as shards come and go."""
        self._tasks = [task for task in self._tasks if not task.done()]
        self._tasks.append(asyncio.create_task(work))

    async def _subscribe_commands(self, shard: Shard) -> None:
        """Forward the shard's commands; RabbitMQ refusing now only delays it (with backoff)."""
        backoff = Backoff(0.5, 10.0)
        while self.shards.get(shard.shard_id) is shard and self._commands is not None:
            try:
                await self._commands.add(shard)
                if self.shards.get(shard.shard_id) is not shard:  # handed over meanwhile
                    await self._commands.remove(shard.shard_id)
                return
            except _STORE_ERRORS as exc:
                log.warning(
                    "cannot subscribe the shard's commands yet",
                    shard_id=shard.shard_id,
                    error=repr(exc),
                )
                await backoff.sleep()

    async def _observe_takeover(self, shard: Shard, kind: str, claimed_at: float) -> None:
        with contextlib.suppress(TimeoutError):
            await shard.wait_ready(timeout=600)
            took = time.monotonic() - claimed_at
            metrics.CLUSTER_TAKEOVER_SECONDS.labels(kind).observe(took)
            log.info("shard ready after takeover", shard_id=shard.shard_id, kind=kind, seconds=took)

    async def hand_over_shard(self, shard_id: int) -> None:
        """Stop the shard's commands and reading, drain its confirms, save its session."""
        shard = self.shards.get(shard_id)
        if self._commands is not None:
            await self._commands.remove(shard_id)
        if shard is None:
            return
        await shard.close()  # stops reading, waits for in-flight confirms, resumable close
        await self._save_shard(shard)
        self._forget_shard(shard_id)

    def abandon_shard(self, shard_id: int) -> None:
        """The lease is gone: not one more event from this shard, and its session is not saved."""
        shard = self.shards.get(shard_id)
        if shard is None:
            return
        shard.abandon()
        self._forget_shard(shard_id)
        if self._commands is not None:
            self._spawn(self._commands.remove(shard_id))

    def _forget_shard(self, shard_id: int) -> None:
        self._flush_metrics_once()  # its last counts, before a later owner starts from zero
        self._flushed.pop(shard_id, None)
        self.shards.pop(shard_id, None)
        self._saved.pop(shard_id, None)
        self._saved_at.pop(shard_id, None)
        label = str(shard_id)
        for candidate in ShardState:
            with contextlib.suppress(KeyError):
                metrics.SHARD_STATE.remove(label, candidate.value)

    def shard_states(self) -> dict[int, str]:
        """Each running shard's state, for the cluster's announcements."""
        return {shard_id: shard.state.value for shard_id, shard in self.shards.items()}

    def cluster_status(self) -> dict[str, Any]:
        """`/cluster`: who owns which shard (auto mode), or this process' fixed shards."""
        if self.cluster is not None:
            return {"mode": "auto", **self.cluster.status()}
        if self.config.shards.auto:
            return {"mode": "auto", "starting": True, "members": [], "unowned": []}
        return {
            "mode": "fixed",
            "shards": {str(i): s.state.value for i, s in self.shards.items()},
        }

    async def wait(self) -> int:
        """Until a stop is requested (exit 0) or no shard is left running (exit 1)."""
        if self.cluster is not None:  # shards come and go: only a stop ends the process
            await self._stop.wait()
            return EXIT_OK
        stop = asyncio.create_task(self._stop.wait())
        all_stopped = asyncio.create_task(self._wait_all_stopped())
        try:
            await asyncio.wait([stop, all_stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            all_stopped.cancel()
        if self._stop.is_set():
            return EXIT_OK
        log.error("no shard left running; exiting", shards=len(self.shards))
        return EXIT_FATAL

    async def _wait_all_stopped(self) -> None:
        await asyncio.gather(
            *(s.wait_stopped() for s in self.shards.values()), return_exceptions=True
        )

    async def stop(self) -> None:
        """Stop commands, close shards (confirms drained, resumable close), save, disconnect."""
        if not self._started:
            return
        self._started = False
        if self._starter is not None:
            self._starter.cancel()  # no shard starts once stopping
            await asyncio.gather(self._starter, return_exceptions=True)
        if self.cluster is not None:
            # Say "leaving", hand every shard over (confirms drained, session saved, lease
            # released): a peer RESUMEs each within a few seconds.
            await self.cluster.stop()
        if self._commands is not None:
            await self._commands.stop()
        # Each shard stops reading, waits for RabbitMQ to confirm what is in flight, and closes
        # with a resumable code; only then is its resume point final and worth saving.
        await asyncio.gather(*(s.close() for s in self.shards.values()), return_exceptions=True)
        await self._save_all(force=True)
        # A fatal close must be on record before the process exits (and is restarted).
        await asyncio.gather(*self._fatal_records, return_exceptions=True)
        if self._fatal is not None:
            await self._fatal.close()
        if self._identify_lock is not None:
            await self._identify_lock.close()  # before the broker: releases need its connection
        if self._identify_queue is not None:
            await self._identify_queue.ledger.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._flush_metrics_once()
        if self._store is not None:
            await self._store.close()
        if self.publisher is not None:
            await self.publisher.close()
        if self.broker is not None:
            await self.broker.close()
        if self.health is not None:
            await self.health.stop()
        log.info("gateway stopped")

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)

    # ----------------------------------------------------------------- planning

    async def _make_plan(self) -> _Plan:
        config = self.config
        gateway = config.gateway
        bot: GatewayBot | None
        try:
            bot = await fetch_gateway_bot(gateway.api_url, config.token)
        except GatewayUnreachable:
            if gateway.url is None or config.shards.count is None:
                raise
            log.warning("GET /gateway/bot failed; using the configured URL and shard count")
            bot = None
        recommended = bot.shards if bot is not None else 1
        count, ids = config.shards.resolve(recommended)
        url = gateway.url or (bot.url if bot is not None else "")
        limit = bot.session_start_limit if bot is not None else None
        queue = IdentifyQueue(
            max_concurrency=limit.max_concurrency if limit else 1,
            interval=gateway.identify_interval,
            remaining=limit.remaining if limit else None,
            reset_after_ms=limit.reset_after if limit else 0,
            reserve=gateway.identify_reserve,
            refresh=self._refresh_session_start_limit,
        )
        log.info(
            "planned shards",
            count=count,
            ids=list(ids),
            max_concurrency=queue.max_concurrency,
            identifies_remaining=queue.remaining,
        )
        return _Plan(count, ids, url, queue)

    async def _refresh_session_start_limit(self) -> Any:
        """`session_start_limit` again, once its window has passed (quota reset)."""
        bot = await fetch_gateway_bot(self.config.gateway.api_url, self.config.token)
        return bot.session_start_limit

    async def _start_waves(self, waves: list[list[Shard]], spacing: float) -> None:
        """Open the sockets of the shards that must IDENTIFY a wave at a time, one wave ahead.

        Opening all of them at once is a connection storm: it keeps the server (and this
        process) so busy that the first IDENTIFYs are processed late and the next ones, sent
        on time, arrive too close to them and are rejected (op 9, the quota spent anyway).
        """
        queue = self._identify_queue
        for wave in waves:
            await asyncio.sleep(spacing)
            if queue is not None and queue.blocked is not None:
                return  # a fatal close: nothing more may IDENTIFY
            for shard in wave:
                await shard.start()

    # ----------------------------------------------------------------- fatal-close block

    async def _wait_out_fatal_block(self) -> None:
        """No shard starts while a fatal close of this token is younger than the block.

        The process waits (ready: no) instead of exiting, so a supervisor that restarts it
        does not turn the block into a restart loop; it rechecks every few seconds, so the
        block's end or `spectacles-gateway unblock` lets it start without a restart.
        """
        assert self._fatal is not None
        store = self._fatal
        if self.config.gateway.clear_fatal_block:
            await self._store_call(store.clear)
            log.warning(
                "fatal-close block cleared (gateway.clear_fatal_block / GATEWAY_CLEAR_FATAL_BLOCK);"
                " unset it again once the gateway runs",
                token_fingerprint=store.fingerprint,
            )
            return
        announced = False
        while True:
            block = await self._store_call(store.load)
            if block is None:
                break
            self._blocked = block.error(store.duration)
            if not announced:
                announced = True
                log.error(
                    "not identifying: Discord refused this token's session recently",
                    code=block.code,
                    name=block.policy.name,
                    cause=block.policy.cause,
                    fix=block.policy.fix,
                    shard_id=block.shard_id,
                    retry_in=round(self._blocked.retry_in),
                    token_fingerprint=store.fingerprint,
                    unblock="set a new token, or GATEWAY_CLEAR_FATAL_BLOCK=1, or run "
                    "`spectacles-gateway unblock`",
                )
            await asyncio.sleep(min(FATAL_BLOCK_RECHECK, max(self._blocked.retry_in, 0.05)))
        if announced:
            log.info("fatal-close block over; starting the shards")
        self._blocked = None

    async def _store_call(self, call: Any) -> Any:
        """`call()` on RabbitMQ, retried until it answers: the block is never skipped unread."""
        warned = False
        backoff = Backoff(1.0, FATAL_BLOCK_RECHECK)
        while True:
            try:
                return await asyncio.wait_for(call(), STORE_TIMEOUT)
            except _STORE_ERRORS as exc:
                if not warned:
                    warned = True
                    log.warning("cannot read the fatal-close block; waiting", error=repr(exc))
                await backoff.sleep()

    def _on_fatal_close(self, shard: Shard) -> None:
        """Stop this process' IDENTIFYs and put the close on record for every restart."""
        policy = shard.fatal
        if policy is None or self._fatal is None or self._fatal_records:
            return
        if self._identify_queue is not None:
            self._identify_queue.blocked = IdentifyBlocked(
                policy.code, policy.name, policy.cause, policy.fix, self._fatal.duration
            )
        self._fatal_records.append(
            asyncio.create_task(
                self._record_fatal(policy.code, shard.shard_id), name="fatal-record"
            )
        )

    async def _record_fatal(self, code: int, shard_id: int) -> None:
        assert self._fatal is not None
        backoff = Backoff(1.0, FATAL_BLOCK_RECHECK)
        for attempt in range(FATAL_RECORD_ATTEMPTS):
            try:
                await asyncio.wait_for(self._fatal.record(code, shard_id), STORE_TIMEOUT)
            except _STORE_ERRORS as exc:
                log.warning("could not record the fatal close", attempt=attempt, error=repr(exc))
                await backoff.sleep()
                continue
            log.info(
                "fatal close recorded: this token will not IDENTIFY again before the block ends",
                code=code,
                block_seconds=self._fatal.duration,
                token_fingerprint=self._fatal.fingerprint,
            )
            return

    # ----------------------------------------------------------------- sessions

    async def _load_sessions(self, plan: _Plan) -> dict[int, SessionState]:
        found: dict[int, SessionState] = {}
        for shard_id in plan.ids:
            state = await self._load_session(shard_id, plan.count)
            if state is not None:
                found[shard_id] = state
        return found

    async def _load_session(self, shard_id: int, shard_count: int) -> SessionState | None:
        """The shard's saved session (None when there is none, or the store cannot answer)."""
        assert self._store is not None
        try:
            state = await asyncio.wait_for(self._store.load(shard_id, shard_count), STORE_TIMEOUT)
        except _STORE_ERRORS as exc:
            log.warning("could not load a saved session", shard_id=shard_id, error=repr(exc))
            return None
        if state is not None:
            self._saved[shard_id] = (state.session_id, state.seq)
            self._saved_at[shard_id] = state.saved_at
        return state

    def _on_shard_state(self, shard: Shard, state: ShardState) -> None:
        _export_state(shard, state)
        if state is ShardState.READY:
            self._save_soon.set()  # a new session: persist it now, not at the next tick
        elif state is ShardState.STOPPED and shard.fatal is not None:
            self._on_fatal_close(shard)

    def _refresh_after(self) -> float | None:
        """Seconds after which an unchanged session is saved again (None: it never expires)."""
        ttl = self.config.session_store.ttl
        return ttl * SESSION_REFRESH_FRACTION if ttl else None

    async def _save_periodically(self) -> None:
        interval = self.config.session_store.save_interval or 5.0
        refresh_after = self._refresh_after()
        if refresh_after is not None:
            interval = min(interval, refresh_after / 2)  # a tick always comes before the TTL
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._save_soon.wait(), interval)
            self._save_soon.clear()
            await self._save_all(force=False)

    async def _save_all(self, *, force: bool) -> None:
        for shard in list(self.shards.values()):  # auto mode: shards come and go meanwhile
            if self.shards.get(shard.shard_id) is shard:
                await self._save_shard(shard, force=force)

    async def _save_shard(self, shard: Shard, *, force: bool = True) -> None:
        if self._store is None or self.config.session_store.type == "none":
            return
        state = shard.session
        if state is None:
            return
        key = (state.session_id, state.seq)
        if not force and self._saved.get(shard.shard_id) == key and not self._stale(shard):
            return
        try:
            await asyncio.wait_for(self._store.save(state), STORE_TIMEOUT)
        except _STORE_ERRORS as exc:
            log.warning("could not save the session", shard_id=shard.shard_id, error=repr(exc))
            return
        self._saved[shard.shard_id] = key
        self._saved_at[shard.shard_id] = state.saved_at

    def _stale(self, shard: Shard) -> bool:
        """The saved entry is old enough to refresh, though unchanged (its TTL runs from saves)."""
        refresh_after = self._refresh_after()
        saved_at = self._saved_at.get(shard.shard_id)
        return refresh_after is not None and (
            saved_at is None or time.time() - saved_at >= refresh_after
        )

    # ----------------------------------------------------------------- health and metrics

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every running shard is READY and RabbitMQ is connected."""
        blocked = self._blocked or (
            self._identify_queue.blocked if self._identify_queue is not None else None
        )
        if blocked is not None:
            return False, {"blocked": _describe_block(blocked)}
        states = {str(i): s.state.value for i, s in self.shards.items()}
        broker = self.publisher is not None and self.publisher.is_connected
        ready = bool(self.shards) and broker and all(s.is_ready for s in self.shards.values())
        details: dict[str, Any] = {"shards": states, "broker_connected": broker}
        cluster = self.cluster
        if cluster is not None:
            # Auto mode: ready once joined, holding its fair share, and every shard whose lease
            # it holds is READY (a process with no share, the 13th of 12 shards, is ready too).
            # A rolling deploy that waits for ready stops the next process only after this one
            # took its share over.
            claimed = [str(i) for i in cluster.owned if i not in self.shards]
            for shard_id in claimed:
                states[shard_id] = "claimed"
            ready = (
                broker
                and cluster.joined
                and len(cluster.owned) >= cluster.target
                and not claimed
                and all(s.is_ready for s in self.shards.values())
            )
            details["cluster"] = {"member": cluster.member_id, "target": cluster.target}
        problems = self._relay_problems()
        if problems:
            ready = False
            details["reasons"] = problems
        return ready, details

    def _relay_problems(self) -> list[str]:
        """Why events are not relayed right now, in words an operator can act on."""
        problems: list[str] = []
        publisher = self.publisher
        blocked = publisher.blocked_reason if publisher is not None else None
        if publisher is not None and publisher.recovering is not None:
            problems.append(
                f"{publisher.recovering}: reopening the channel (declaring a deleted exchange "
                "again) and re-sending unconfirmed events"
            )
        if blocked is not None:
            problems.append(
                f"RabbitMQ blocked publishing ({blocked}): relaying paused until the alarm clears"
            )
        for shard_id, shard in self.shards.items():
            if shard.problem is not None and not shard.is_ready:
                problems.append(f"shard {shard_id}: {shard.problem}")
        return problems

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(METRICS_FLUSH_INTERVAL)
            self._flush_metrics_once()

    def _flush_metrics_once(self) -> None:
        for shard_id, shard in self.shards.items():
            label = str(shard_id)
            seen = self._flushed.setdefault(
                shard_id,
                {"received": Counter(), "published": Counter(), "identifies": 0, "resumes": 0},
            )
            _flush_counter(metrics.EVENTS_RECEIVED, label, shard.received, seen["received"])
            malformed = seen.setdefault("malformed", Counter())
            _flush_counter(metrics.MALFORMED_PAYLOADS, label, shard.malformed, malformed)
            if shard.identifies > seen["identifies"]:
                metrics.IDENTIFIES.labels(label).inc(shard.identifies - seen["identifies"])
                seen["identifies"] = shard.identifies
            if shard.resumes > seen["resumes"]:
                metrics.RESUMES.labels(label).inc(shard.resumes - seen["resumes"])
                seen["resumes"] = shard.resumes
            reconnects = seen.setdefault("reconnects", Counter())
            for reason, total in shard.reconnects.items():
                if total > reconnects[reason]:
                    metrics.RECONNECTS.labels(label, reason).inc(total - reconnects[reason])
                    reconnects[reason] = total
            if shard.heartbeat_latency is not None:
                metrics.HEARTBEAT_LATENCY.labels(label).set(shard.heartbeat_latency)
            if isinstance(shard.sink, Relay):
                _flush_relay(shard.sink, label, seen)
        if self.publisher is not None:
            metrics.IN_FLIGHT.set(self.publisher.in_flight)
            seen = self._unrouted_flushed
            for event, total in list(self.publisher.unrouted.items()):
                if total > seen[event]:
                    metrics.EVENTS_UNROUTED.labels(event).inc(total - seen[event])
                    seen[event] = total


async def fetch_gateway_bot(api_url: str, token: str) -> GatewayBot:
    """`GET /gateway/bot` with the REST client (its retries, User-Agent and rate limits)."""
    try:
        async with RestClient(
            token,
            base_url=api_url,
            request_timeout=DISCOVERY_TIMEOUT,
            max_ratelimit_retries=2,
            max_ratelimit_wait=DISCOVERY_TIMEOUT,
        ) as rest:
            return await rest.get_gateway_bot()
    except Unauthorized:
        raise GatewayUnreachable(
            "401 Unauthorized: the bot token is invalid; set a valid one in "
            "DISCORD_TOKEN or `token` (without the `Bot ` prefix)"
        ) from None
    except (RestError, DecodeError) as exc:
        raise GatewayUnreachable(f"{api_url}/gateway/bot: {exc}") from None


def _flush_relay(relay: Relay, label: str, seen: dict[str, Any]) -> None:
    _flush_counter(metrics.EVENTS_PUBLISHED, label, relay.published, seen["published"])
    oversize = seen.setdefault("oversize", Counter())
    _flush_counter(metrics.EVENTS_OVERSIZE, label, relay.oversize, oversize)
    # Emptied in place: the relay's confirm tracker appends to this very list.
    samples = relay.confirm_latencies[:]
    relay.confirm_latencies.clear()
    for sample in samples:
        metrics.CONFIRM_LATENCY.observe(sample)


def _flush_counter(counter: Any, shard: str, current: Counter[str], seen: Counter[str]) -> None:
    for event, total in list(current.items()):
        delta = total - seen[event]
        if delta > 0:
            counter.labels(shard, event).inc(delta)
            seen[event] = total


def _identify_waves(shards: list[Shard], queue: IdentifyQueue) -> list[list[Shard]]:
    """Wave k: the k-th shard of every identify bucket (they IDENTIFY at about the same time)."""
    by_bucket: dict[int, list[Shard]] = {}
    for shard in sorted(shards, key=lambda s: s.shard_id):
        by_bucket.setdefault(queue.bucket_of(shard.shard_id), []).append(shard)
    depth = max((len(b) for b in by_bucket.values()), default=0)
    return [[b[k] for b in by_bucket.values() if k < len(b)] for k in range(depth)]


def _describe_block(blocked: IdentifyBlocked) -> dict[str, Any]:
    return {
        "close_code": blocked.code,
        "name": blocked.name,
        "cause": blocked.cause,
        "fix": blocked.fix,
        "detail": str(blocked),
    }


def _export_state(shard: Shard, state: ShardState) -> None:
    label = str(shard.shard_id)
    for candidate in ShardState:
        metrics.SHARD_STATE.labels(label, candidate.value).set(1 if candidate is state else 0)


async def run_service(config: GatewayConfig) -> int:
    """Run the gateway until stopped; the process exit code (errors are logged, not raised)."""
    service = GatewayService(config)
    try:
        return await service.run()
    except ConfigError as exc:  # found late: e.g. shard ids beyond the recommended count
        log.error("configuration error", error=str(exc))
        return EXIT_CONFIG
    except GatewayError as exc:
        log.error("gateway cannot start", error=str(exc))
        return EXIT_FATAL
    except BrokerError as exc:
        log.error("RabbitMQ is unreachable at start-up", error=str(exc))
        return EXIT_FATAL
    except OSError as exc:  # e.g. the metrics address is taken
        log.error("gateway cannot start", error=f"{type(exc).__name__}: {exc}")
        return EXIT_FATAL
