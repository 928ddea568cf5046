"""Identify buckets shared by every gateway process of a bot, locked in RabbitMQ.

Discord allows one IDENTIFY per bucket per 5 s across all connections of the bot, so processes
that split its shards (`shards.ids`) must take turns too. The lock of bucket `b` is the
`spectacles.broker.lease` lease `{group}.identify.{max_concurrency}.{b}` (an exclusive queue on
the process' one lease connection, `{name}:leases`: RabbitMQ lets one connection declare
it). The owner keeps it until `keep_for` seconds after its IDENTIFY was answered, then releases
it. An owner that dies loses its connection, and RabbitMQ drops the lease with it: a lock is
never stuck longer than the connection that holds it; a lost lease connection is opened again
on the next attempt.

Waiters retry every 0.1-0.25 s (jittered). While RabbitMQ is unreachable they
keep waiting (a warning every few seconds) and never IDENTIFY without the lock; cancelling the
wait (shutdown) ends it at once, and an attempt whose outcome was still open is released when it
lands.

The IDENTIFY quota is shared the same way (`AmqpQuotaLedger`): one
`spectacles.broker.last_value.LastValueStore` `{group}.quota.{fingerprint}` holds the count
every process spends from, changed only by the owner of the lease
`{group}.quota.{fingerprint}.lock`. A process spends from the
lower of that count and its own (from `/gateway/bot`), so two processes started together never
spend the same IDENTIFYs twice. While RabbitMQ cannot answer, nothing is spent and no IDENTIFY
goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import msgspec

from spectacles.broker import BROKER_FAILURES, Backoff
from spectacles.broker.broker import Broker
from spectacles.broker.last_value import LastValueStore
from spectacles.broker.lease import Lease, LeaseHolder
from spectacles.observability import get_logger

from . import metrics
from .fatal_block import token_fingerprint
from .identify import BucketLock, IdentifyBudget, LocalBucketLock, LocalQuotaLedger, QuotaLedger

__all__ = [
    "AmqpBucketLock",
    "AmqpQuotaLedger",
    "LeaseConnection",
    "create_bucket_lock",
    "create_quota_ledger",
    "identify_lock_name",
    "leases_of",
    "quota_queue_name",
]

log = get_logger("spectacles.gateway.identify_lock")

# Between two declares while another process owns the bucket (jittered, so waiters spread out).
RETRY_DELAY: Final = 0.25
# How long one attempt waits for a live RabbitMQ connection before it counts as a failure.
CONNECT_WAIT: Final = 1.0
# After a failure (RabbitMQ down, refused): the next attempt (doubling up to FAILURE_MAX_DELAY),
# and at most one warning this often.
FAILURE_DELAY: Final = 1.0
FAILURE_MAX_DELAY: Final = 5.0
WARN_EVERY: Final = 5.0
RELEASE_TIMEOUT: Final = 5.0
# How often the lease connection proves its leases still exist, and how long without an answer
# it believes in them: a lock only paces IDENTIFYs, so a loss may be noticed a little late.
PROBE_INTERVAL: Final = 1.0
PROBE_TIMEOUT: Final = 5.0
# The errors that make an attempt fail without telling whether someone else owns the bucket.
_FAILURES: Final = (*BROKER_FAILURES, RuntimeError)


def identify_lock_name(group: str, max_concurrency: int, bucket: int) -> str:
    """The queue whose exclusive owner may IDENTIFY in `bucket`.

    `max_concurrency` is part of the name: processes that disagree on it (mid-change at Discord)
    do not share bucket numbers, so they must not share locks either.
    """
    return f"{group}.identify.{max_concurrency}.{bucket}"


def quota_queue_name(group: str, fingerprint: str) -> str:
    """The last-value queue with the shared IDENTIFY count of the token with `fingerprint`."""
    return f"{group}.quota.{fingerprint}"


class LeaseConnection:
    """One `LeaseHolder` per gateway process, shared by its locks; opened again once lost.

    Its leases die with its connection (RabbitMQ drops them), so a lost holder is replaced on
    the next attempt; `close_if_idle` closes it once no lease is held.
    """

    def __init__(self, broker: Broker) -> None:
        self._settings = broker.settings
        self._name = f"{broker.connection_name}:leases"
        self._holder: LeaseHolder | None = None
        self._lock = asyncio.Lock()

    async def holder(self) -> LeaseHolder:
        """The live holder, opened (again) when needed; `BrokerUnavailable` if it cannot be."""
        async with self._lock:
            holder = self._holder
            if holder is None or holder.is_lost:
                self._holder = None
                if holder is not None:
                    with contextlib.suppress(*_FAILURES):
                        await holder.close()
                holder = LeaseHolder(
                    self._settings,
                    connection_name=self._name,
                    connect_timeout=CONNECT_WAIT,
                    probe_interval=PROBE_INTERVAL,
                    probe_timeout=PROBE_TIMEOUT,
                )
                await holder.start()
                self._holder = holder
            return holder

    async def close_if_idle(self) -> None:
        """Close the connection when it holds no lease (a later `holder()` opens a new one)."""
        async with self._lock:
            holder = self._holder
            if holder is None or holder.held:
                return
            self._holder = None
        with contextlib.suppress(*_FAILURES):
            await holder.close()


_SHARED: Final[weakref.WeakKeyDictionary[Broker, LeaseConnection]] = weakref.WeakKeyDictionary()


def leases_of(broker: Broker) -> LeaseConnection:
    """The lease connection every lock on `broker` shares (one per process, not per lock)."""
    leases = _SHARED.get(broker)
    if leases is None:
        leases = _SHARED[broker] = LeaseConnection(broker)
    return leases


class AmqpBucketLock:
    """`BucketLock` on `spectacles.broker.lease` leases (see the module docstring)."""

    def __init__(
        self, broker: Broker, *, max_concurrency: int, leases: LeaseConnection | None = None
    ) -> None:
        self._leases = leases or leases_of(broker)
        self._group = broker.topology.group
        self._max_concurrency = max(1, max_concurrency)
        self._local: dict[int, asyncio.Lock] = {}
        # Per bucket, the background job still releasing (after the keep) or cleaning up.
        self._pending: dict[int, asyncio.Task[None]] = {}
        self._closing = asyncio.Event()  # cuts the keeps short
        self._last_warning = float("-inf")

    def name(self, bucket: int) -> str:
        """The lock queue of `bucket`."""
        return identify_lock_name(self._group, self._max_concurrency, bucket)

    @asynccontextmanager
    async def hold(self, bucket: int, keep_for: float) -> AsyncIterator[None]:
        """Own `bucket` from entry until `keep_for` seconds after exit (released in background)."""
        local = self._local.setdefault(bucket, asyncio.Lock())
        async with local:
            lease = await self._acquire(bucket)
            try:
                yield
            finally:
                # No await here: a cancelled caller must still leave the release scheduled.
                self._pending[bucket] = asyncio.create_task(
                    self._release_after(lease, keep_for), name=f"identify-release:{lease.name}"
                )

    async def close(self) -> None:
        """Release every kept bucket now (the keeps are cut short: nothing IDENTIFYs anymore).

        The releases are told to hurry, not cancelled: a task cancelled before it first ran
        would skip its `finally` and leave the lock to the connection's end. Then the lease
        connection closes; a later `hold` opens a new one.
        """
        self._closing.set()
        tasks = list(self._pending.values())
        self._pending.clear()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=RELEASE_TIMEOUT + CONNECT_WAIT)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._closing.clear()
        await self._leases.close_if_idle()

    async def _acquire(self, bucket: int) -> Lease:
        name = self.name(bucket)
        started = time.monotonic()
        announced = False
        held = Backoff(RETRY_DELAY, RETRY_DELAY)
        failures = Backoff(FAILURE_DELAY, FAILURE_MAX_DELAY)
        while True:
            await self._settle(bucket)
            attempt = asyncio.create_task(self._try(name), name=f"identify-lock:{name}")
            try:
                lease = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # The declare may have succeeded, or still may: give the lock back when it lands.
                self._pending[bucket] = asyncio.create_task(
                    self._abandon(attempt), name=f"identify-abandon:{name}"
                )
                raise
            except _FAILURES as exc:
                self._warn(name, exc)
                await failures.sleep()
                continue
            if lease is None:  # another gateway holds the bucket
                if not announced:
                    log.debug("identify bucket held by another gateway; waiting", lock=name)
                    announced = True
                await held.sleep()
                continue
            waited = time.monotonic() - started
            metrics.IDENTIFY_LOCK_WAIT.observe(waited)
            if announced:
                log.debug("identify bucket acquired", lock=name, waited=round(waited, 3))
            return lease

    async def _try(self, name: str) -> Lease | None:
        """One attempt: the lease, or None when another connection holds it."""
        return await (await self._leases.holder()).try_acquire(name)

    async def _settle(self, bucket: int) -> None:
        """Wait for this process' own release or clean-up of `bucket` to finish first.

        Both delete the queue: racing them could delete the lock a new attempt just took.
        """
        pending = self._pending.get(bucket)
        if pending is not None:
            await asyncio.wait([pending])  # neither cancels it nor raises what ended it
            if self._pending.get(bucket) is pending:
                del self._pending[bucket]

    async def _release_after(self, lease: Lease, keep_for: float) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), keep_for)
        finally:
            await lease.release()  # never raises; a lost lease was released by RabbitMQ

    async def _abandon(self, attempt: asyncio.Task[Lease | None]) -> None:
        (result,) = await asyncio.gather(attempt, return_exceptions=True)
        if isinstance(result, Lease):
            await result.release()

    def _warn(self, name: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning < WARN_EVERY:
            return
        self._last_warning = now
        log.warning(
            "cannot take the identify lock; shards wait to IDENTIFY until RabbitMQ answers",
            lock=name,
            error=f"{type(exc).__name__}: {exc}",
        )


def create_bucket_lock(kind: str, broker: Broker | None, *, max_concurrency: int) -> BucketLock:
    """The lock `gateway.identify_lock` asks for (`amqp` needs the control `broker`)."""
    if kind == "local":
        return LocalBucketLock()
    if broker is None:
        raise ValueError("the amqp identify lock needs a broker connection")
    return AmqpBucketLock(broker, max_concurrency=max_concurrency)


class _QuotaRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The shared count: IDENTIFYs left until `reset_at` (wall clock)."""

    remaining: int
    reset_at: float


