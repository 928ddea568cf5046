"""disnake: REST base via `disnake.http.Route.BASE`; the gateway URL comes from `GET /gateway`."""

import logging
import os

import disnake
import disnake.http

logging.basicConfig(level=logging.INFO)

disnake.http.Route.BASE = os.environ["SIM_API_URL"]

intents = disnake.Intents.default()
intents.message_content = True
client = disnake.Client(intents=intents)


@client.event
async def on_ready() -> None:
    print("EVENT ready", client.user.id, flush=True)


@client.event
async def on_resumed() -> None:
    print("EVENT resumed", flush=True)


@client.event
async def on_message(message: disnake.Message) -> None:
    print("EVENT message", message.id, flush=True)
    if message.content == "!ping":
        await message.reply("Pong!")


client.run(os.environ["SIM_TOKEN"])
