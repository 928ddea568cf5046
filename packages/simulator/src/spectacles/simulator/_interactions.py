"""Interactions: invoking a command as a user, and Discord's rules for answering it.

An interaction must get one initial response within `interaction_response_timeout` (3 s), else it
fails ("The application did not respond") and its callback answers 10062; a second initial
response is 40060. The token then works for follow-ups and edits for `interaction_token_ttl`
(15 min), after which it is 50027 Invalid Webhook Token.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from spectacles.simulator._app_commands import AppCommand, CommandRegistry
from spectacles.simulator._command_checks import CHAT_INPUT, USER_COMMAND, FormErrors
from spectacles.simulator._config import SimulatorConfig
from spectacles.simulator._entities import Guild, Member, Message, iso
from spectacles.simulator._errors import SimulatorError, UnknownEntityError, ValidationError
from spectacles.simulator._gateway import GatewayHub
from spectacles.simulator._interaction_messages import (
    CHAT_INPUT_COMMAND_TYPE,
    CONTEXT_MENU_COMMAND_TYPE,
    EPHEMERAL,
    LOADING,
    InteractionMessage,
    check_message_body,
)
from spectacles.simulator._mentions import mentioned_users
from spectacles.simulator._world import World

__all__ = [
    "APPLICATION_COMMAND",
    "MESSAGE_COMPONENT",
    "NO_RESPONSE",
    "Interaction",
    "InteractionError",
    "Interactions",
]

PING: Final = 1
APPLICATION_COMMAND: Final = 2
MESSAGE_COMPONENT: Final = 3
# Callback types (Discord's "interaction callback type").
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL = (
    1,
    4,
    5,
    6,
    7,
    9,
)
ALLOWED_CALLBACKS: Final = {
    APPLICATION_COMMAND: (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL),
    MESSAGE_COMPONENT: (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE),
}
NO_RESPONSE: Final = "The application did not respond"
ADMINISTRATOR: Final = 1 << 3
ALL_PERMISSIONS: Final = (1 << 53) - 1
ATTACHMENT_SIZE_LIMIT: Final = 10 * 1024 * 1024
GUILD_CONTEXT: Final = 0
_MODAL_TITLE: Final = 45
# Interactions kept for the control API and the live view; older ones are forgotten (a demo runs
# for days).
MAX_KEPT: Final = 10_000


class InteractionError(SimulatorError):
    """Discord's interaction/webhook errors (10062, 40060, 50027, 10015)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _unknown_interaction() -> InteractionError:
    return InteractionError(404, 10062, "Unknown interaction")


def _already_acknowledged() -> InteractionError:
    return InteractionError(400, 40060, "Interaction has already been acknowledged.")


def _invalid_token() -> InteractionError:
    return InteractionError(401, 50027, "Invalid Webhook Token")


def _unknown_webhook() -> InteractionError:
    return InteractionError(404, 10015, "Unknown Webhook")


def member_permissions(guild: Guild, member: Member) -> int:
    """Guild-level permissions: @everyone plus the member's roles; owner and admins have all."""
    if member.user.id == guild.owner_id:
        return ALL_PERMISSIONS
    roles = {role.id: int(role.permissions) for role in guild.roles}
    permissions = roles.get(guild.id, 0)
    for role_id in member.roles:
        permissions |= roles.get(role_id, 0)
    return ALL_PERMISSIONS if permissions & ADMINISTRATOR else permissions


