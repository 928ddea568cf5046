"""Every service reads its settings the one way: a bad value is a `SettingError` in one format."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from spectacles.gateway import parse_config
from spectacles.interactions import IngressSettings
from spectacles.rest.proxy import ProxySettings
from spectacles.settings import SettingError
from spectacles.simulator.__main__ import build_parser
from spectacles.worker import WorkerSettings
from spectacles.workers.ping.handlers import PingConfig
from spectacles.workers.raid_guard.config import RaidConfig

KEY = "11" * 32
GATEWAY = {"token": "t", "events": ["READY"]}

CASES: list[tuple[str, Callable[[], object], str]] = [
    (
        "gateway",
        lambda: parse_config(GATEWAY, {"DISCORD_SHARD_COUNT": "abc"}),
        "DISCORD_SHARD_COUNT (shards.count): expected an integer, got 'abc'",
    ),
    (
        "gateway file",
        lambda: parse_config({**GATEWAY, "shards": {"count": -1}}, {}),
        "shards.count: must be >= 0, got -1",
    ),
    (
        "worker",
        lambda: WorkerSettings.from_env({"DISCORD_TOKEN": "t", "WORKER_CONCURRENCY": "abc"}),
        "WORKER_CONCURRENCY: expected an integer, got 'abc'",
    ),
    (
        "raid-guard",
        lambda: RaidConfig.from_env({"RAID_JOIN_THRESHOLD": "abc"}),
        "RAID_JOIN_THRESHOLD: expected an integer, got 'abc'",
    ),
    (
        "ping",
        lambda: PingConfig(command=" "),
        "PING_COMMAND: must not be empty (default: !ping)",
    ),
    (
        "rest proxy",
        lambda: ProxySettings.from_env({"REST_PROXY_MAX_RETRIES": "abc"}),
        "REST_PROXY_MAX_RETRIES: expected an integer, got 'abc'",
    ),
    (
        "interactions",
        lambda: IngressSettings.from_env({"DISCORD_PUBLIC_KEY": KEY, "DISCORD_SHARD_COUNT": "abc"}),
        "DISCORD_SHARD_COUNT: expected an integer, got 'abc'",
    ),
    (
        "simulator",
        lambda: build_parser({"SIM_SHARDS": "abc"}),
        "SIM_SHARDS: expected an integer, got 'abc'",
    ),
]


@pytest.mark.parametrize(("service", "read", "line"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_value_is_one_setting_error_in_one_format(
    service: str, read: Callable[[], object], line: str
) -> None:
    with pytest.raises(SettingError) as info:
        read()
    assert str(info.value) == line, service


@pytest.mark.parametrize(
    "read",
    [
        lambda: WorkerSettings.from_env({"DISCORD_TOKEN": "t", "REST_PROXY_AUTH": "s3cr3t-auth"}),
        lambda: ProxySettings.from_env({"DISCORD_TOKEN": "s3cr3t-auth", "REST_PROXY_AUTH": "x"}),
        lambda: parse_config(GATEWAY, {"DISCORD_TOKEN": "s3cr3t-auth"}),
    ],
)
def test_secrets_read_as_settings_never_show_in_repr(read: Callable[[], object]) -> None:
    assert "s3cr3t-auth" not in repr(read())


BIN = Path(sys.executable).parent
MAINS = [
    ("spectacles-gateway", {"DISCORD_TOKEN": "t", "DISCORD_EVENTS": "READY", "LOG_LEVEL": "loud"}),
    ("spectacles-ping", {"DISCORD_TOKEN": "t", "WORKER_CONCURRENCY": "0"}),
    ("spectacles-raid-guard", {"RAID_WINDOW_SECONDS": "nan"}),
    ("spectacles-rest-proxy", {"REST_PROXY_GLOBAL_LIMIT": "0"}),
    ("spectacles-interactions", {"DISCORD_PUBLIC_KEY": KEY, "INTERACTIONS_MAX_AGE": "0"}),
    ("spectacles-sim", {"SIM_PORT": "99999"}),
    ("spectacles-dead-letters", {"BROKER_GROUP": "a b"}),
]


@pytest.mark.parametrize(("program", "env"), MAINS, ids=[m[0] for m in MAINS])
def test_every_main_exits_2_with_the_one_line(
    program: str, env: dict[str, str], tmp_path: Path
) -> None:
    args = ["list", "ping"] if program == "spectacles-dead-letters" else []
    done = subprocess.run(
        [BIN / program, *args],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    variable = next(iter(set(env) - {"DISCORD_TOKEN", "DISCORD_EVENTS", "DISCORD_PUBLIC_KEY"}))
    # the variable, then (gateway only) the TOML key it overrides, then the problem
    assert re.match(rf"{program}: configuration error: {variable}( \([a-z_.]+\))?: \S", line), line
