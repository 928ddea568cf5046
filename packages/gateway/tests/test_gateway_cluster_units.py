"""The cluster's arithmetic and settings, without processes: shares, slices, config errors."""

from __future__ import annotations

import pytest
from gateway_testkit import TOKEN

from spectacles.gateway.cluster import fair_share, preferred_order, shard_lease_name
from spectacles.gateway.config import parse_config
from spectacles.gateway.errors import ConfigError

BASE = {"token": TOKEN, "events": ["READY"]}


@pytest.mark.parametrize("count", [1, 2, 5, 12, 13, 100])
@pytest.mark.parametrize("members", [1, 2, 3, 5, 7, 20])
def test_shares_cover_every_shard_and_differ_by_at_most_one(count: int, members: int) -> None:
    shares = [fair_share(count, members, rank) for rank in range(members)]
    assert sum(shares) == count
    assert max(shares) - min(shares) <= 1


@pytest.mark.parametrize(("count", "members"), [(12, 3), (12, 5), (7, 2), (3, 5)])
def test_each_member_claims_its_own_slice_first(count: int, members: int) -> None:
    slices = [
        preferred_order(count, members, rank)[: fair_share(count, members, rank)]
        for rank in range(members)
    ]
    flat = [shard for part in slices for shard in part]
    assert sorted(flat) == list(range(count))  # disjoint and complete: no contention at start
    for rank in range(members):
        assert sorted(preferred_order(count, members, rank)) == list(range(count))


def test_lease_names_carry_the_shard_count_so_a_new_count_runs_beside_the_old() -> None:
    assert shard_lease_name("bot", 12, 3) != shard_lease_name("bot", 24, 3)


def test_auto_is_a_shard_spec_and_the_cluster_table_is_read() -> None:
    config = parse_config(
        {**BASE, "shards": {"ids": "auto"}, "cluster": {"member_timeout": 5, "settle": 3}}
    )
    assert config.shards.auto and config.shards.ids is None
    assert config.cluster.member_timeout == 5.0 and config.cluster.settle == 3.0
    assert config.cluster.takeover_delay == config.cluster.lease_timeout + 1.0
    assert config.redacted()["shards"]["ids"] == "auto"
    env = parse_config(BASE, {"DISCORD_SHARD_IDS": "auto"})
    assert env.shards.auto
    assert not parse_config(BASE).shards.auto


def test_a_member_timeout_below_two_intervals_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"cluster\.member_timeout"):
        parse_config({**BASE, "cluster": {"heartbeat_interval": 2, "member_timeout": 3}})


def test_an_unknown_cluster_key_names_itself() -> None:
    with pytest.raises(ConfigError, match=r"cluster\.heartbeat"):
        parse_config({**BASE, "cluster": {"heartbeat": 1}})


def test_auto_mode_warns_about_what_breaks_a_cluster() -> None:
    risky = parse_config({**BASE, "shards": {"ids": "auto"}, "session_store": {"type": "file"}})
    assert any("shards.count" in w for w in risky.warnings)
    assert any("session_store.type" in w for w in risky.warnings)
    pinned = parse_config({**BASE, "shards": {"ids": "auto", "count": 4}})
    assert not any("auto" in w for w in pinned.warnings)
