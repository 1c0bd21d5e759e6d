"""The sandbox's messages, files and direct-message channels, and the payloads Discord sends
for them (MESSAGE_CREATE/UPDATE/DELETE bodies, attachments, DM channels).

Shared by the REST routes (`rest.py`), the interaction responses (`responses.py`) and what
users do (`server.py`); it knows the world, not the gateway: publishing is the caller's.
"""

from __future__ import annotations

import itertools
import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.sandbox.world import SandboxUser, World, now_iso

VOICE_FLAG = 1 << 13  # MessageFlags.voice
WEBHOOK_NAME = "Sandbox Webhook"


@dataclass
class SentFile:
    filename: str
    data: bytes
    content_type: str


def snowflakes(start: int) -> Callable[[], int]:
    counter = itertools.count(start)
    # A real-looking snowflake: timestamp bits make created_at sane for the client.
    return lambda: ((int(time.time() * 1000) - 1420070400000) << 22) + next(counter) % 4096


class MessageStore:
    """Every message of every channel by id, the files they carry and the DM channels."""

    def __init__(self, world: World, base_url: Callable[[], str]) -> None:
        """`base_url` gives the sandbox's address once it listens (attachment URLs)."""
        self.world = world
        self.base_url = base_url
        self.next_id = snowflakes(1)
        self.messages: dict[int, dict[str, Any]] = {}
        self.files: dict[str, SentFile] = {}  # "attachment_id/filename" -> file
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.webhooks: dict[int, int] = {}  # channel id -> the id of its webhook

    # ----- direct messages ---------------------------------------------------------------

    def dm_channel(self, user_id: int) -> int:
        if user_id not in self.dm_channels:
            self.dm_channels[user_id] = self.next_id()
        return self.dm_channels[user_id]

    def dm_payload(self, user_id: int) -> dict[str, Any]:
        return {
            "id": str(self.dm_channel(user_id)),
            "type": 1,
            "recipients": [self.world.user_by_id(user_id).payload()],
            "last_message_id": None,
        }

    def is_dm(self, channel_id: int) -> bool:
        return channel_id in self.dm_channels.values()

    # ----- messages ------------------------------------------------------------------------

    def get(self, message_id: int) -> dict[str, Any]:
        """The stored message; ValueError for an id the sandbox doesn't have."""
        message = self.messages.get(int(message_id))
        if message is None:
            raise ValueError(f"there is no message {message_id}")
        return message

    def store_file(self, filename: str, data: bytes, voice: bool = False) -> dict[str, Any]:
        attachment_id = self.next_id()
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if voice:
            content_type = "audio/ogg"
        self.files[f"{attachment_id}/{filename}"] = SentFile(filename, data, content_type)
        url = f"{self.base_url()}/attachments/{attachment_id}/{filename}"
        attachment: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        if voice:
            attachment.update(duration_secs=1.0, waveform="AAAA")
        return attachment

    def message(
        self,
        author: SandboxUser,
        channel_id: int,
        content: str,
        *,
        attachments: list[dict[str, Any]] | None = None,
        flags: int = 0,
        reference: int | None = None,
        embeds: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(self.next_id()),
            "channel_id": str(channel_id),
            "author": author.payload(),
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": embeds or [],
            "pinned": False,
            "type": 19 if reference else 0,
            "flags": flags,
        }
        guild = self.world.guild_of_channel(channel_id)
        if guild is not None:
            message["guild_id"] = str(guild.id)
            message["member"] = self.world.member(author, guild, with_user=False)
        message["mentions"] = self.mentions(content)
        if reference:
            message["message_reference"] = {
                "message_id": str(reference),
                "channel_id": str(channel_id),
                "guild_id": message.get("guild_id"),
            }
            # Discord sends null for a referenced message that was deleted; a reply always
            # refers to a message of its own channel.
            referenced = self.messages.get(reference)
            same_channel = referenced is not None and referenced["channel_id"] == str(channel_id)
            message["referenced_message"] = referenced if same_channel else None
        self.messages[int(message["id"])] = message
        return message

    def webhook_message(self, channel_id: int, content: str) -> dict[str, Any]:
        """A message the channel's webhook posts: `webhook_id` set, the webhook as its author
        (a bot user with the webhook's id), no member, as Discord sends it."""
        if channel_id not in self.webhooks:
            self.webhooks[channel_id] = self.next_id()
        webhook_id = self.webhooks[channel_id]
        webhook = SandboxUser(webhook_id, WEBHOOK_NAME, bot=True)
        message = self.message(webhook, channel_id, content)
        message.pop("member", None)
        message["author"] = {**webhook.payload(), "global_name": None, "discriminator": "0000"}
        message["webhook_id"] = str(webhook_id)
        return message

    def mentions(self, content: str) -> list[dict[str, Any]]:
        """The users `content` mentions, as the message's `mentions`."""
        people = [self.world.bot_user, *self.world.users.values()]
        return [u.payload() for u in people if f"<@{u.id}>" in content]

    def edit(self, message_id: int, content: str) -> dict[str, Any]:
        """The message with new content, as MESSAGE_UPDATE carries it: mentions and the
        author's member recomputed, `edited_timestamp` set."""
        message = self.get(message_id)
        message["content"] = content
        message["mentions"] = self.mentions(content)
        message["edited_timestamp"] = now_iso()
        guild = self.world.guild_of_channel(int(message["channel_id"]))
        author_id = int(message["author"]["id"])
        people = [self.world.bot_user, *self.world.users.values()]
        author = next((u for u in people if u.id == author_id), None)
        if guild is not None and "member" in message and author is not None:
            message["member"] = self.world.member(author, guild, with_user=False)
        return message

    def delete(self, message_id: int) -> dict[str, Any]:
        """Remove the message; the MESSAGE_DELETE body (no `guild_id` in a DM)."""
        message = self.get(message_id)
        del self.messages[int(message["id"])]
        return deleted_event(message)


def deleted_event(message: dict[str, Any]) -> dict[str, Any]:
    """What MESSAGE_DELETE carries for `message`."""
    deleted = {"id": message["id"], "channel_id": message["channel_id"]}
    if "guild_id" in message:
        deleted["guild_id"] = message["guild_id"]
    return deleted
