"""Decode micro-benchmark: Discord event bytes -> typed objects.

Compares the ways a worker could turn an event body from RabbitMQ into typed Python objects:

- msgspec Structs (what `spectacles.models` ships: snowflakes as `Snowflake` via a dec_hook
  with a small cache of recently seen id strings),
- the same structs with an uncached dec_hook (to show what the cache buys),
- msgspec Structs with plain `int` ids parsed in lax mode (`strict=False`), the alternative
  snowflake strategy,
- orjson + slotted dataclasses built by hand-written converters,
- pydantic v2 models (`model_validate_json`, lax mode parses string ids to int in Rust).

Every contender decodes the same pool of payloads in which message and user ids are unique and
guild, channel and role ids repeat (as in a real event stream), so no contender can win by
caching one repeated payload.

Run: ``uv run python bench/decode/decode_bench.py [--quick] [--output FILE.md]``.
Import: ``run(quick: bool) -> dict`` (JSON-serialisable) for ``bench/run_all.py``.
"""

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import orjson
import pydantic

from spectacles.models import GuildMemberAdd, MessageCreate, Snowflake, decode_event

# --------------------------------------------------------------------------------------------
# Realistic payloads (shapes as Discord sends them, including unknown keys such as _trace).

MESSAGE_CREATE: bytes = orjson.dumps(
    {
        "type": 0,
        "tts": False,
        "timestamp": "2024-05-14T18:32:11.438000+00:00",
        "pinned": False,
        "nonce": "1240004663581634560",
        "mentions": [
            {
                "username": "kestrel",
                "public_flags": 0,
                "id": "80351110224678912",
                "global_name": "Kestrel",
                "discriminator": "0",
                "avatar": "a_1f2e3d4c5b6a7980",
            }
        ],
        "mention_roles": ["1108813024672264212"],
        "mention_everyone": False,
        "member": {
            "roles": ["1108813024672264212", "1108813101017538570"],
            "premium_since": None,
            "pending": False,
            "nick": "Marlin",
            "mute": False,
            "joined_at": "2023-05-19T07:59:13.900000+00:00",
            "flags": 0,
            "deaf": False,
            "communication_disabled_until": None,
            "avatar": None,
        },
        "id": "1240004664516968468",
        "flags": 0,
        "embeds": [],
        "edited_timestamp": None,
        "content": "!ping hello there, <@80351110224678912> are you around for a quick test?",
        "components": [],
        "channel_id": "1108812633251381338",
        "author": {
            "username": "marlin",
            "public_flags": 64,
            "id": "53908232506183680",
            "global_name": "Marlin",
            "discriminator": "0",
            "clan": None,
            "avatar_decoration_data": None,
            "avatar": "9d5a8cd8e5f4b3a2c1d0e9f8a7b6c5d4",
        },
        "attachments": [],
        "guild_id": "1108812632211202048",
        "_trace": ['["gateway-prd-us-east1-b-4k2j",{"micros":0.0}]'],
    }
)

GUILD_MEMBER_ADD: bytes = orjson.dumps(
    {
        "user": {
            "username": "fresh_account_0412",
            "public_flags": 0,
            "id": "1240011198735290490",
            "global_name": None,
            "discriminator": "0",
            "avatar": None,
            "avatar_decoration_data": None,
            "clan": {"tag": None, "badge": None},
        },
        "unusual_dm_activity_until": None,
        "roles": ["1108813101017538570"],
        "premium_since": None,
        "pending": True,
        "nick": None,
        "mute": False,
        "joined_at": "2024-05-14T19:03:55.118207+00:00",
        "guild_id": "1108812632211202048",
        "flags": 0,
        "deaf": False,
        "communication_disabled_until": None,
        "avatar": None,
    }
)

# --------------------------------------------------------------------------------------------
# (a') msgspec with plain-int ids in lax mode (alternative snowflake strategy).


class LaxUser(msgspec.Struct, kw_only=True):
    id: int
    username: str
    discriminator: str = "0"
    global_name: str | None = None
    avatar: str | None = None
    bot: bool = False
    public_flags: int = 0


class LaxMember(msgspec.Struct, kw_only=True):
    user: LaxUser | None = None
    nick: str | None = None
    avatar: str | None = None
    roles: list[int] = []
    joined_at: datetime | None = None
    premium_since: datetime | None = None
    deaf: bool = False
    mute: bool = False
    flags: int = 0
    pending: bool = False
    communication_disabled_until: datetime | None = None


class LaxMessageReference(msgspec.Struct, kw_only=True):
    type: int = 0
    message_id: int | None = None
    channel_id: int | None = None
    guild_id: int | None = None


