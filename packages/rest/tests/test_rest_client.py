"""Every RestClient helper against the simulator."""

from datetime import UTC, datetime, timedelta
from typing import Any

from spectacles.models import AllowedMentions
from spectacles.rest import GatewayBot, RestClient


async def first_guild(sim: Any) -> tuple[int, int, dict[str, Any]]:
    guild = (await sim.guilds())[0]
    return int(guild["id"]), int(guild["system_channel_id"]), guild


async def plain_member(sim: Any, guild_id: int, index: int = 1) -> int:
    detail = await sim.guild(guild_id)
    members = [m for m in detail["members"] if not m["bot"] and m["id"] != detail["owner_id"]]
    return int(members[index]["id"])


async def test_create_message_replies_with_allowed_mentions(make_sim: Any) -> None:
    sim = await make_sim()
    guild_id, channel_id, _ = await first_guild(sim)
    user_message = await sim.control(
        "POST", f"/guilds/{guild_id}/channels/{channel_id}/messages", {"content": "!ping"}
    )
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        me = await rest.get_current_user()
        reply = await rest.create_message(
            channel_id,
            "Pong!",
            reply_to=int(user_message["id"]),
            allowed_mentions=AllowedMentions(parse=[], replied_user=False),
        )
    assert reply.content == "Pong!"
    assert reply.channel_id == channel_id
    assert reply.author.id == me.id and reply.author.bot
    assert reply.message_reference is not None
    assert reply.message_reference.message_id == int(user_message["id"])
    stored = [m for m in await sim.messages(channel_id) if m["id"] == str(reply.id)]
    assert stored and stored[0]["message_reference"]["message_id"] == user_message["id"]


async def test_timeout_then_clear_member(make_sim: Any) -> None:
    sim = await make_sim()
    guild_id, _, _ = await first_guild(sim)
    user_id = await plain_member(sim, guild_id)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        member = await rest.timeout_member(guild_id, user_id, until, reason="spam")
        assert member.user is not None and member.user.id == user_id
        assert member.communication_disabled_until == until
        timeouts = (await sim.guild(guild_id))["timeouts"]
        assert [t["user_id"] for t in timeouts] == [str(user_id)]
        cleared = await rest.modify_member(guild_id, user_id, communication_disabled_until=None)
    assert cleared.communication_disabled_until is None
    assert (await sim.guild(guild_id))["timeouts"] == []
    patch = next(c for c in await sim.rest_log() if c["method"] == "PATCH")
    assert patch["reason"] == "spam"


async def test_kick_member(make_sim: Any) -> None:
    sim = await make_sim()
    guild_id, _, _ = await first_guild(sim)
    user_id = await plain_member(sim, guild_id)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        assert await rest.kick_member(guild_id, user_id, reason="raid") is None
    members = {m["id"] for m in (await sim.guild(guild_id))["members"]}
    assert str(user_id) not in members


async def test_ban_member(make_sim: Any) -> None:
    sim = await make_sim()
    guild_id, _, _ = await first_guild(sim)
    user_id = await plain_member(sim, guild_id, 2)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        await rest.ban_member(guild_id, user_id, delete_message_seconds=3600, reason="raid")
    bans = (await sim.guild(guild_id))["bans"]
    assert [(b["user_id"], b["reason"]) for b in bans] == [(str(user_id), "raid")]


async def test_modify_guild_verification_level(make_sim: Any) -> None:
    sim = await make_sim()
    guild_id, _, _ = await first_guild(sim)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        guild = await rest.modify_guild(guild_id, verification_level=3, reason="raid")
    assert guild.id == guild_id and guild.verification_level == 3
    assert (await sim.guild(guild_id))["verification_level"] == 3


async def test_gets(make_sim: Any) -> None:
    sim = await make_sim()
    guild_id, channel_id, summary = await first_guild(sim)
    user_id = await plain_member(sim, guild_id)
    async with RestClient(sim.token, base_url=sim.api_url) as rest:
        guild = await rest.get_guild(guild_id)
        channel = await rest.get_channel(channel_id)
        user = await rest.get_user(user_id)
        member = await rest.get_member(guild_id, user_id)
        me = await rest.get_current_user()
        gateway = await rest.get_gateway()
        gateway_bot = await rest.get_gateway_bot()
    assert (guild.id, guild.name) == (guild_id, summary["name"])
    assert (channel.id, channel.guild_id) == (channel_id, guild_id)
    assert user.id == user_id and not user.bot
    assert member.user is not None and member.user.id == user_id
    assert me.bot
    assert gateway == sim.sim.gateway_url
    assert isinstance(gateway_bot, GatewayBot)
    assert gateway_bot.url == sim.sim.gateway_url
    assert gateway_bot.shards == 1
    limit = gateway_bot.session_start_limit
    assert limit.total >= limit.remaining > 0 and limit.max_concurrency == 1
