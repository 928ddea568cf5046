"""Raid detection, alert text and settings, without RabbitMQ or Discord."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spectacles.workers.raid_guard.config import RaidAction, RaidConfig, RaidConfigError
from spectacles.workers.raid_guard.detector import Joiner, Raid, RaidDetector, RaidStarted
from spectacles.workers.raid_guard.guard import raid_alert

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
GUILD = 1500000000000000001


def joiner(n: int, at_seconds: float, *, age_days: float = 100, guild: int = GUILD) -> Joiner:
    joined = T0 + timedelta(seconds=at_seconds)
    return Joiner(
        guild_id=guild,
        user_id=1500000000000001000 + n,
        joined_at=joined,
        account_created_at=joined - timedelta(days=age_days),
        name=f"user{n}",
    )


def detector(threshold: int = 10, window: float = 10.0) -> RaidDetector:
    return RaidDetector(threshold=threshold, window=timedelta(seconds=window))


def test_burst_starts_one_raid_then_continues() -> None:
    d = detector()
    verdicts = [d.observe(joiner(n, n * 0.2), now=n) for n in range(25)]
    started = [v for v in verdicts if isinstance(v, RaidStarted)]
    assert len(started) == 1
    assert verdicts[9] is started[0]  # the 10th join crosses the threshold
    assert all(v is None for v in verdicts[:9])
    assert all(isinstance(v, Raid) for v in verdicts[10:])
    raid = started[0].raid
    assert len(raid.joiners) == 10
    assert raid.last_seen == 24


def test_joins_spread_wider_than_the_window_are_no_raid() -> None:
    d = detector(threshold=10, window=10.0)
    # 8 joins over 60 s, and also 30 joins 1.5 s apart (never 10 inside 10 s).
    assert all(d.observe(joiner(n, n * 60 / 8), now=n) is None for n in range(8))
    other = 1500000000000000002
    assert all(d.observe(joiner(n, n * 1.5, guild=other), now=n) is None for n in range(30))


def test_window_uses_join_times_not_arrival_time() -> None:
    d = detector(threshold=3, window=10.0)
    # A backlog delivered in one burst: joins 20 s apart arrive at the same instant.
    assert all(d.observe(joiner(n, n * 20), now=0.0) is None for n in range(5))


def test_duplicates_and_out_of_order_joins() -> None:
    d = detector(threshold=3, window=10.0)
    assert d.observe(joiner(1, 5), now=0) is None
    assert d.observe(joiner(1, 5), now=0) is None  # a redelivery is not a second join
    assert d.observe(joiner(2, 1), now=0) is None  # earlier join arriving later
    assert isinstance(d.observe(joiner(3, 3), now=0), RaidStarted)


def test_guilds_are_independent_and_end_starts_afresh() -> None:
    d = detector(threshold=3)
    for n in range(3):
        d.observe(joiner(n, n), now=n)
    assert d.raid(GUILD) is not None
    assert d.raid(GUILD + 1) is None
    ended = d.end(GUILD)
    assert ended is not None and len(ended.joiners) == 3
    assert d.raid(GUILD) is None
    assert d.observe(joiner(10, 100), now=100) is None


def test_alert_names_count_window_and_ages() -> None:
    d = detector(threshold=4)
    ages = [0.1, 2, 30, 400]
    verdicts = [d.observe(joiner(n, n, age_days=a), now=n) for n, a in enumerate(ages)]
    started = verdicts[-1]
    assert isinstance(started, RaidStarted)
    config = RaidConfig(join_threshold=4, action=RaidAction.KICK, min_account_age_days=7)
    young = [j for j in started.raid.joiners if j.account_age < timedelta(days=7)]
    text = raid_alert(started.raid, config, verification="Verification raised.", young=young)
    assert "Raid detected" in text
    assert "4 members joined within 3.0 s" in text
    assert "threshold: 4 in 10 s" in text
    assert "Action: kicked (2 of 4 accounts younger than 7 days" in text
    assert "400 d old" in text
    assert "<@1500000000000001000> user0: 2 h old" in text


def test_alert_stays_under_discords_limit() -> None:
    d = detector(threshold=500, window=100.0)
    started = None
    for n in range(500):
        started = d.observe(joiner(n, n * 0.1, age_days=n / 10), now=n) or started
    assert isinstance(started, RaidStarted)
    text = raid_alert(started.raid, RaidConfig(), verification="x", young=[])
    assert len(text) < 2000
    assert "and 485 more" in text


def test_config_from_env() -> None:
    config = RaidConfig.from_env(
        {
            "RAID_JOIN_THRESHOLD": "5",
            "RAID_WINDOW_SECONDS": "2.5",
            "RAID_COOLDOWN_SECONDS": "60",
            "RAID_ACTION": "Timeout",
            "RAID_MIN_ACCOUNT_AGE_DAYS": "3",
            "RAID_TIMEOUT_MINUTES": "15",
            "RAID_MODLOG_CHANNEL_ID": "111",
            "RAID_MODLOG_CHANNELS": "1:10, 2:20",
        }
    )
    assert config.join_threshold == 5
    assert config.window_seconds == 2.5
    assert config.action is RaidAction.TIMEOUT
    assert config.modlog_channels == {1: 10, 2: 20}
    assert config.modlog_channel_id == 111
    defaults = RaidConfig.from_env({})
    assert (defaults.join_threshold, defaults.window_seconds) == (10, 10.0)
    assert defaults.action is RaidAction.ALERT
    assert defaults.modlog_channel_id is None and defaults.modlog_channels == {}


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"RAID_ACTION": "nuke"}, "RAID_ACTION"),
        ({"RAID_JOIN_THRESHOLD": "ten"}, "RAID_JOIN_THRESHOLD"),
        ({"RAID_JOIN_THRESHOLD": "1"}, "RAID_JOIN_THRESHOLD"),
        ({"RAID_WINDOW_SECONDS": "0"}, "RAID_WINDOW_SECONDS"),
        ({"RAID_WINDOW_SECONDS": "nan"}, "RAID_WINDOW_SECONDS"),
        ({"RAID_WINDOW_SECONDS": "inf"}, "RAID_WINDOW_SECONDS"),
        ({"RAID_COOLDOWN_SECONDS": "NaN"}, "RAID_COOLDOWN_SECONDS"),
        ({"RAID_COOLDOWN_SECONDS": "Infinity"}, "RAID_COOLDOWN_SECONDS"),
        ({"RAID_RESTORE_RETRY_SECONDS": "inf"}, "RAID_RESTORE_RETRY_SECONDS"),
        ({"RAID_MIN_ACCOUNT_AGE_DAYS": "nan"}, "RAID_MIN_ACCOUNT_AGE_DAYS"),
        ({"RAID_MIN_ACCOUNT_AGE_DAYS": "-inf"}, "RAID_MIN_ACCOUNT_AGE_DAYS"),
        ({"RAID_TIMEOUT_MINUTES": "999999"}, "RAID_TIMEOUT_MINUTES"),
        ({"RAID_MODLOG_CHANNELS": "1=2"}, "RAID_MODLOG_CHANNELS"),
        ({"RAID_MODLOG_CHANNEL_ID": "#mod-log"}, "RAID_MODLOG_CHANNEL_ID"),
    ],
)
def test_bad_config_names_the_variable(env: dict[str, str], key: str) -> None:
    with pytest.raises(RaidConfigError) as info:
        RaidConfig.from_env(env)
    assert info.value.key == key
    assert str(info.value).startswith(key)


@pytest.mark.parametrize(
    ("field", "key"),
    [
        ("window_seconds", "RAID_WINDOW_SECONDS"),
        ("cooldown_seconds", "RAID_COOLDOWN_SECONDS"),
        ("restore_retry_seconds", "RAID_RESTORE_RETRY_SECONDS"),
        ("min_account_age_days", "RAID_MIN_ACCOUNT_AGE_DAYS"),
    ],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_built_in_code_name_the_variable(
    field: str, key: str, value: float
) -> None:
    with pytest.raises(RaidConfigError) as info:
        RaidConfig(**{field: value})
    assert info.value.key == key
