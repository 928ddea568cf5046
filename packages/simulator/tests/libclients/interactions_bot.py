"""interactions.py: REST base via `Route.BASE`; the gateway URL comes from `GET /gateway/bot`."""

import logging
import os

import interactions
from interactions.api.http.route import Route

logging.basicConfig(level=logging.INFO)

Route.BASE = os.environ["SIM_API_URL"]

bot = interactions.Client(
    # Not Intents.DEFAULT: in 5.16.0 it sets bit 17, which Discord does not document and the
    # simulator refuses with 4013 (see the simulator README's library table).
    intents=interactions.Intents.GUILDS
    | interactions.Intents.GUILD_MESSAGES
    | interactions.Intents.MESSAGE_CONTENT,
    disable_dm_commands=True,
    send_command_tracebacks=False,
)


@interactions.listen(interactions.events.Ready)
async def ready() -> None:
    print("EVENT ready", bot.user.id, flush=True)


@interactions.listen(interactions.events.Resume)
async def resumed() -> None:
    print("EVENT resumed", flush=True)


@interactions.listen(interactions.events.MessageCreate)
async def message(event: interactions.events.MessageCreate) -> None:
    print("EVENT message", event.message.id, flush=True)
    if event.message.content == "!ping":
        await event.message.reply("Pong!")


bot.start(os.environ["SIM_TOKEN"])
