"""Shards shared out among the live gateway processes of a group (`shards.ids = "auto"`).

Through RabbitMQ only, no coordinator:

- **Membership.** Each process announces itself on the fanout exchange
  `{group}.gateway.cluster.{count}` (a `spectacles.broker.Roster`); a peer unheard for
  `cluster.member_timeout` is gone, one that says it leaves is gone at once.
- **Ownership.** A process runs a shard only while it holds the shard's lease, the exclusive
  queue `{group}.gateway.shard.{count}.{id}` (a `spectacles.broker.Lease`). RabbitMQ lets one
  connection hold it and deletes it when that connection dies, so there is exactly one owner.
- **Share.** Members sorted by id; member `r` of `m` is due `count // m` shards, plus one when
  `r < count % m`, so shares differ by at most one. A member below its share claims free
  shards (its own slice first, which keeps claimants apart); one above it hands the surplus
  over, but only once the member set was unchanged for `cluster.settle`: a shard moves at most
  once per change.
- **Failover.** A claimed shard starts only `cluster.takeover_delay` after its lease was taken:
  a previous owner cut off from RabbitMQ notices its loss within `cluster.lease_timeout` and
  stops relaying at once (`Shard.abandon`), so two processes never run one shard. It RESUMEs
  from the session store; Discord replays what was not confirmed (same message ids).
- **Handover.** Giving a shard away stops its reading, drains the confirms, saves the session
  and only then releases the lease; SIGTERM hands over every shard after saying "leaving".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from spectacles.broker import BROKER_FAILURES, Backoff
from spectacles.broker.errors import BrokerError
from spectacles.broker.lease import Lease, LeaseHolder, LeaseLost
from spectacles.broker.roster import Member, Roster
from spectacles.broker.settings import BrokerSettings
from spectacles.observability import get_logger

from . import metrics
from .config import ClusterSettings

__all__ = [
    "ShardCluster",
    "ShardRunner",
    "cluster_exchange_name",
    "describe_cluster",
    "fair_share",
    "observe_cluster",
    "preferred_order",
    "shard_lease_name",
]

log = get_logger("spectacles.gateway.cluster")

HANDOVER_TIMEOUT: Final = 30.0  # one shard: close, drain, save


def cluster_exchange_name(group: str, shard_count: int) -> str:
    """Where the members of one bot's gateway (one shard count) announce themselves."""
    return f"{group}.gateway.cluster.{shard_count}"


def shard_lease_name(group: str, shard_count: int, shard_id: int) -> str:
    """The lease that makes a process the one owner of `[shard_id, shard_count]`."""
    return f"{group}.gateway.shard.{shard_count}.{shard_id}"


def fair_share(shard_count: int, members: int, rank: int) -> int:
    """How many shards member `rank` of `members` runs: the shares differ by at most one."""
    base, extra = divmod(shard_count, members)
    return base + (1 if rank < extra else 0)


def preferred_order(shard_count: int, members: int, rank: int) -> list[int]:
    """Shard ids in the order member `rank` claims them: its own contiguous slice first."""
    start = sum(fair_share(shard_count, members, r) for r in range(rank))
    return [(start + i) % shard_count for i in range(shard_count)]


class ShardRunner(Protocol):
    """What the cluster needs from the gateway service to run and stop shards."""

    async def run_shard(self, shard_id: int, kind: str, claimed_at: float) -> None:
        """Load the shard's saved session and start it (RESUME, else IDENTIFY)."""

    async def hand_over_shard(self, shard_id: int) -> None:
        """Stop reading, drain the confirms, save the session, forget the shard."""

    def abandon_shard(self, shard_id: int) -> None:
        """The lease is lost: relay nothing more from this shard, close it resumably."""

    def shard_states(self) -> dict[int, str]:
        """The state of each shard this process runs."""


@dataclass(slots=True)
class _Claim:
    lease: Lease
    claimed_at: float
    task: asyncio.Task[None] | None = None
    leaving: bool = False  # being handed over


