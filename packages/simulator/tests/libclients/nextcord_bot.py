"""nextcord: REST base via `nextcord.http.Route.BASE`; the gateway URL comes from `GET /gateway`."""

import logging
import os

import nextcord
import nextcord.http

logging.basicConfig(level=logging.INFO)

nextcord.http.Route.BASE = os.environ["SIM_API_URL"]

intents = nextcord.Intents.default()
intents.message_content = True
client = nextcord.Client(intents=intents)


@client.event
async def on_ready() -> None:
    print("EVENT ready", client.user.id, flush=True)


@client.event
async def on_resumed() -> None:
    print("EVENT resumed", flush=True)


@client.event
async def on_message(message: nextcord.Message) -> None:
    print("EVENT message", message.id, flush=True)
    if message.content == "!ping":
        await message.reply("Pong!")


client.run(os.environ["SIM_TOKEN"])
