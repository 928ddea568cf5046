"""Every service reads its settings the one way: a bad value is a `SettingError` in one format."""

from __future__ import annotations

from collections.abc import Callable

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
