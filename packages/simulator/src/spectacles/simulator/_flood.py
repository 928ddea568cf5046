"""Event floods: realistic ~1 KB MESSAGE_CREATEs at tens of thousands per second.

Speed comes from doing per event only what must differ: the payload is a bytes template with
holes for seq, id, nonce, timestamp, content and author, filled by one `%` format; frames are
compressed in a tight loop and written in batches with one `transport.write`; the writer only
yields to the event loop between batches (and waits when the client falls behind).
Every flooded event is numbered by its session and kept for replay like any other dispatch.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from spectacles.models import DISCORD_EPOCH_MS, Intents
from spectacles.simulator._entities import Guild, iso
from spectacles.simulator._errors import ValidationError
from spectacles.simulator._gateway import Connection, GatewayHub
from spectacles.simulator._sessions import Session
from spectacles.simulator._world import World

__all__ = ["FloodResult", "Flooder"]

FLOOD_EVENTS: Final = frozenset({"MESSAGE_CREATE"})
BATCH: Final = 512
# Flood ids use their own worker id so they never collide with the world's ids.
_WORKER_BITS: Final = 30 << 17
_WORDS: Final = (
    "the", "server", "bot", "queue", "shard", "event", "message", "channel", "guild", "member",
    "role", "update", "deploy", "build", "test", "latency", "heartbeat", "resume", "session",
    "worker", "python", "rabbit", "broker", "ping", "pong", "raid", "join", "today",
    "tomorrow", "please", "thanks", "maybe", "really", "great", "broken", "fixed", "slow",
    "fast", "anyone", "here", "again", "later", "weekend", "patch", "notes", "release",
    "version", "config", "docker", "logs", "metrics", "graph",
)  # fmt: skip
# Distinct lines, more than fit in zlib's 32 KB window, so content compresses like real chat
# (a few times smaller) rather than like a repeated template (dozens of times smaller).
CONTENT_VARIANTS: Final = 256


def _chat_lines(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(40, 90))]
        lines.append(" ".join(words).capitalize() + rng.choice(".!?"))
    return lines


@dataclass(frozen=True, slots=True)
class FloodResult:
    """What one flood did."""

    sessions: int
    sent: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The control API answer."""
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        return {
            "sessions": self.sessions,
            "sent": self.sent,
            "seconds": round(self.seconds, 4),
            "rate": round(rate, 1),
        }


class _Template:
    """One session's MESSAGE_CREATE payload with holes for the per-event parts."""

    def __init__(self, world: World, guild: Guild | None, with_content: bool) -> None:
        if guild is None:
            guild = next(iter(world.guilds.values()), None)
        if guild is None:
            raise ValidationError(50035, "the world has no guild to flood")
        channel = next(
            (c for c in guild.channels.values() if c.id != guild.mod_log_channel_id),
            next(iter(guild.channels.values())),
        )
        humans = [m for m in guild.members.values() if not m.user.bot][:16] or list(
            guild.members.values()
        )
        channel_type = channel.to_json()["type"]
        encode = msgspec.json.encode
        self.authors = [encode(m.user.to_json()) for m in humans]
        self.members = [encode(m.to_json(with_user=False)) for m in humans]
        if with_content:
            lines = _chat_lines(CONTENT_VARIANTS)
            self.contents = [encode(line)[1:-1] for line in lines]
        else:
            self.contents = [b""]
        data = {
            "id": "@@ID@@",
            "nonce": "@@NONCE@@",
            "timestamp": "@@TS@@",
            "content": "@@CONTENT@@",
            "author": "@@AUTHOR@@",
            "member": "@@MEMBER@@",
            "type": 0,
            "tts": False,
            "pinned": False,
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "flags": 0,
            "embeds": [],
            "edited_timestamp": None,
            "components": [],
            "attachments": [],
            "channel_id": str(channel.id),
            "guild_id": str(guild.id),
            "channel_type": channel_type,
        }
        raw = encode(data).replace(b"%", b"%%")
        for hole, spec in (
            (b"@@ID@@", b"%d"),
            (b"@@NONCE@@", b"%d"),
            (b"@@TS@@", b"%b"),
            (b"@@CONTENT@@", b"%b"),
            (b'"@@AUTHOR@@"', b"%b"),
            (b'"@@MEMBER@@"', b"%b"),
        ):
            raw = raw.replace(hole, spec)
        self.format = b'{"t":"MESSAGE_CREATE","s":%d,"op":0,"d":' + raw + b"}"


