from spectacles.models import (
    ApplicationCommand,
    ApplicationCommandOption,
    ApplicationCommandOptionType,
    Interaction,
    InteractionType,
    decode_event,
    encode,
)

# An INTERACTION_CREATE as Discord documents it (guild slash command with a boolean option).
SLASH = b"""{
  "id": "1180000000000000001", "application_id": "1180000000000000002", "type": 2,
  "data": {"id": "1180000000000000003", "name": "ping", "type": 1,
           "options": [{"name": "ephemeral", "type": 5, "value": true}]},
  "guild_id": "1180000000000000004", "channel_id": "1180000000000000005",
  "member": {"user": {"id": "1180000000000000006", "username": "alice"}, "roles": [],
             "permissions": "2147483647"},
  "token": "tok-en", "version": 1, "locale": "en-US", "app_permissions": "8"
}"""


def test_interaction_create_decodes_into_a_typed_interaction() -> None:
    interaction = decode_event("INTERACTION_CREATE", SLASH)
    assert isinstance(interaction, Interaction)
    assert interaction.type == InteractionType.APPLICATION_COMMAND
    assert interaction.data is not None and interaction.data.name == "ping"
    assert interaction.option("ephemeral") is True
    assert interaction.option("missing", 3) == 3
    assert interaction.author is not None and interaction.author.username == "alice"
    assert interaction.guild_id == 1180000000000000004


def test_dm_interaction_author_is_the_user() -> None:
    raw = (
        b'{"id": "1", "application_id": "2", "type": 2, "data": {"name": "ping"}, "token": "t",'
        b' "user": {"id": "9", "username": "bob"}}'
    )
    interaction = decode_event("INTERACTION_CREATE", raw)
    assert interaction.author.username == "bob" and interaction.member is None


def test_command_definition_encodes_only_what_was_set() -> None:
    command = ApplicationCommand(
        name="ping",
        description="Latency check",
        options=[
            ApplicationCommandOption(
                type=ApplicationCommandOptionType.BOOLEAN,
                name="ephemeral",
                description="Only you see the answer",
            )
        ],
    )
    assert encode(command) == (
        b'{"name":"ping","description":"Latency check","options":[{"type":5,'
        b'"name":"ephemeral","description":"Only you see the answer"}]}'
    )
