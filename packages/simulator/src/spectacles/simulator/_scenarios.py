"""Background activity for demos and soak runs: chatting users, join raids, event floods."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final

from spectacles.simulator._errors import SimulatorError
from spectacles.simulator._server import Simulator

__all__ = ["SCENARIOS", "ScenarioSettings", "parse_scenarios", "run_scenarios"]

SCENARIOS: Final = ("idle", "chat", "raid", "flood")
_CHAT_LINES: Final = (
    "good morning everyone",
    "has anyone seen the patch notes?",
    "lol that's amazing",
    "I think the bot is up, let me check",
    "brb, coffee",
    "what's the plan for tonight?",
    "nice screenshot!",
    "the new channel layout is much better",
    "anyone up for a game later?",
    "thanks for the help earlier",
)


@dataclass(frozen=True, slots=True)
class ScenarioSettings:
    """Pacing of the scenarios (seconds unless named otherwise)."""

    chat_interval: float = 4.0
    ping_every: int = 3
    # Share of those pings sent as the `/ping` slash command (when one is registered).
    slash_share: float = 0.5
    raid_first_after: float = 15.0
    raid_every: float = 60.0
    raid_size: int = 25
    raid_seconds: float = 5.0
    raid_max_account_age_days: float = 3.0
    flood_rate: float = 1000.0


def parse_scenarios(value: str) -> tuple[str, ...]:
    """`chat,raid` → ("chat", "raid"); unknown names raise ValueError listing valid ones."""
    names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    return tuple(n for n in names if n != "idle")


async def chat(sim: Simulator, settings: ScenarioSettings, rng: random.Random) -> None:
    """Users talk in each guild's system channel; every `ping_every`-th line is a ping.

    A ping is `!ping`, or half of the time `/ping` once the bot has registered that command.
    """
    count = 0
    while True:
        await asyncio.sleep(settings.chat_interval * rng.uniform(0.5, 1.5))
        guilds = list(sim.world.guilds.values())
        if not guilds:
            continue
        guild = rng.choice(guilds)
        count += 1
        ping = count % settings.ping_every == 0
        content = "!ping" if ping else rng.choice(_CHAT_LINES)
        try:
            author = sim.world.random_member(guild.id, rng=rng)
            # `/ping` only once the bot registered it, as Discord's client offers no other.
            slash = ping and rng.random() < settings.slash_share
            if slash and sim.interactions.use(guild, guild.system_channel_id, author, "ping"):
                continue
            sim.actions.post_message(guild.system_channel_id, author.user.id, content)
        except SimulatorError:
            continue


async def raid(sim: Simulator, settings: ScenarioSettings, rng: random.Random) -> None:
    """Now and then, `raid_size` fresh accounts join the first guild within `raid_seconds`."""
    await asyncio.sleep(settings.raid_first_after)
    while True:
        guilds = list(sim.world.guilds.values())
        if guilds:
            guild = guilds[0]
            gap = settings.raid_seconds / max(settings.raid_size, 1)
            for _ in range(settings.raid_size):
                age = rng.uniform(0.01, settings.raid_max_account_age_days)
                sim.actions.join(guild.id, age, name="raider")
                await asyncio.sleep(gap)
        await asyncio.sleep(settings.raid_every)


async def flood(sim: Simulator, settings: ScenarioSettings, rng: random.Random) -> None:
    """Every live session gets MESSAGE_CREATEs at `flood_rate` per second, continuously."""
    while True:
        if sim.flooder.targets(None):
            count = max(int(settings.flood_rate), 1)
            await sim.flooder.flood(count, rate=settings.flood_rate, event="MESSAGE_CREATE")
        else:
            await asyncio.sleep(0.5)


_RUNNERS: Final[
    dict[str, Callable[[Simulator, ScenarioSettings, random.Random], Coroutine[Any, Any, None]]]
] = {"chat": chat, "raid": raid, "flood": flood}


def run_scenarios(
    sim: Simulator, names: Sequence[str], settings: ScenarioSettings | None = None
) -> list[asyncio.Task[None]]:
    """Start the named scenarios as tasks (cancel them to stop)."""
    settings = settings or ScenarioSettings()
    return [
        asyncio.create_task(
            _RUNNERS[name](sim, settings, random.Random(sim.config.seed * 31 + i)),
            name=f"scenario-{name}",
        )
        for i, name in enumerate(names)
    ]