class Flooder:
    """Runs floods against live sessions."""

    def __init__(self, hub: GatewayHub, world: World) -> None:
        self.hub = hub
        self.world = world
        self._last_ms = 0
        self._increment = 0

    @staticmethod
    def check_event(event: str) -> None:
        """Refuse events the flood cannot generate."""
        if event not in FLOOD_EVENTS:
            raise ValidationError.field(
                "event",
                "BASE_TYPE_CHOICES",
                f"floods support {sorted(FLOOD_EVENTS)}, not {event!r}",
            )

    def targets(self, shard: int | None) -> list[tuple[Session, Connection]]:
        """Live sessions (on `shard`, if given) whose intents let MESSAGE_CREATE through."""
        found = []
        for connection in list(self.hub.connections):
            session = connection.session
            if session is None or not connection.open:
                continue
            if shard is not None and session.shard_id != shard:
                continue
            if session.intents & Intents.GUILD_MESSAGES:
                found.append((session, connection))
        return found

    async def flood(
        self, count: int, *, rate: float | None = None, shard: int | None = None, event: str
    ) -> FloodResult:
        """Send `count` events to each target session, at `rate` per second or flat out."""
        self.check_event(event)
        targets = self.targets(shard)
        started = time.perf_counter()
        sent = await asyncio.gather(*(self._flood_one(s, c, count, rate) for s, c in targets))
        return FloodResult(len(targets), sum(sent), time.perf_counter() - started)

    def _template(self, session: Session) -> _Template:
        guild = next(iter(self.world.guilds_on_shard(session.shard_id, session.num_shards)), None)
        return _Template(self.world, guild, bool(session.intents & Intents.MESSAGE_CONTENT))

    async def _flood_one(
        self, session: Session, connection: Connection, count: int, rate: float | None
    ) -> int:
        template = self._template(session)
        fmt, contents, authors, members = (
            template.format,
            template.contents,
            template.authors,
            template.members,
        )
        n_contents, n_authors = len(contents), len(authors)
        encode = connection.encoder.encode
        keep = session.keep
        stats = self.hub.stats
        batch = BATCH if rate is None else max(1, min(BATCH, int(rate / 100)))
        started = time.monotonic()
        sent = 0
        while sent < count and connection.open and session.connection is connection:
            n = min(batch, count - sent)
            now = time.time()
            ms = max(int(now * 1000), self._last_ms)
            if ms != self._last_ms:
                self._last_ms, self._increment = ms, 0
            stamp = iso(datetime.fromtimestamp(ms / 1000, tz=UTC)).encode()
            base = ((ms - DISCORD_EPOCH_MS) << 22) | _WORKER_BITS
            increment = self._increment
            seq = session.seq
            frames: list[bytes] = []
            append = frames.append
            for _ in range(n):
                seq += 1
                if increment > 4095:
                    ms += 1
                    self._last_ms = ms
                    base = ((ms - DISCORD_EPOCH_MS) << 22) | _WORKER_BITS
                    increment = 0
                message_id = base | increment
                increment += 1
                who = seq % n_authors
                payload = fmt % (
                    seq,
                    message_id,
                    message_id,
                    stamp,
                    contents[seq % n_contents],
                    authors[who],
                    members[who],
                )
                keep(payload)
                append(encode(payload))
            self._increment = increment
            session.seq = seq
            connection.write_frames(b"".join(frames))
            sent += n
            stats.dispatches[session.shard_id] += n
            stats.events["MESSAGE_CREATE"] += n
            stats.flood_sent += n
            if rate is not None:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await connection.drain()
            await asyncio.sleep(0)
        return sent