class ShardCluster:
    """A process' membership of the cluster, its shard leases and the balancing loop."""

    def __init__(
        self,
        runner: ShardRunner,
        broker: BrokerSettings,
        *,
        group: str,
        shard_count: int,
        member_id: str,
        settings: ClusterSettings,
        connection_name: str | None = None,
    ) -> None:
        self._runner = runner
        self._broker = broker
        self.group = group
        self.shard_count = shard_count
        self.member_id = member_id
        self.settings = settings
        self.connection_name = connection_name or f"{member_id}:cluster"
        self._claims: dict[int, _Claim] = {}
        self._last_owner: dict[int, str] = {}  # shard -> the member that last announced it
        self._holder: LeaseHolder | None = None
        self._roster: Roster | None = None
        self._task: asyncio.Task[None] | None = None
        self._handovers: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._joined = asyncio.Event()
        self.target = 0

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Join the cluster in the background (a RabbitMQ outage only delays it)."""
        self._task = asyncio.create_task(self._run(), name="gateway-cluster")

    async def wait_joined(self, timeout: float | None = None) -> None:
        """Until this process has announced itself and heard its peers."""
        await asyncio.wait_for(self._joined.wait(), timeout)

    async def stop(self) -> None:
        """Say "leaving", hand every shard over (session saved, lease released), disconnect."""
        self._stopping = True
        roster = self._roster
        if roster is not None:
            await roster.leave()  # peers start claiming at once; they get each lease on release
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*list(self._handovers), return_exceptions=True)
        await asyncio.gather(
            *(self._hand_over(shard_id) for shard_id in list(self._claims)),
            return_exceptions=True,
        )
        holder, self._holder = self._holder, None
        if holder is not None:
            await holder.close()
        metrics.CLUSTER_SHARDS_OWNED.set(0)

    # ----------------------------------------------------------------- view

    @property
    def joined(self) -> bool:
        """True once this process announced itself and heard its peers (it may claim)."""
        return self._joined.is_set()

    @property
    def owned(self) -> tuple[int, ...]:
        """The shards whose lease this process holds."""
        return tuple(sorted(self._claims))

    def status(self) -> dict[str, Any]:
        """Who owns what, as seen from here: `/cluster` and `spectacles-gateway status`."""
        roster = self._roster
        members = roster.members() if roster is not None else []
        return describe_cluster(
            members, self.shard_count, self_id=self.member_id, target=self.target
        )

    # ----------------------------------------------------------------- the loop

    async def _run(self) -> None:
        backoff = Backoff(0.5, 10.0)
        incarnation = 0
        settings = self.settings
        while not self._stopping:
            holder = LeaseHolder(
                self._broker,
                connection_name=self.connection_name,
                heartbeat=settings.lease_heartbeat,
                probe_interval=settings.lease_timeout / 4,
                probe_timeout=settings.lease_timeout,
            )
            roster = Roster(
                holder,
                cluster_exchange_name(self.group, self.shard_count),
                self.member_id,
                interval=settings.heartbeat_interval,
                timeout=settings.member_timeout,
                describe=self._describe,
                incarnation=incarnation,
            )
            try:
                await holder.start()
                holder.on_lost(self._on_holder_lost)
                await roster.start()
            except (BrokerError, LeaseLost, *BROKER_FAILURES) as exc:
                await roster.close()
                await holder.close()
                delay = backoff.next_delay()
                log.warning("cannot join the gateway cluster", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self._holder, self._roster = holder, roster
            log.info(
                "joined the gateway cluster",
                member=self.member_id,
                incarnation=incarnation,
                exchange=roster.exchange,
            )
            try:
                await self._balance(holder, roster)
            except Exception:  # a bug or a refusal must not end the membership: rejoin
                log.exception("the cluster loop failed; rejoining")
                self._lose_all("the cluster loop failed")
                await asyncio.sleep(backoff.next_delay())
            finally:
                if not self._stopping:
                    await roster.close()
                    await holder.close()
                    self._roster = None
            incarnation += 1

    async def _balance(self, holder: LeaseHolder, roster: Roster) -> None:
        settings = self.settings
        tick = settings.heartbeat_interval / 2
        joined_at = time.monotonic()
        # Hear every peer (each announces once per interval) before claiming anything.
        learn = max(settings.settle, settings.heartbeat_interval * 1.5)
        while not holder.is_lost and not self._stopping:
            await roster.wait_changed(tick)
            if holder.is_lost or self._stopping:
                return
            if roster.is_closed:  # deaf and mute: peers drop this member; let go and rejoin
                self._lose_all("the cluster channel closed")
                return
            taken_by_peers = self._note_owners(roster)
            now = time.monotonic()
            ids = roster.ids
            metrics.CLUSTER_MEMBERS.set(len(ids))
            if now - joined_at < learn or self.member_id not in ids:
                continue
            self._joined.set()
            rank = ids.index(self.member_id)
            self.target = fair_share(self.shard_count, len(ids), rank)
            held = [s for s, c in self._claims.items() if not c.leaving]
            if len(held) < self.target:
                await self._claim(holder, roster, rank, self.target - len(held), taken_by_peers)
            elif len(held) > self.target and now - roster.changed_at >= settings.settle:
                self._give_surplus(len(ids), rank, len(held) - self.target)

    def _note_owners(self, roster: Roster) -> set[int]:
        """Remember who announced which shard; the shards live peers announce now."""
        announced: set[int] = set()
        for member in roster.members():
            if member.id == self.member_id:
                continue
            for key in member.data.get("shards", {}):
                with contextlib.suppress(ValueError):
                    self._last_owner[int(key)] = member.id
                    announced.add(int(key))
        return announced

    async def _claim(
        self,
        holder: LeaseHolder,
        roster: Roster,
        rank: int,
        wanted: int,
        taken_by_peers: set[int],
    ) -> None:
        """Take up to `wanted` free shards, this member's slice first."""
        for shard_id in preferred_order(self.shard_count, len(roster.ids), rank):
            if wanted <= 0 or holder.is_lost or self._stopping:
                return
            if shard_id in self._claims or shard_id in taken_by_peers:
                continue
            try:
                lease = await holder.try_acquire(
                    shard_lease_name(self.group, self.shard_count, shard_id)
                )
            except (BrokerError, LeaseLost, *BROKER_FAILURES) as exc:
                log.warning("cannot claim a shard", shard_id=shard_id, error=repr(exc))
                return
            if lease is None:
                continue  # another process holds it (or its dead holder is not yet noticed)
            wanted -= 1
            self._take(shard_id, lease, roster)

    def _take(self, shard_id: int, lease: Lease, roster: Roster) -> None:
        previous = self._last_owner.get(shard_id)
        if previous is None:
            kind = "new"
        elif previous in roster.ids or previous in roster.left:
            kind = "handover"
        else:
            kind = "failover"
        claim = _Claim(lease, time.monotonic())
        self._claims[shard_id] = claim
        lease.on_lost(lambda: self._on_lease_lost(shard_id, lease))
        metrics.CLUSTER_LEASES.labels("taken").inc()
        metrics.CLUSTER_SHARDS_OWNED.set(len(self._claims))
        if kind == "failover":
            metrics.CLUSTER_FAILOVERS.inc()
        elif kind == "handover":
            metrics.CLUSTER_HANDOVERS.labels("taken").inc()
        log.info("shard claimed", shard_id=shard_id, kind=kind, previous_owner=previous)
        claim.task = asyncio.create_task(
            self._start_after_delay(shard_id, claim, kind), name=f"claim-{shard_id}"
        )

    async def _start_after_delay(self, shard_id: int, claim: _Claim, kind: str) -> None:
        # A previous owner cut off from RabbitMQ (never told) stops within the lease timeout.
        lost = asyncio.create_task(claim.lease.wait_ended())
        try:
            await asyncio.wait({lost}, timeout=self.settings.takeover_delay)
        finally:
            lost.cancel()
        if not claim.lease.is_held or self._claims.get(shard_id) is not claim:
            return
        try:
            await self._runner.run_shard(shard_id, kind, claim.claimed_at)
        except Exception:
            # Not run here after all: let another process (or this one, next tick) take it.
            log.exception("cannot run a claimed shard; releasing it", shard_id=shard_id)
            if self._claims.get(shard_id) is claim:
                del self._claims[shard_id]
                self._runner.abandon_shard(shard_id)
                await claim.lease.release()
                metrics.CLUSTER_LEASES.labels("released").inc()
                metrics.CLUSTER_SHARDS_OWNED.set(len(self._claims))
        await self._roster_announce()

    def _give_surplus(self, members: int, rank: int, surplus: int) -> None:
        mine = set(preferred_order(self.shard_count, members, rank)[: self.target])
        held = sorted(s for s, c in self._claims.items() if not c.leaving)
        # Shards outside this member's slice go first, the highest ids first: deterministic.
        order = sorted(held, key=lambda s: (s in mine, -s))
        for shard_id in order[:surplus]:
            self._claims[shard_id].leaving = True
            task = asyncio.create_task(self._hand_over(shard_id), name=f"handover-{shard_id}")
            self._handovers.add(task)
            task.add_done_callback(self._handovers.discard)

    async def _hand_over(self, shard_id: int) -> None:
        claim = self._claims.get(shard_id)
        if claim is None:
            return
        claim.leaving = True
        if claim.task is not None and not claim.task.done():
            claim.task.cancel()  # not started yet: nothing to drain
            await asyncio.gather(claim.task, return_exceptions=True)
        if claim.lease.is_held:
            try:
                await asyncio.wait_for(self._runner.hand_over_shard(shard_id), HANDOVER_TIMEOUT)
            except Exception:
                log.exception("handover failed; releasing the lease anyway", shard_id=shard_id)
        self._claims.pop(shard_id, None)
        if claim.lease.is_held:
            await claim.lease.release()
            metrics.CLUSTER_LEASES.labels("released").inc()
            metrics.CLUSTER_HANDOVERS.labels("given").inc()
            log.info("shard handed over", shard_id=shard_id)
        metrics.CLUSTER_SHARDS_OWNED.set(len(self._claims))
        await self._roster_announce()

    async def _roster_announce(self) -> None:
        roster = self._roster
        if roster is not None and not self._stopping:
            await roster.announce_now()

    # ----------------------------------------------------------------- losses

    def _on_holder_lost(self) -> None:
        """RabbitMQ is gone for this process: every lease with it. Stop relaying now."""
        self._lose_all("lost RabbitMQ")

    def _lose_all(self, reason: str) -> None:
        for shard_id in list(self._claims):
            self._lose(shard_id, reason)

    def _on_lease_lost(self, shard_id: int, lease: Lease) -> None:
        claim = self._claims.get(shard_id)
        if claim is not None and claim.lease is lease:
            self._lose(shard_id, "its lease was lost")

    def _lose(self, shard_id: int, reason: str) -> None:
        claim = self._claims.pop(shard_id, None)
        if claim is None:
            return
        if claim.task is not None and not claim.task.done():
            claim.task.cancel()
        self._runner.abandon_shard(shard_id)
        metrics.CLUSTER_LEASES.labels("lost").inc()
        metrics.CLUSTER_SHARDS_OWNED.set(len(self._claims))
        log.warning(
            "shard given up: another process may own it now", shard_id=shard_id, reason=reason
        )

    def _describe(self) -> dict[str, Any]:
        states = self._runner.shard_states()
        return {
            "shards": {
                str(shard_id): states.get(shard_id, "claimed") for shard_id in sorted(self._claims)
            },
            "target": self.target,
        }


