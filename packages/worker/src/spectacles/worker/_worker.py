"""``Worker``: register handlers per event, then run them against the worker's queue.

The worker owns the wiring every bot feature would otherwise repeat: one durable queue
(``{group}.{name}``) bound to the handled events, typed decoding, a context with REST and
gateway commands, metrics, health endpoints and a graceful SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from functools import partial
from time import perf_counter
from typing import Any, Final, TypeVar

import msgspec
import structlog

from spectacles.broker.broker import Broker
from spectacles.broker.consumer import Consumer, Outcome
from spectacles.broker.delivery import Delivery
from spectacles.broker.errors import BrokerUnavailable, DeadLetter
from spectacles.models import (
    DISPATCH_EVENTS,
    ApplicationCommandOption,
    DecodeError,
    decode_event,
)
from spectacles.observability import (
    HealthServer,
    configure_logging,
    register_secret,
)
from spectacles.rest import RestClient
from spectacles.settings import exit_config_error
from spectacles.worker import _metrics as metrics
from spectacles.worker._commands import CommandSender
from spectacles.worker._commands_app import (
    CommandHandler,
    CommandRouter,
    CommandSpec,
    build_definition,
    register_commands,
)
from spectacles.worker._context import Context, new_context
from spectacles.worker._settings import (
    DEFAULT_COMMAND_DEFER_AFTER,
    QueueType,
    WorkerConfigError,
    WorkerSettings,
)

__all__ = ["EventHandler", "Worker"]

E = TypeVar("E")
EventHandler = Callable[[E, Context], Awaitable[None]]
"""``async def handler(event, ctx) -> None``; the event is the typed model of its dispatch."""

_DEFAULT_MAX_ATTEMPTS: Final = 3
_BUCKETS: Final = metrics.BUCKETS


class Worker:
    """A bot feature: handlers for some dispatch events, consumed from one shared queue.

    Replicas of the same worker (same ``name`` and group) are competing consumers on the
    queue ``{group}.{name}``; pass ``single_active_consumer=True`` when the handlers keep state
    that must not be split between replicas (only one replica receives, the others stand by).
    """

    def __init__(
        self,
        name: str,
        *,
        settings: WorkerSettings | None = None,
        single_active_consumer: bool = False,
        max_attempts: int = _DEFAULT_MAX_ATTEMPTS,
        queue_type: QueueType | None = None,
    ) -> None:
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(
                f"worker name {name!r} must be letters, digits and - _ . (a queue name)"
            )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.name = name
        self.single_active_consumer = single_active_consumer
        self.max_attempts = max_attempts
        self._settings = settings
        self._queue_type = queue_type
        self._handlers: dict[str, EventHandler[Any]] = {}
        self._startup_hooks: list[Callable[[], Awaitable[None]]] = []
        self._shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        # A lazy proxy: binds on first use, i.e. after run() configured logging.
        self._log: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(
            "spectacles.worker", worker=name
        )
        self._stack: AsyncExitStack | None = None
        self._broker: Broker | None = None
        self._health: HealthServer | None = None
        self._rest: RestClient | None = None
        self._commands: CommandSender | None = None
        self._consumer: Consumer | None = None
        self._router = CommandRouter(name, self._defer_after)
        self._running = metrics.worker_stats(name)
        self._event_stats: dict[str, metrics.EventStats] = {}
        self._models: dict[str, Callable[[bytes], Any]] = {}  # custom events' typed decoders

    # -- registration -------------------------------------------------------------------------

    def on(
        self, event: str, *, custom: bool = False, model: type[Any] | None = None
    ) -> Callable[[EventHandler[E]], EventHandler[E]]:
        """Register the decorated coroutine for ``event`` (a dispatch name such as MESSAGE_CREATE).

        Unknown names raise, so a typo cannot silently bind a queue that never receives; pass
        ``custom=True`` for routing keys that other services (not the gateway) publish, and
        ``model`` (a msgspec Struct) to get their body decoded into it: a body that does not fit
        is dead-lettered like a malformed dispatch, never handed to the handler.
        """
        if not custom and event not in DISPATCH_EVENTS:
            raise ValueError(
                f"unknown dispatch event {event!r}; use a Discord dispatch name such as "
                "MESSAGE_CREATE, or custom=True for a routing key your own services publish"
            )

        def register(handler: EventHandler[E]) -> EventHandler[E]:
            if event in self._handlers:
                raise ValueError(
                    f"worker {self.name!r} already has a handler for {event}"
                    + (" (its @command routing)" if self._router.commands else "")
                )
            self._handlers[event] = handler
            if model is not None:
                self._models[event] = msgspec.json.Decoder(model).decode
            return handler

        return register

    def command(
        self,
        name: str,
        *,
        description: str,
        options: Sequence[ApplicationCommandOption | dict[str, Any]] = (),
        defer_ephemeral: bool = False,
    ) -> Callable[[CommandHandler], CommandHandler]:
        """Register the decorated coroutine as the slash command ``/name``.

        The command is registered with Discord at start (upserted, globally or in
        ``COMMANDS_GUILD_IDS``); the handler gets ``(interaction, ctx)`` and answers with
        ``ctx.respond(...)``. A handler still running after ``COMMANDS_DEFER_AFTER`` seconds is
        deferred (``defer_ephemeral`` decides whether that "thinking..." is only for the user).
        """
        definition = build_definition(name, description, options)

        def register(handler: CommandHandler) -> CommandHandler:
            if not self._router.commands:
                if "INTERACTION_CREATE" in self._handlers:
                    raise ValueError(
                        f"worker {self.name!r} handles INTERACTION_CREATE itself; "
                        "use either @on('INTERACTION_CREATE') or @command, not both"
                    )
                self._handlers["INTERACTION_CREATE"] = self._router.dispatch
                self._startup_hooks.insert(0, self._register_commands)
            self._router.add(CommandSpec(definition, handler, defer_ephemeral))
            return handler

        return register

    def on_startup(self, hook: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Run ``hook`` at start, once connected to RabbitMQ and before the first delivery.

        For handlers that need more than their queue (``worker.broker``, ``worker.rest``), e.g.
        declaring a delay queue; a hook that raises aborts ``start()``.
        """
        self._startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Run ``hook`` at stop, after the last in-flight handler finished (usable as decorator)."""
        self._shutdown_hooks.append(hook)
        return hook

    @property
    def commands(self) -> tuple[str, ...]:
        """The slash commands this worker owns (their names)."""
        return tuple(self._router.commands)

    async def _register_commands(self) -> None:
        assert self._settings is not None and self._rest is not None  # a startup hook
        await register_commands(
            self._rest,
            [spec.definition for spec in self._router.commands.values()],
            application_id=self._settings.application_id,
            guild_ids=self._settings.command_guild_ids,
            log=self._log,
        )

    def _defer_after(self) -> float:
        settings = self._settings
        return settings.command_defer_after if settings else DEFAULT_COMMAND_DEFER_AFTER

    @property
    def events(self) -> tuple[str, ...]:
        """The events this worker handles (its queue's bindings)."""
        return tuple(self._handlers)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def health_port(self) -> int | None:
        """The port of ``/healthz``, ``/readyz`` and ``/metrics`` while running."""
        return self._health.port if self._health is not None else None

    @property
    def broker(self) -> Broker:
        """The process's RabbitMQ connection (only while running), e.g. for extra channels."""
        if self._broker is None:
            raise RuntimeError(f"worker {self.name!r} is not running")
        return self._broker

    @property
    def rest(self) -> RestClient:
        """The process's REST client (only while running)."""
        if self._rest is None:
            raise RuntimeError(f"worker {self.name!r} is not running")
        return self._rest

    async def start(self, settings: WorkerSettings | None = None) -> None:
        """Connect, declare the queue and start consuming; raises ``BrokerUnavailable`` fast."""
        if self._stack is not None:
            raise RuntimeError(f"worker {self.name!r} is already running")
        if not self._handlers:
            raise RuntimeError(f"worker {self.name!r} has no handlers; register one with @on(...)")
        settings = settings or self._settings or WorkerSettings.from_env()
        self._settings = settings
        stack = AsyncExitStack()
        try:
            self._health = await stack.enter_async_context(
                HealthServer(settings.metrics_address, ready=self.ready)
            )
            self._rest = await stack.enter_async_context(
                RestClient(
                    settings.discord_token,
                    base_url=settings.discord_api_url,
                    proxy_auth=settings.rest_proxy_auth,
                )
            )
            self._broker = await stack.enter_async_context(await Broker.connect(settings.broker))
            self._commands = CommandSender(settings.broker)
            stack.push_async_callback(self._commands.close)
            for hook in reversed(self._shutdown_hooks):
                stack.push_async_callback(hook)
            for startup in self._startup_hooks:
                await startup()
            consumer = Consumer(
                self._broker,
                worker=self.name,
                events=self.events,
                handler=self._on_delivery,
                prefetch=settings.concurrency,
                max_attempts=self.max_attempts,
                queue_type=self._queue_type or settings.queue_type,
                single_active_consumer=self.single_active_consumer,
                on_outcome=self._on_outcome,
                # past it, handlers are cancelled and their messages return to the queue
                stop_timeout=settings.drain_timeout,
            )
            await consumer.start()
            self._consumer = consumer
            stack.push_async_callback(consumer.stop)
        except BaseException:
            await stack.aclose()
            self._reset()
            raise
        self._stack = stack
        self._log.info(
            "worker started",
            queue=f"{settings.group}.{self.name}",
            events=list(self.events),
            concurrency=settings.concurrency,
            single_active_consumer=self.single_active_consumer,
            health_port=self.health_port,
        )

    async def stop(self) -> None:
        """Stop taking messages, let in-flight handlers finish (and ack), then disconnect."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        in_flight = self._consumer.in_flight if self._consumer is not None else 0
        self._log.info("worker stopping: finishing in-flight handlers", in_flight=in_flight)
        try:
            await stack.aclose()
        finally:
            self._reset()
        self._log.info("worker stopped")

    @contextlib.asynccontextmanager
    async def running(self, settings: WorkerSettings | None = None) -> AsyncIterator[Worker]:
        """Start, and stop on exit: ``async with worker.running(settings):`` (tests, embedding)."""
        await self.start(settings)
        try:
            yield self
        finally:
            await self.stop()

    def run(self) -> None:
        """Run until SIGTERM/SIGINT, then stop gracefully and exit 0 (the console script's body).

        Bad configuration exits 2 and an unreachable RabbitMQ exits 1, each with one clear line.
        SIGTERM is honoured from the first line on, also while still connecting: as PID 1 in a
        container a signal without a handler is ignored, and Compose would SIGKILL after its
        grace period.
        """
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _exit_before_start)
        try:
            settings = self._settings or WorkerSettings.from_env()
        except WorkerConfigError as exc:
            exit_config_error(f"spectacles-{self.name}", exc)
        configure_logging(settings.log_level, settings.log_format or None, service=self.name)
        register_secret(settings.discord_token)
        for password in settings.broker.passwords:
            register_secret(password)
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._serve(settings))
        except BrokerUnavailable as exc:
            self._log.error("cannot reach RabbitMQ", error=str(exc), host=settings.broker.host)
            raise SystemExit(1) from None

    async def _serve(self, settings: WorkerSettings) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            # A signal during start-up (connecting, declaring, startup hooks) cancels it at once;
            # start() unwinds what it had opened.
            starting = asyncio.create_task(self.start(settings), name=f"start:{self.name}")
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                self._log.info("worker stopped before it finished starting")
                return
            starting.result()  # raises what start() raised, e.g. BrokerUnavailable
            try:
                await stop.wait()
            finally:
                await self.stop()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Readiness for ``/readyz``: connected to RabbitMQ and consuming."""
        connected = self._broker is not None and self._broker.is_connected
        consuming = self._consumer is not None and self._consumer.is_consuming
        details = {"worker": self.name, "broker_connected": connected, "consuming": consuming}
        return connected and consuming, details

    def _reset(self) -> None:
        self._broker = self._health = self._rest = self._commands = self._consumer = None

    # -- the hot path -------------------------------------------------------------------------

    async def _on_delivery(self, delivery: Delivery) -> None:
        event = delivery.routing_key or delivery.type or ""
        handler = self._handlers.get(event)
        if handler is None:
            raise _Unhandled(f"worker {self.name!r} has no handler for {event!r}")
        try:
            model = self._models.get(event)
            payload = model(delivery.body) if model else decode_event(event, delivery.body)
        except (DecodeError, msgspec.DecodeError) as exc:
            self._log.warning(
                "malformed event dead-lettered",
                dispatch=event,
                message_id=delivery.message_id,
                error=str(exc),
            )
            raise _Malformed(f"malformed {event} body: {exc}") from exc

        headers = delivery.headers or {}
        shard_id = headers.get("shard_id")
        if shard_id is not None and shard_id.__class__ is not int:
            shard_id = _int_or_none(shard_id)
        assert self._rest is not None and self._commands is not None  # set while consuming
        ctx = new_context(
            self._rest,
            self._commands,
            self.name,
            event,
            headers,
            shard_id,
            delivery.message_id,
            delivery.attempt,
            partial(self._bind_log, event, payload, delivery),
        )
        stats = self._event_stats.get(event)
        if stats is None:
            stats = self._event_stats[event] = metrics.event_stats(self.name, event)
        # Plain numbers (read by /metrics when scraped): no prometheus_client call per message.
        running = self._running
        running.in_flight += 1
        started = perf_counter()
        try:
            await handler(payload, ctx)
        except DeadLetter as exc:
            ctx.log.warning("handler dead-lettered the event", reason=exc.reason)
            raise
        except Exception:
            stats.failed += 1
            final = delivery.attempt - delivery.interruptions >= self.max_attempts
            ctx.log.exception(
                "handler failed", will_retry=not final, max_attempts=self.max_attempts
            )
            raise
        else:
            stats.handled += 1
        finally:
            elapsed = perf_counter() - started
            stats.buckets[bisect_left(_BUCKETS, elapsed)] += 1  # EventStats.observe, inlined
            stats.seconds += elapsed
            running.in_flight -= 1

    def _on_outcome(
        self, delivery: Delivery, outcome: Outcome, error: BaseException | None
    ) -> None:
        if outcome is not Outcome.DEAD_LETTERED:
            return
        if isinstance(error, _Malformed):
            reason = "malformed"
        elif isinstance(error, _Unhandled):
            reason = "unhandled"
        elif isinstance(error, DeadLetter):
            reason = "handler"
        else:
            reason = "failed"
        event = delivery.routing_key or delivery.type or ""
        metrics.DEAD_LETTERED.labels(self.name, event, reason).inc()

    def _bind_log(
        self, event: str, payload: object, delivery: Delivery
    ) -> structlog.stdlib.BoundLogger:
        """The handler's logger, bound on first use of ``ctx.log`` (most handlers never log)."""
        headers: Mapping[str, Any] = delivery.headers or {}
        guild_id = _field(payload, "guild_id") or headers.get("guild_id")
        return self._log.bind(
            dispatch=event,
            message_id=delivery.message_id,
            shard_id=_int_or_none(headers.get("shard_id")),
            guild_id=str(guild_id) if guild_id is not None else None,
            channel_id=_str_or_none(_field(payload, "channel_id")),
            attempt=delivery.attempt,
        )


class _Malformed(DeadLetter):
    """The body does not decode as its event: retrying cannot help."""


class _Unhandled(DeadLetter):
    """A routing key bound to the queue that this worker has no handler for (stale binding)."""


def _field(payload: object, name: str) -> Any:
    if isinstance(payload, Mapping):
        return payload.get(name)
    return getattr(payload, name, None)


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str | bytes) and value.strip().isdigit():
        return int(value)
    return None


def _exit_before_start(signum: int, frame: object) -> None:
    """SIGTERM/SIGINT before the event loop took over: nothing runs yet, so just leave."""
    raise SystemExit(0)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The uvloop loop factory when installed (faster I/O), else None: asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