@dataclass(slots=True)
class Interaction:
    """One interaction and everything the app did with it."""

    id: int
    token: str
    type: int
    guild_id: int
    channel_id: int
    user_id: int
    payload: dict[str, Any]
    created_at: float
    respond_by: float
    expires_at: float
    command: AppCommand | None = None
    message: Message | None = None
    delivery: str = "gateway"
    delivered_to: int = 0
    response_type: int | None = None
    response_data: dict[str, Any] | None = None
    responded_at: float | None = None
    responded_via: str | None = None
    failed_at: float | None = None
    failure: str | None = None
    original: Message | None = None
    original_deleted: bool = False
    followups: list[InteractionMessage] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None

    def note(self, at: float, action: str, **details: Any) -> None:
        """Append to the history `GET /_sim/interactions/{id}` shows."""
        self.history.append({"at": _iso(at), "action": action, **details})

    def to_json(self) -> dict[str, Any]:
        """The control API's view of the interaction's state."""
        original = self.original
        status = (
            "failed"
            if self.failure is not None
            else "pending"
            if self.response_type is None
            else "deferred"
            if original is not None and getattr(original, "loading", False)
            else "responded"
        )
        return {
            "id": str(self.id),
            "token": self.token,
            "type": self.type,
            "command": None
            if self.command is None
            else {"id": str(self.command.id), "name": self.command.name, "type": self.command.type},
            "data": self.payload.get("data"),
            "guild_id": str(self.guild_id),
            "channel_id": str(self.channel_id),
            "user_id": str(self.user_id),
            "status": status,
            "delivery": self.delivery,
            "delivered_to": self.delivered_to,
            "created_at": _iso(self.created_at),
            "respond_by": _iso(self.respond_by),
            "token_expires_at": _iso(self.expires_at),
            "failed": self.failure is not None,
            "failure": self.failure,
            "failed_at": None if self.failed_at is None else _iso(self.failed_at),
            "response": None
            if self.response_type is None
            else {
                "type": self.response_type,
                "data": self.response_data,
                "at": _iso(self.responded_at or 0.0),
                "via": self.responded_via,
            },
            "original": None if original is None or self.original_deleted else original.to_json(),
            "original_deleted": self.original_deleted,
            "followups": [m.to_json() for m in self.followups],
            "history": self.history,
        }


def command_data(command: AppCommand) -> dict[str, Any]:
    """The interaction's `data` for a command, before options or a target are added."""
    data: dict[str, Any] = {"id": str(command.id), "name": command.name, "type": command.type}
    if command.guild_id is not None:
        data["guild_id"] = str(command.guild_id)
    return data


def _message_type(command: AppCommand | None) -> int:
    """CHAT_INPUT_COMMAND (20), CONTEXT_MENU_COMMAND (23); DEFAULT for component answers."""
    if command is None:
        return 0
    return CHAT_INPUT_COMMAND_TYPE if command.type == CHAT_INPUT else CONTEXT_MENU_COMMAND_TYPE


def _iso(at: float) -> str:
    return iso(datetime.fromtimestamp(at, tz=UTC))


OutgoingDelivery = Callable[[Interaction], Awaitable[None]]


