"""py-cord: REST base via `discord.http.Route.API_BASE_URL`; the gateway URL from `GET /gateway`."""

import logging
import os

import discord
import discord.http

logging.basicConfig(level=logging.INFO)

discord.http.Route.API_BASE_URL = os.environ["SIM_API_URL"]

intents = discord.Intents.default()
intents.message_content = True
client = discord.Client(intents=intents)


@client.event
async def on_ready() -> None:
    print("EVENT ready", client.user.id, flush=True)


@client.event
async def on_resumed() -> None:
    print("EVENT resumed", flush=True)


@client.event
async def on_message(message: discord.Message) -> None:
    print("EVENT message", message.id, flush=True)
    if message.content == "!ping":
        await message.reply("Pong!")


client.run(os.environ["SIM_TOKEN"])