class LaxMessage(msgspec.Struct, kw_only=True):
    id: int
    channel_id: int
    author: LaxUser
    content: str = ""
    timestamp: datetime
    edited_timestamp: datetime | None = None
    tts: bool = False
    mention_everyone: bool = False
    mentions: list[LaxUser] = []
    mention_roles: list[int] = []
    attachments: list[dict[str, Any]] = []
    embeds: list[dict[str, Any]] = []
    nonce: int | str | None = None
    pinned: bool = False
    type: int = 0
    flags: int = 0
    message_reference: LaxMessageReference | None = None
    components: list[dict[str, Any]] = []
    guild_id: int | None = None
    member: LaxMember | None = None


class LaxGuildMemberAdd(LaxMember, kw_only=True):
    user: LaxUser
    guild_id: int


LAX_MESSAGE = msgspec.json.Decoder(LaxMessage, strict=False)
LAX_MEMBER_ADD = msgspec.json.Decoder(LaxGuildMemberAdd, strict=False)

# --------------------------------------------------------------------------------------------
# (b) orjson + dataclasses with hand-written converters (the fastest honest way to do it).


def _opt_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _opt_id(value: str | None) -> Snowflake | None:
    return None if value is None else Snowflake(value)


@dataclass(slots=True, kw_only=True)
class DCUser:
    id: Snowflake
    username: str
    discriminator: str = "0"
    global_name: str | None = None
    avatar: str | None = None
    bot: bool = False
    public_flags: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DCUser":
        return cls(
            id=Snowflake(d["id"]),
            username=d["username"],
            discriminator=d.get("discriminator", "0"),
            global_name=d.get("global_name"),
            avatar=d.get("avatar"),
            bot=d.get("bot", False),
            public_flags=d.get("public_flags", 0),
        )