class Interactions:
    """Creates interactions and enforces the response rules; shared by REST and the control API."""

    def __init__(
        self,
        config: SimulatorConfig,
        world: World,
        hub: GatewayHub,
        commands: CommandRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.world = world
        self.hub = hub
        self.commands = commands
        self.clock = clock
        self.by_id: dict[int, Interaction] = {}
        self._by_token: dict[str, Interaction] = {}
        # Set in outgoing-webhook mode: interactions are POSTed there instead of dispatched.
        self.outgoing: OutgoingDelivery | None = None

    def stop(self) -> None:
        """Cancel the pending response deadlines."""
        for interaction in self.by_id.values():
            if interaction.timer is not None:
                interaction.timer.cancel()

    # -- creating ---------------------------------------------------------------------------

    def invoke(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: AppCommand | None,
        data: dict[str, Any],
        *,
        interaction_type: int = APPLICATION_COMMAND,
        message: Message | None = None,
    ) -> Interaction:
        """Create the interaction and deliver it (gateway INTERACTION_CREATE or outgoing POST)."""
        guild = self.world.guild(guild_id)
        channel = self.world.channel(channel_id)
        member = self.world.member(guild_id, user_id)
        now = self.clock()
        interaction_id = self.world.next_id()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        bot_member = guild.members.get(self.world.bot.id)
        app_permissions = member_permissions(guild, bot_member) if bot_member else 0
        member_json = member.to_json()
        member_json["permissions"] = str(member_permissions(guild, member))
        channel_json = channel.to_json()
        channel_json["permissions"] = member_json["permissions"]
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.world.application_id),
            "type": interaction_type,
            "data": data,
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "guild_id": str(guild.id),
            "channel": channel_json,
            "channel_id": str(channel.id),
            "member": member_json,
            "token": token,
            "version": 1,
            "app_permissions": str(app_permissions),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": GUILD_CONTEXT,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if message is not None:
            payload["message"] = message.to_json()
        interaction = Interaction(
            id=interaction_id,
            token=token,
            type=interaction_type,
            guild_id=guild.id,
            channel_id=channel.id,
            user_id=user_id,
            payload=payload,
            created_at=now,
            respond_by=now + self.config.interaction_response_timeout,
            expires_at=now + self.config.interaction_token_ttl,
            command=command,
            message=message,
        )
        self.by_id[interaction.id] = interaction
        self._by_token[token] = interaction
        while len(self.by_id) > MAX_KEPT:
            oldest = self.by_id.pop(next(iter(self.by_id)))
            self._by_token.pop(oldest.token, None)
            if oldest.timer is not None:
                oldest.timer.cancel()
        interaction.note(now, "created", user_id=str(user_id))
        loop = asyncio.get_running_loop()
        interaction.timer = loop.call_at(
            loop.time() + self.config.interaction_response_timeout, self._settle, interaction
        )
        if self.outgoing is not None:
            interaction.delivery = "webhook"
            self.hub.spawn(self.outgoing(interaction))
        else:
            interaction.delivered_to = self.hub.dispatch("INTERACTION_CREATE", payload, guild.id)
        return interaction

    def _settle(self, interaction: Interaction) -> None:
        """Fail the interaction when its response deadline passed without a response."""
        if interaction.response_type is not None or interaction.failure is not None:
            return
        if self.clock() < interaction.respond_by:
            return
        interaction.failure = NO_RESPONSE
        interaction.failed_at = self.clock()
        interaction.note(interaction.failed_at, "failed", reason=NO_RESPONSE)

    def fail(self, interaction: Interaction, reason: str) -> None:
        """Mark an interaction failed now (the outgoing endpoint answered badly)."""
        if interaction.response_type is None and interaction.failure is None:
            interaction.failure = reason
            interaction.failed_at = self.clock()
            interaction.note(interaction.failed_at, "failed", reason=reason)

    def state(self, interaction: Interaction) -> dict[str, Any]:
        """The interaction's state, its deadline applied first."""
        self._settle(interaction)
        return interaction.to_json()

    # -- the initial response ---------------------------------------------------------------

    def callback(
        self, interaction_id: int, token: str, body: dict[str, Any], *, via: str = "callback"
    ) -> dict[str, Any]:
        """Apply an initial response; returns the interaction callback response object."""
        interaction = self.by_id.get(interaction_id)
        if interaction is None or not secrets.compare_digest(interaction.token, token):
            raise _unknown_interaction()
        self._settle(interaction)
        if interaction.response_type is not None:
            raise _already_acknowledged()
        if interaction.failure is not None:
            raise _unknown_interaction()
        kind = body.get("type")
        allowed = ALLOWED_CALLBACKS.get(interaction.type, ())
        if not isinstance(kind, int) or kind not in allowed:
            errors = FormErrors()
            choices = ", ".join(str(a) for a in allowed)
            errors.add(("type",), "BASE_TYPE_CHOICES", f"Value must be one of {{{choices}}}.")
            raise ValidationError(50035, "Invalid Form Body", errors.tree)
        data = body.get("data") or {}
        if not isinstance(data, dict):
            errors = FormErrors()
            errors.add(("data",), "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
            errors.raise_if_any()
        self._respond(interaction, kind, data)
        now = self.clock()
        interaction.response_type, interaction.response_data = kind, data
        interaction.responded_at, interaction.responded_via = now, via
        if interaction.timer is not None:
            interaction.timer.cancel()
        interaction.note(now, "response", type=kind, via=via)
        return self._callback_response(interaction)

    def _respond(self, interaction: Interaction, kind: int, data: dict[str, Any]) -> None:
        if kind == CHANNEL_MESSAGE:
            check_message_body(data, prefix=("data",))
            interaction.original = self._send(interaction, data, followup=False)
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            check_message_body(data, prefix=("data",), require_content=False)
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            interaction.original = self._send(interaction, {"flags": flags}, followup=False)
        elif kind in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            interaction.original = interaction.message
            if kind == UPDATE_MESSAGE and interaction.message is not None:
                check_message_body(data, prefix=("data",), require_content=False)
                self._edit(interaction, interaction.message, data)
        elif kind == MODAL:
            errors = FormErrors()
            custom_id, title = data.get("custom_id"), data.get("title")
            if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
                errors.add(("data", "custom_id"), "BASE_TYPE_BAD_LENGTH", "Must be 1-100 long.")
            if not isinstance(title, str) or not 1 <= len(title) <= _MODAL_TITLE:
                errors.add(("data", "title"), "BASE_TYPE_BAD_LENGTH", "Must be 1-45 long.")
            components = data.get("components")
            if not isinstance(components, list) or not 1 <= len(components) <= 5:
                errors.add(("data", "components"), "BASE_TYPE_BAD_LENGTH", "Must be 1-5 long.")
            errors.raise_if_any()

    def _callback_response(self, interaction: Interaction) -> dict[str, Any]:
        """Discord's interaction callback response (`resource` only for types 4 and 7)."""
        original = interaction.original
        summary: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "activity_instance_id": None,
            "channel_id": str(interaction.channel_id),
            "guild_id": str(interaction.guild_id),
        }
        if original is not None:
            summary["response_message_id"] = str(original.id)
            loading = isinstance(original, InteractionMessage) and original.loading
            ephemeral = isinstance(original, InteractionMessage) and original.ephemeral
            summary["response_message_loading"] = loading
            summary["response_message_ephemeral"] = ephemeral
        response: dict[str, Any] = {"interaction": summary}
        if original is not None and interaction.response_type in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
            response["resource"] = {
                "type": interaction.response_type,
                "message": original.to_json(),
            }
        return response

    # -- messages through the token ---------------------------------------------------------

    def _send(
        self, interaction: Interaction, data: dict[str, Any], *, followup: bool
    ) -> InteractionMessage:
        user = self.world.user(interaction.user_id)
        command = interaction.command
        metadata: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": user.to_json(),
            "authorizing_integration_owners": {"0": str(interaction.guild_id)},
        }
        target = (interaction.payload.get("data") or {}).get("target_id")
        if command is not None and target is not None:
            if command.type == USER_COMMAND:
                metadata["target_user"] = self.world.user(int(target)).to_json()
            else:
                metadata["target_message_id"] = target
        if interaction.message is not None:
            metadata["interacted_message_id"] = str(interaction.message.id)
        if followup and interaction.original is not None:
            metadata["original_response_message_id"] = str(interaction.original.id)
        legacy = None
        if command is not None:
            legacy = {
                "id": str(interaction.id),
                "type": interaction.type,
                "name": command.name,
                "user": user.to_json(),
            }
        content = data.get("content") or ""
        message = InteractionMessage(
            id=self.world.next_id(),
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            author=self.world.bot,
            content=content,
            timestamp=self.world.now(),
            type=_message_type(command),
            mentions=mentioned_users(self.world, interaction.guild_id, content),
            mention_everyone="@everyone" in content,
            embeds=list(data.get("embeds") or []),
            flags=int(data.get("flags") or 0),
            application_id=self.world.application_id,
            interaction_metadata=metadata,
            legacy_interaction=legacy,
            components=list(data.get("components") or []),
        )
        if not message.ephemeral:
            self.world.channel(interaction.channel_id).messages.append(message)
            self._dispatch("MESSAGE_CREATE", message)
        return message

    def _dispatch(self, event: str, message: Message) -> None:
        data = message.to_json()
        data["guild_id"] = str(message.guild_id)
        member = self.world.guilds[message.guild_id].members.get(message.author.id)
        if member is not None:
            data["member"] = member.to_json(with_user=False)
        self.hub.dispatch(event, data, message.guild_id, content_exempt=True)

    def _edit(self, interaction: Interaction, message: Message, changes: dict[str, Any]) -> None:
        if "content" in changes:
            content = changes["content"] or ""
            message.content = content
            message.mentions = mentioned_users(self.world, interaction.guild_id, content)
        if "embeds" in changes:
            message.embeds = list(changes["embeds"] or [])
        if isinstance(message, InteractionMessage):
            if "components" in changes:
                message.components = list(changes["components"] or [])
            message.flags &= ~LOADING
            message.edited_timestamp = self.world.now()
        ephemeral = isinstance(message, InteractionMessage) and message.ephemeral
        if not ephemeral:
            self._dispatch("MESSAGE_UPDATE", message)

    def by_token(self, application_id: int, token: str) -> Interaction:
        """The interaction a webhook token belongs to, if it still works for follow-ups."""
        interaction = self._by_token.get(token)
        if interaction is None:
            raise _invalid_token()
        if application_id != self.world.application_id:
            raise _unknown_webhook()
        self._settle(interaction)
        if self.clock() >= interaction.expires_at:
            raise _invalid_token()
        if interaction.response_type is None:
            raise _unknown_webhook()
        return interaction

    def followup(self, interaction: Interaction, body: dict[str, Any]) -> Message:
        """A follow-up; the first one after a deferral completes the "thinking" message."""
        check_message_body(body)
        now = self.clock()
        original = interaction.original
        if (
            isinstance(original, InteractionMessage)
            and original.loading
            and not interaction.original_deleted
        ):
            self._edit(interaction, original, body)
            interaction.note(now, "followup", message_id=str(original.id), completed_defer=True)
            return original
        message = self._send(interaction, body, followup=True)
        interaction.followups.append(message)
        interaction.note(now, "followup", message_id=str(message.id))
        return message

    def find_message(self, interaction: Interaction, message_id: str) -> Message:
        """`@original` or one of the interaction's follow-ups, else 10008."""
        original = interaction.original
        if message_id == "@original":
            if original is None or interaction.original_deleted:
                raise UnknownEntityError("message", message_id)
            return original
        for message in [original, *interaction.followups]:
            if message is not None and str(message.id) == message_id:
                if message is original and interaction.original_deleted:
                    break
                return message
        raise UnknownEntityError("message", message_id)

    def edit_message(
        self, interaction: Interaction, message: Message, changes: dict[str, Any]
    ) -> Message:
        """PATCH through the token: MESSAGE_UPDATE unless ephemeral."""
        check_message_body(changes, require_content=False)
        after = {
            "content": changes.get("content", message.content),
            "embeds": changes.get("embeds", message.embeds),
            "components": changes.get("components", getattr(message, "components", None)),
        }
        if not any(after.values()):
            raise ValidationError(50006, "Cannot send an empty message")
        self._edit(interaction, message, changes)
        interaction.note(self.clock(), "edit", message_id=str(message.id))
        return message

    def delete_message(self, interaction: Interaction, message: Message) -> None:
        """DELETE through the token: MESSAGE_DELETE unless ephemeral."""
        channel = self.world.channel(interaction.channel_id)
        if message in channel.messages:
            channel.messages.remove(message)
            deleted = {
                "id": str(message.id),
                "channel_id": str(message.channel_id),
                "guild_id": str(message.guild_id),
            }
            self.hub.dispatch("MESSAGE_DELETE", deleted, message.guild_id)
        if message is interaction.original:
            interaction.original_deleted = True
        else:
            interaction.followups = [m for m in interaction.followups if m is not message]
        interaction.note(self.clock(), "delete", message_id=str(message.id))

    # -- looking things up ------------------------------------------------------------------

    def use(self, guild: Guild, channel_id: int, member: Member, name: str) -> Interaction | None:
        """A member types `/name` with no options (the demo's chat); None when not offered."""
        command = self.command_for(guild, member, name)
        if command is None or any(o.get("required") for o in command.options):
            return None
        data = command_data(command)
        return self.invoke(guild.id, channel_id, member.user.id, command, data)

    def command_for(
        self, guild: Guild, member: Member, name: str, kind: int = CHAT_INPUT
    ) -> AppCommand | None:
        """The command a member's client offers under `name` (permissions and contexts honoured)."""
        command = self.commands.available(guild.id, name, kind)
        if command is None:
            return None
        contexts = command.body.get("contexts")
        if command.guild_id is None and contexts is not None and GUILD_CONTEXT not in contexts:
            return None
        required = command.body.get("default_member_permissions")
        if required is not None:
            have = member_permissions(guild, member)
            if have & ADMINISTRATOR == 0 and have != ALL_PERMISSIONS:
                needed = int(required)
                if needed == 0 or have & needed != needed:
                    return None
        return command