def describe_cluster(
    members: list[Member], shard_count: int, *, self_id: str | None = None, target: int = 0
) -> dict[str, Any]:
    """The cluster as JSON: members with host, pid and shard states; shards nobody owns."""
    owned: set[int] = set()
    listed = []
    for member in members:
        shards = {str(k): v for k, v in member.data.get("shards", {}).items()}
        owned.update(int(k) for k in shards)
        listed.append(
            {
                "id": member.id,
                "host": member.host,
                "pid": member.pid,
                "started_at": member.started_at,
                "incarnation": member.incarnation,
                "shards": shards,
                **({"self": True} if member.id == self_id else {}),
            }
        )
    return {
        "shard_count": shard_count,
        "member": self_id,
        "target": target,
        "members": listed,
        "unowned": [i for i in range(shard_count) if i not in owned],
    }


async def observe_cluster(
    broker: BrokerSettings,
    group: str,
    shard_count: int,
    settings: ClusterSettings,
    *,
    listen: float | None = None,
) -> dict[str, Any]:
    """Listen to the announcements for a while, without joining: `spectacles-gateway status`."""
    async with LeaseHolder(broker, connection_name="spectacles-gateway:status") as holder:
        roster = Roster(
            holder,
            cluster_exchange_name(group, shard_count),
            f"status-{os.getpid()}",
            interval=settings.heartbeat_interval,
            timeout=settings.member_timeout,
            announce=False,
        )
        await roster.start()
        try:
            await asyncio.sleep(listen if listen is not None else settings.heartbeat_interval * 2.5)
            return describe_cluster(roster.members(), shard_count)
        finally:
            await roster.close()