_decode_record: Final = msgspec.json.Decoder(_QuotaRecord).decode


class _NamedLock(AmqpBucketLock):
    """One lock queue with a fixed name (the bucket number is ignored)."""

    def __init__(self, broker: Broker, name: str, leases: LeaseConnection | None) -> None:
        super().__init__(broker, max_concurrency=1, leases=leases)
        self._fixed_name = name

    def name(self, bucket: int) -> str:
        """The lock queue, whatever the bucket."""
        return self._fixed_name


class AmqpQuotaLedger:
    """`QuotaLedger` shared through RabbitMQ (see the module docstring)."""

    def __init__(self, broker: Broker, token: str) -> None:
        name = quota_queue_name(broker.topology.group, token_fingerprint(token))
        self._lock = _NamedLock(broker, f"{name}.lock", None)
        self._value = LastValueStore(broker, name)
        self._last_warning = float("-inf")

    async def spend(self, budget: IdentifyBudget) -> None:
        """Take one IDENTIFY from the shared count, or raise `IdentifyLimitExceeded`."""
        failures = Backoff(FAILURE_DELAY, FAILURE_MAX_DELAY)
        while True:
            local = await budget.current()
            if local is None:
                return
            try:
                async with self._lock.hold(0, keep_for=0):
                    shared = await self._read()
                    now = time.time()
                    valid = shared is not None and shared.reset_at > now
                    remaining = min(local, shared.remaining) if shared and valid else local
                    reset_at = shared.reset_at if shared and valid else budget.reset_at
                    budget.remaining = remaining
                    if remaining - 1 < budget.reserve:
                        raise budget.refuse(1, remaining)
                    record = _QuotaRecord(remaining=remaining - 1, reset_at=reset_at)
                    await self._value.write(msgspec.json.encode(record))
                    budget.remaining = remaining - 1
                    return
            except _FAILURES as exc:
                self._warn(exc)
                await failures.sleep()

    async def _read(self) -> _QuotaRecord | None:
        raw = await self._value.read()
        if raw is None:
            return None
        try:
            return _decode_record(raw)
        except msgspec.DecodeError:
            return None

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning < WARN_EVERY:
            return
        self._last_warning = now
        log.warning(
            "cannot read the shared IDENTIFY quota; shards wait to IDENTIFY until RabbitMQ answers",
            queue=self._value.name,
            error=f"{type(exc).__name__}: {exc}",
        )

    async def close(self) -> None:
        """Release the lock and close the value's channel."""
        await self._lock.close()
        await self._value.close()


def create_quota_ledger(kind: str, broker: Broker | None, token: str) -> QuotaLedger:
    """The quota ledger that goes with the identify lock `kind`."""
    if kind == "local" or broker is None:
        return LocalQuotaLedger()
    return AmqpQuotaLedger(broker, token)
