"""The seeded world, configuration validation and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spectacles.settings import SettingError
from spectacles.simulator import SimulatorConfig, SimulatorConfigError, World
from spectacles.simulator.__main__ import build_parser
from spectacles.simulator._scenarios import parse_scenarios


def test_same_seed_same_world_and_guilds_spread_over_the_recommended_shards():
    a = World(SimulatorConfig(seed=7, guilds=6, shards=3))
    b = World(SimulatorConfig(seed=7, guilds=6, shards=3))
    c = World(SimulatorConfig(seed=8, guilds=6, shards=3))
    assert list(a.guilds) == list(b.guilds) and list(a.users) == list(b.users)
    assert list(a.guilds) != list(c.guilds)
    assert [(g >> 22) % 3 for g in a.guilds] == [0, 1, 2, 0, 1, 2]
    for guild in a.guilds.values():
        names = [ch.name for ch in guild.channels.values()]
        assert guild.system_channel_id == next(iter(guild.channels))
        assert guild.channels[guild.mod_log_channel_id].name == "mod-log" and len(names) == 3
        assert a.bot.id in guild.members


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"shards": 0}, "shards"),
        ({"channels_per_guild": 1}, "channels_per_guild"),
        ({"token": ""}, "token"),
        ({"public_url": "simulator:8000"}, "public_url"),
        ({"zlib_level": 12}, "zlib_level"),
    ],
)
def test_bad_config_names_the_setting(overrides, key):
    with pytest.raises(SimulatorConfigError) as info:
        SimulatorConfig(**overrides)
    assert info.value.key == key and key in str(info.value)


def test_scenarios_parse_and_reject_unknown_names():
    assert parse_scenarios("chat, raid") == ("chat", "raid")
    assert parse_scenarios("idle") == ()
    with pytest.raises(ValueError, match="choose from"):
        parse_scenarios("chat,party")


def test_cli_reads_environment_defaults(monkeypatch):
    monkeypatch.setenv("SIM_PORT", "9123")
    monkeypatch.setenv("SIM_SCENARIO", "chat,raid")
    monkeypatch.setenv("SIM_PUBLIC_URL", "http://simulator:8000")
    args = build_parser().parse_args(["--shards", "4"])
    assert (args.port, args.scenario, args.shards) == (9123, "chat,raid", 4)
    assert args.public_url == "http://simulator:8000"


async def test_public_url_is_advertised(make_sim, http):
    sim = await make_sim(public_url="http://simulator:8000")
    async with http.get(f"http://127.0.0.1:{sim.port}/api/v10/gateway") as response:
        assert (await response.json())["url"] == "ws://simulator:8000/gateway"
    assert sim.hub.resume_url == "ws://simulator:8000/resume"


def test_cli_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(SettingError) as info:
        build_parser({"SIM_PORT": "eighty"})
    assert str(info.value) == "SIM_PORT: expected an integer, got 'eighty'"
    with pytest.raises(SettingError, match="SIM_CHANNELS: must be >= 2, got 1"):
        build_parser({"SIM_CHANNELS": "1"})
    assert build_parser({"SIM_RATE_LIMITS": "off"}).parse_args([]).no_rate_limits


def test_cli_bad_environment_value_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spectacles.simulator", "--port", "0"],
        env={**os.environ, "SIM_GUILDS": "-1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == "spectacles-sim: configuration error: SIM_GUILDS: must be >= 0, got -1\n"