@dataclass(slots=True, kw_only=True)
class DCMember:
    user: DCUser | None = None
    nick: str | None = None
    avatar: str | None = None
    roles: list[Snowflake] = field(default_factory=list)
    joined_at: datetime | None = None
    premium_since: datetime | None = None
    deaf: bool = False
    mute: bool = False
    flags: int = 0
    pending: bool = False
    communication_disabled_until: datetime | None = None

    @staticmethod
    def fields_from(d: dict[str, Any]) -> dict[str, Any]:
        user = d.get("user")
        return {
            "user": None if user is None else DCUser.from_dict(user),
            "nick": d.get("nick"),
            "avatar": d.get("avatar"),
            "roles": [Snowflake(r) for r in d.get("roles", ())],
            "joined_at": _opt_dt(d.get("joined_at")),
            "premium_since": _opt_dt(d.get("premium_since")),
            "deaf": d.get("deaf", False),
            "mute": d.get("mute", False),
            "flags": d.get("flags", 0),
            "pending": d.get("pending", False),
            "communication_disabled_until": _opt_dt(d.get("communication_disabled_until")),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DCMember":
        return cls(**cls.fields_from(d))


@dataclass(slots=True, kw_only=True)
class DCGuildMemberAdd(DCMember):
    guild_id: Snowflake

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DCGuildMemberAdd":
        return cls(guild_id=Snowflake(d["guild_id"]), **DCMember.fields_from(d))


@dataclass(slots=True, kw_only=True)
class DCMessageReference:
    type: int = 0
    message_id: Snowflake | None = None
    channel_id: Snowflake | None = None
    guild_id: Snowflake | None = None


@dataclass(slots=True, kw_only=True)
class DCMessage:
    id: Snowflake
    channel_id: Snowflake
    author: DCUser
    content: str = ""
    timestamp: datetime
    edited_timestamp: datetime | None = None
    tts: bool = False
    mention_everyone: bool = False
    mentions: list[DCUser] = field(default_factory=list)
    mention_roles: list[Snowflake] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    nonce: int | str | None = None
    pinned: bool = False
    type: int = 0
    flags: int = 0
    message_reference: DCMessageReference | None = None
    components: list[dict[str, Any]] = field(default_factory=list)
    guild_id: Snowflake | None = None
    member: DCMember | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DCMessage":
        ref = d.get("message_reference")
        member = d.get("member")
        return cls(
            id=Snowflake(d["id"]),
            channel_id=Snowflake(d["channel_id"]),
            author=DCUser.from_dict(d["author"]),
            content=d.get("content", ""),
            timestamp=datetime.fromisoformat(d["timestamp"]),
            edited_timestamp=_opt_dt(d.get("edited_timestamp")),
            tts=d.get("tts", False),
            mention_everyone=d.get("mention_everyone", False),
            mentions=[DCUser.from_dict(u) for u in d.get("mentions", ())],
            mention_roles=[Snowflake(r) for r in d.get("mention_roles", ())],
            attachments=d.get("attachments", []),
            embeds=d.get("embeds", []),
            nonce=d.get("nonce"),
            pinned=d.get("pinned", False),
            type=d.get("type", 0),
            flags=d.get("flags", 0),
            message_reference=None
            if ref is None
            else DCMessageReference(
                type=ref.get("type", 0),
                message_id=_opt_id(ref.get("message_id")),
                channel_id=_opt_id(ref.get("channel_id")),
                guild_id=_opt_id(ref.get("guild_id")),
            ),
            components=d.get("components", []),
            guild_id=_opt_id(d.get("guild_id")),
            member=None if member is None else DCMember.from_dict(member),
        )


# --------------------------------------------------------------------------------------------
# (c) pydantic v2 (lax mode converts "123" to int in Rust; ids stay plain ints).


class PUser(pydantic.BaseModel):
    id: int
    username: str
    discriminator: str = "0"
    global_name: str | None = None
    avatar: str | None = None
    bot: bool = False
    public_flags: int = 0


class PMember(pydantic.BaseModel):
    user: PUser | None = None
    nick: str | None = None
    avatar: str | None = None
    roles: list[int] = []
    joined_at: datetime | None = None
    premium_since: datetime | None = None
    deaf: bool = False
    mute: bool = False
    flags: int = 0
    pending: bool = False
    communication_disabled_until: datetime | None = None


class PGuildMemberAdd(PMember):
    user: PUser
    guild_id: int


class PMessageReference(pydantic.BaseModel):
    type: int = 0
    message_id: int | None = None
    channel_id: int | None = None
    guild_id: int | None = None


class PMessage(pydantic.BaseModel):
    id: int
    channel_id: int
    author: PUser
    content: str = ""
    timestamp: datetime
    edited_timestamp: datetime | None = None
    tts: bool = False
    mention_everyone: bool = False
    mentions: list[PUser] = []
    mention_roles: list[int] = []
    attachments: list[dict[str, Any]] = []
    embeds: list[dict[str, Any]] = []
    nonce: int | str | None = None
    pinned: bool = False
    type: int = 0
    flags: int = 0
    message_reference: PMessageReference | None = None
    components: list[dict[str, Any]] = []
    guild_id: int | None = None
    member: PMember | None = None


# --------------------------------------------------------------------------------------------
# (a'') msgspec Structs with a plain, uncached Snowflake dec_hook.


def _uncached_hook(type_: type, obj: Any) -> Any:
    if type_ is Snowflake and obj.__class__ is str and obj.isdigit():
        return int.__new__(Snowflake, obj)
    raise NotImplementedError  # msgspec's hook protocol: "not a type this hook handles"


UNCACHED_MESSAGE = msgspec.json.Decoder(MessageCreate, dec_hook=_uncached_hook)
UNCACHED_MEMBER_ADD = msgspec.json.Decoder(GuildMemberAdd, dec_hook=_uncached_hook)

# --------------------------------------------------------------------------------------------
# Payload pools: unique message/user ids, shared guild/channel/role ids.

POOL_SIZE = 8192  # larger than the models' snowflake cache (4096), so unique ids always miss
_BASE_ID = 1240004664516968468


def message_pool(n: int = POOL_SIZE) -> list[bytes]:
    template = orjson.loads(MESSAGE_CREATE)
    pool = []
    for i in range(n):
        template["id"] = str(_BASE_ID + 4 * i)
        template["nonce"] = str(_BASE_ID + 4 * i + 1)
        template["author"]["id"] = str(_BASE_ID + 4 * i + 2)
        template["mentions"][0]["id"] = str(_BASE_ID + 4 * i + 3)
        pool.append(orjson.dumps(template))
    return pool


def member_add_pool(n: int = POOL_SIZE) -> list[bytes]:
    template = orjson.loads(GUILD_MEMBER_ADD)
    pool = []
    for i in range(n):
        template["user"]["id"] = str(_BASE_ID + i)
        pool.append(orjson.dumps(template))
    return pool


# --------------------------------------------------------------------------------------------
# Harness.

Decoder = Callable[[bytes], Any]

CASES: dict[str, tuple[Callable[[int], list[bytes]], dict[str, Decoder]]] = {
    "MESSAGE_CREATE": (
        message_pool,
        {
            "msgspec Struct (spectacles.models)": lambda b: decode_event("MESSAGE_CREATE", b),
            "msgspec Struct (Snowflake dec_hook, no cache)": UNCACHED_MESSAGE.decode,
            "msgspec Struct (int ids, strict=False)": LAX_MESSAGE.decode,
            "orjson + dataclasses": lambda b: DCMessage.from_dict(orjson.loads(b)),
            "pydantic v2 (model_validate_json)": PMessage.model_validate_json,
        },
    ),
    "GUILD_MEMBER_ADD": (
        member_add_pool,
        {
            "msgspec Struct (spectacles.models)": lambda b: decode_event("GUILD_MEMBER_ADD", b),
            "msgspec Struct (Snowflake dec_hook, no cache)": UNCACHED_MEMBER_ADD.decode,
            "msgspec Struct (int ids, strict=False)": LAX_MEMBER_ADD.decode,
            "orjson + dataclasses": lambda b: DCGuildMemberAdd.from_dict(orjson.loads(b)),
            "pydantic v2 (model_validate_json)": PGuildMemberAdd.model_validate_json,
        },
    ),
}
BASELINE = "msgspec Struct (spectacles.models)"


def _check(event: str, obj: Any) -> None:
    """Every contender must produce the same values, or the comparison means nothing."""
    if event == "MESSAGE_CREATE":
        message = (
            obj.id,
            obj.author.id,
            obj.member.roles,
            obj.timestamp,
            obj.guild_id,
            obj.content,
        )
        assert message == (
            _BASE_ID,
            _BASE_ID + 2,
            [1108813024672264212, 1108813101017538570],
            datetime.fromisoformat("2024-05-14T18:32:11.438000+00:00"),
            1108812632211202048,
            "!ping hello there, <@80351110224678912> are you around for a quick test?",
        ), message
    else:
        member = (obj.user.id, obj.guild_id, obj.roles, obj.joined_at, obj.pending)
        assert member == (
            _BASE_ID,
            1108812632211202048,
            [1108813101017538570],
            datetime.fromisoformat("2024-05-14T19:03:55.118207+00:00"),
            True,
        ), member


def _time_interleaved(
    decoders: dict[str, Decoder], pool: list[bytes], *, repeats: int
) -> dict[str, float]:
    """Best ns/op of `repeats` passes over the pool per contender, contenders taking turns.

    Taking turns spreads background noise (the machine may be shared) evenly over all of them;
    the minimum is the run least disturbed by it.
    """
    best = dict.fromkeys(decoders, float("inf"))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, fn in decoders.items():
                start = time.perf_counter_ns()
                for raw in pool:
                    fn(raw)
                best[name] = min(best[name], (time.perf_counter_ns() - start) / len(pool))
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "msgspec": msgspec.__version__,
        "orjson": orjson.__version__,
        "pydantic": pydantic.VERSION,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns machine info and one row per (event, library)."""
    pool_size, repeats = (POOL_SIZE, 5) if quick else (POOL_SIZE, 21)
    rows: list[dict[str, Any]] = []
    for event, (make_pool, decoders) in CASES.items():
        pool = make_pool(pool_size)
        for fn in decoders.values():
            _check(event, fn(pool[0]))
        timings = _time_interleaved(decoders, pool, repeats=repeats)
        base = timings[BASELINE]
        for name, ns in timings.items():
            rows.append(
                {
                    "event": event,
                    "bytes": len(pool[0]),
                    "library": name,
                    "ns_per_op": round(ns, 1),
                    "ratio_vs_msgspec": round(ns / base, 2),
                }
            )
    # The library choice is between the three approaches; the other rows are msgspec variants.
    libraries = {BASELINE, "orjson + dataclasses", "pydantic v2 (model_validate_json)"}
    winner = min(
        (r for r in rows if r["event"] == "MESSAGE_CREATE" and r["library"] in libraries),
        key=lambda r: r["ns_per_op"],
    )["library"]
    return {
        "name": "decode",
        "quick": quick,
        "iterations": {"pool": pool_size, "repeats": repeats},
        "machine": machine_info(),
        "results": rows,
        "winner": winner,
    }


def to_markdown(result: dict[str, Any], command: str) -> str:
    m = result["machine"]
    it = result["iterations"]
    lines = [
        "# Decode micro-benchmark",
        "",
        "Event body bytes -> typed Python objects (what every worker does per message).",
        "",
        f"- Command: `{command}`",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['implementation']} {m['python']},"
        f" {m['platform']}",
        f"- Libraries: msgspec {m['msgspec']}, orjson {m['orjson']}, pydantic {m['pydantic']}",
        f"- Method: a pool of {it['pool']} payloads (unique message/user ids, shared"
        f" guild/channel/role ids); per contender the best of {it['repeats']} passes over the"
        " pool, contenders taking turns, GC off while timing; each contender's output is"
        " checked first.",
        "",
        "| event | bytes | library | ns/op | ratio vs msgspec |",
        "|---|---:|---|---:|---:|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['event']} | {r['bytes']} | {r['library']} | {r['ns_per_op']:,.0f}"
            f" | {r['ratio_vs_msgspec']:.2f}x |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--output", help="also write the markdown report to this file")
    args = parser.parse_args()
    result = run(quick=args.quick)
    command = "uv run python bench/decode/decode_bench.py" + (" --quick" if args.quick else "")
    report = to_markdown(result, command)
    print(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(report)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
