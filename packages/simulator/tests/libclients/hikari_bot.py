"""hikari: `GatewayBot(rest_url=...)`; the gateway URL comes from `GET /gateway/bot`."""

import logging
import os

import hikari

logging.basicConfig(level=logging.INFO)

bot = hikari.GatewayBot(
    os.environ["SIM_TOKEN"],
    rest_url=os.environ["SIM_API_URL"],
    intents=hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT,
    banner=None,
)


@bot.listen(hikari.ShardReadyEvent)
async def ready(event: hikari.ShardReadyEvent) -> None:
    print("EVENT ready", event.my_user.id, flush=True)


@bot.listen(hikari.ShardResumedEvent)
async def resumed(event: hikari.ShardResumedEvent) -> None:
    print("EVENT resumed", flush=True)


@bot.listen(hikari.GuildMessageCreateEvent)
async def message(event: hikari.GuildMessageCreateEvent) -> None:
    print("EVENT message", event.message.id, flush=True)
    if event.message.content == "!ping":
        await event.message.respond("Pong!", reply=True)


bot.run(enable_signal_handlers=True, check_for_updates=False)
