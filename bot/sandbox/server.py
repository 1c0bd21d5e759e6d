"""A local stand-in for Discord that the real, unmodified discord.py client connects to.

It serves the REST calls the bot makes, the gateway (HELLO, IDENTIFY, READY, GUILD_CREATE,
MESSAGE_CREATE/UPDATE/DELETE, GUILD_MEMBER_UPDATE, VOICE_STATE_UPDATE) and, through
`VoiceServer`, the voice gateway and UDP audio. Four servers, each with #general and a voice
channel and its own people (see `world.py`): Sandbox (owner, moderator, member), Second (alice,
bob), Third (carol, dave) and Fourth (erin, frank). Shards and logins are metered as Discord
does (`sharding.py`): each session gets the events of its shard's servers only. The token and
the application are answered for as Discord does: 401 (and gateway close 4004) for a token it
refuses, the Message Content intent in the application's flags (close 4014 when it is off).

Tests and the console act as users through the `Sandbox` methods (`send`, `edit`, `delete`,
`set_nick`, `join_voice`, ...) and observe what the bot did (`wait_for_bot_message`, `typing`,
`reactions`). `Sandbox` only composes the parts, one per protocol: `rest.py` (the HTTP
routes), `gateway.py` (sessions and dispatch), `messages.py` (the messages and files),
`voice.py` (voice), and the interactions: `interactions.py` (what users do: `slash`, `menu`,
`autocomplete`, `submit_modal`), `responses.py` (the endpoints the bot answers through) and
`commands.py` (command sync, validated like Discord). Those depend on `protocol.Host`, which
`Sandbox` is, never on `Sandbox` itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.sandbox.gateway import HEARTBEAT_ACK_DELAY, HEARTBEAT_MS, Application, Gateway
from bot.sandbox.interactions import InteractionRecord, Interactions
from bot.sandbox.messages import VOICE_FLAG, MessageStore
from bot.sandbox.protocol import Listener
from bot.sandbox.responses import Endpoints
from bot.sandbox.rest import API_PREFIX, CA_PATH, Rest
from bot.sandbox.sharding import Shard
from bot.sandbox.voice import Spoken, VoiceServer
from bot.sandbox.world import SANDBOX, SECOND, SandboxGuild, SandboxUser, World

# What tests, benchmarks and the runner import from here.
__all__ = ["API_PREFIX", "CA_PATH", "HEARTBEAT_ACK_DELAY", "HEARTBEAT_MS", "Sandbox"]

log = logging.getLogger(__name__)


def _part(part: str, name: str) -> Any:
    """An attribute of `Sandbox` kept by one of its parts (read and set through it)."""
    return property(
        lambda self: getattr(getattr(self, part), name),
        lambda self, value: setattr(getattr(self, part), name, value),
    )


class Sandbox:
    """The Discord stand-in: REST + gateway on one loopback port, voice on its own."""

    GUILD_ID = SANDBOX.id
    TEXT_CHANNEL_ID = SANDBOX.text_channel_id
    VOICE_CHANNEL_ID = SANDBOX.voice_channel_id
    ADMIN_ROLE_ID = SANDBOX.admin_role_id
    SECOND_GUILD_ID = SECOND.id
    SECOND_TEXT_CHANNEL_ID = SECOND.text_channel_id
    SECOND_VOICE_CHANNEL_ID = SECOND.voice_channel_id
    APPLICATION_ID = 1_100_000_000_000_000_099

    token = _part("application", "token")
    message_content_intent = _part("application", "message_content_intent")
    heartbeat_interval = _part("gateway", "heartbeat_interval")
    heartbeat_ack_delay = _part("gateway", "heartbeat_ack_delay")
    gateway_down = _part("gateway", "down")  # an outage: see `stop_gateway`
    logins = _part("gateway", "logins")
    messages = _part("store", "messages")
    files = _part("store", "files")  # "attachment_id/filename" -> file
    dm_channels = _part("store", "dm_channels")  # user id -> DM channel id
    typing = _part("rest", "typing")  # (channel id, monotonic time)
    reactions = _part("rest", "reactions")  # (message id, emoji)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_role: str = "Bot Admin",
        out_dir: Path | None = None,
        heartbeat_interval: int = HEARTBEAT_MS,
        heartbeat_ack_delay: float = HEARTBEAT_ACK_DELAY,
        shard_count: int = 1,
        max_concurrency: int = 1,
        token: str | None = None,
        message_content_intent: bool = True,
    ) -> None:
        """`heartbeat_interval` (ms) and `heartbeat_ack_delay` (s) are shortened by tests.
        `shard_count` is the count `GET /gateway/bot` recommends (and the least a session
        may use); `max_concurrency` how many logins may start per 5 s. `port` 0 takes a
        free one. `token`: the one bot token accepted (None: any). `message_content_intent`:
        whether the application has the Message Content intent switched on (its flags say so,
        and an IDENTIFY asking for it without is closed with 4014, as on Discord)."""
        self.host = host
        self.port = port
        self.admin_role = admin_role
        self.world = World(admin_role)
        self.bot_user = self.world.bot_user
        self.users = self.world.users
        self.voice_states = self.world.voice_states  # user id -> voice channel id
        self.voice = VoiceServer(host=host, out_dir=out_dir)
        self.voice.in_voice = self._in_guild_voice
        self.store = MessageStore(self.world, lambda: self.base_url)
        self.application = Application(self.APPLICATION_ID, token, message_content_intent)
        self.gateway = Gateway(
            self.world,
            self.application,
            self.voice,
            self.store.next_id,
            url=lambda: self.gateway_url,
            heartbeat_interval=heartbeat_interval,
            heartbeat_ack_delay=heartbeat_ack_delay,
            shard_count=shard_count,
            max_concurrency=max_concurrency,
        )
        self.listeners: list[Listener] = self.gateway.listeners  # (event, data)
        self.rest = Rest(self.store, self.gateway, self.application, self.voice)
        self.interactions = Interactions(self)
        self._runner: web.AppRunner | None = None

    @property
    def application_flags(self) -> int:
        return self.application.flags

    async def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send `event` to the bot's sessions (those whose shard carries it) and listeners."""
        await self.gateway.publish(event, data)

    # ----- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.add_routes(self.rest.routes(*Endpoints(self.interactions).routes(API_PREFIX)))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await self.voice.start()
        log.info("sandbox listening on %s", self.base_url)

    async def stop(self) -> None:
        await self.gateway.close_all()
        await self.voice.stop()
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop_gateway(self) -> None:
        """A gateway outage: every session is closed (4000, as when Discord restarts a
        gateway node, so clients try to resume) and new connections are refused (503) until
        `restore_gateway()`. REST keeps answering."""
        self.gateway.down = True
        await self.gateway.close_all(code=4000, message=b"Gateway unavailable.")

    def restore_gateway(self) -> None:
        """The gateway takes connections again; clients reconnect (or resume) by themselves."""
        self.gateway.down = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def connected(self) -> bool:
        return self.gateway.connected

    @property
    def ready_shards(self) -> list[Shard]:
        """The `(id, count)` of every session that is ready, in the order they logged in."""
        return self.gateway.ready_shards

    # ----- acting as a user ------------------------------------------------------------

    def user(self, name: str) -> SandboxUser:
        return self.world.user(name)

    def guild(self, key: str) -> SandboxGuild:
        return self.world.guild(key)

    async def send(
        self,
        content: str = "",
        *,
        author: str = "owner",
        channel_id: int | None = None,
        files: list[tuple[str, bytes]] | None = None,
        reply_to: int | None = None,
        voice_message: bool = False,
        dm: bool = False,
        webhook: bool = False,
    ) -> dict[str, Any]:
        """Post a message as a user; the bot receives it as MESSAGE_CREATE.

        The channel defaults to #general of the author's first server; a voice channel's id
        posts in its text chat. `webhook`: the channel's webhook posts `content` instead
        (`webhook_id` set, the webhook as a bot author, no member), as Discord sends it.
        """
        user = self.user(author)
        if dm:
            channel_id = self.store.dm_channel(user.id)
        channel_id = channel_id or self.world.home_guild(user).text_channel_id
        guild = self.world.guild_of_channel(channel_id)
        if webhook:
            if guild is None:
                raise ValueError("webhooks post in a server's channels, not in direct messages")
            message = self.store.webhook_message(channel_id, content)
            await self.publish("MESSAGE_CREATE", message)
            return message
        if guild is not None and not self.world.is_member(user, guild):
            raise ValueError(f"{user.name} is not a member of {guild.name}")
        store = self.store
        attachments = [store.store_file(name, data, voice_message) for name, data in files or []]
        message = store.message(
            user,
            channel_id,
            content,
            attachments=attachments,
            flags=VOICE_FLAG if voice_message else 0,
            reference=reply_to,
        )
        await self.publish("MESSAGE_CREATE", message)
        return message

    async def edit(self, message_id: int, content: str) -> dict[str, Any]:
        """The message's author edits it: the bot receives MESSAGE_UPDATE with the whole
        message (mentions and member recomputed, `edited_timestamp` set). ValueError for a
        message the sandbox doesn't have."""
        message = self.store.edit(message_id, content)
        await self.publish("MESSAGE_UPDATE", message)
        return message

    async def delete(self, message_id: int) -> None:
        """The message's author (or a moderator) deletes it: the bot receives MESSAGE_DELETE
        (`id`, `channel_id`, `guild_id`). ValueError for a message the sandbox doesn't have."""
        await self.publish("MESSAGE_DELETE", self.store.delete(message_id))

    async def set_nick(self, author: str, nick: str | None, guild: str | None = None) -> None:
        """`author`'s nickname in a server (its key, default their first server; None
        removes it): member payloads carry it from now on, and the bot receives
        GUILD_MEMBER_UPDATE, so discord.py's `display_name` becomes it."""
        user = self.user(author)
        where = self.guild(guild) if guild else self.world.home_guild(user)
        if not self.world.is_member(user, where):
            raise ValueError(f"{user.name} is not a member of {where.name}")
        if nick:
            self.world.nicks[where.id, user.id] = nick
        else:
            self.world.nicks.pop((where.id, user.id), None)
        member = self.world.member(user, where)
        update = {"guild_id": str(where.id), **member, "avatar": None, "premium_since": None}
        update.update(pending=False, communication_disabled_until=None)
        await self.publish("GUILD_MEMBER_UPDATE", update)

    def voice_channel_of(self, author: str) -> int:
        """The voice channel `author` is in (its id also names its text chat)."""
        channel_id = self.voice_states.get(self.user(author).id)
        if channel_id is None:
            raise ValueError(f"{author} is in no voice channel; join_voice first")
        return channel_id

    async def join_voice(self, author: str = "owner", channel_id: int | None = None) -> None:
        """Move a user into a voice channel (default: their first server's)."""
        user = self.user(author)
        channel_id = channel_id or self.world.home_guild(user).voice_channel_id
        guild = self.world.guild_of_channel(channel_id)
        if guild is None or not self.world.is_member(user, guild):
            raise ValueError(f"{user.name} can't join that voice channel")
        left = self.voice_states.get(user.id)
        old = self.world.guild_of_channel(left) if left else None
        if old is not None and old is not guild:  # one voice channel at a time, as on Discord
            await self.publish("VOICE_STATE_UPDATE", self.world.voice_state(user, old, None))
        self.voice_states[user.id] = channel_id
        await self.publish("VOICE_STATE_UPDATE", self.world.voice_state(user, guild, channel_id))

    async def leave_voice(self, author: str = "owner") -> None:
        user = self.user(author)
        channel_id = self.voice_states.pop(user.id, None)
        guild = self.world.guild_of_channel(channel_id) if channel_id else None
        guild = guild or self.world.home_guild(user)
        await self.publish("VOICE_STATE_UPDATE", self.world.voice_state(user, guild, None))
        if channel_id is not None:  # the voice server tells the bot's call the user left
            await self.voice.client_disconnect(guild.id, user.id)

    async def speak(
        self,
        author: str,
        audio: Path | str | bytes,
        *,
        guild_id: int | None = None,
        ssrc: int | None = None,
    ) -> Spoken:
        """`author` says `audio` (a WAV path or bytes) in the bot's voice channel of a server.

        The user must be in that server's voice channel (`join_voice`) and the bot too.
        """
        user = self.user(author)
        guild_id = guild_id or self.world.home_guild(user).id
        return await self.voice.speak(guild_id, user.id, audio, ssrc=ssrc)

    def _in_guild_voice(self, guild_id: int, user_id: int) -> bool:
        channel_id = self.voice_states.get(user_id)
        return channel_id is not None and channel_id == self.world.bot_voice.get(guild_id)

    async def drop_bot_voice(self, guild_id: int | None = None) -> None:
        """Cut the bot's voice connection, as when Discord moves a voice server or kicks it."""
        guild = self.world.guild_by_id(guild_id or self.GUILD_ID)
        self.world.bot_voice.pop(guild.id, None)
        self.voice.disconnect(guild.id)
        await self.publish("VOICE_STATE_UPDATE", self.world.voice_state(self.bot_user, guild, None))

    def bot_self_deaf(self, guild_id: int | None = None) -> bool:
        """Whether the bot shows itself deafened in a server's voice (default: Sandbox)."""
        return self.world.bot_self_deaf.get(guild_id or self.GUILD_ID, False)

    def bot_voice_channel(self, guild_id: int | None = None) -> int | None:
        """The bot's voice channel in a server (default: Sandbox), or None."""
        return self.world.bot_voice.get(guild_id or self.GUILD_ID)

    # Interactions as a user (see interactions.py): `/` commands, context menus, autocomplete
    # and modals; each returns the interaction's record, which collects the bot's answers.

    async def slash(
        self, command: str, options: dict[str, Any] | None = None, **kw: Any
    ) -> InteractionRecord:
        return await self.interactions.slash(command, options, **kw)

    async def menu(self, name: str, message_id: int | str, **kw: Any) -> InteractionRecord:
        return await self.interactions.menu(name, message_id, **kw)

    async def autocomplete(
        self, command: str, option: str, text: str = "", **kw: Any
    ) -> list[dict[str, Any]]:
        return await self.interactions.autocomplete(command, option, text, **kw)

    async def submit_modal(
        self, shown: InteractionRecord, values: str | dict[str, str]
    ) -> InteractionRecord:
        return await self.interactions.submit_modal(shown, values)

    # ----- observing the bot -----------------------------------------------------------

    def bot_messages(self, channel_id: int | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages.values()
            if m["author"]["id"] == str(self.bot_user.id)
            and (channel_id is None or int(m["channel_id"]) == channel_id)
        ]

    async def wait_for_bot_message(
        self,
        *,
        after: dict[str, Any] | int | None = None,
        channel_id: int | None = None,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """The first message the bot sent after message `after` (by id order) that matches."""
        after_id = int(after["id"]) if isinstance(after, dict) else (after or 0)

        bot_id = str(self.bot_user.id)

        def find() -> dict[str, Any] | None:
            found = None
            for message in reversed(self.messages.values()):  # newest first; ids only grow
                if int(message["id"]) <= after_id:
                    break
                if (
                    message["author"]["id"] == bot_id
                    and (channel_id is None or int(message["channel_id"]) == channel_id)
                    and (predicate is None or predicate(message))
                ):
                    found = message
            return found

        changed = self.gateway.changed
        async with changed:
            await asyncio.wait_for(changed.wait_for(find), timeout)
        return find()  # type: ignore[return-value]

    def file(self, attachment: dict[str, Any]) -> bytes:
        return self.files[f"{attachment['id']}/{attachment['filename']}"].data

    def user_by_id(self, user_id: int) -> SandboxUser:
        return self.world.user_by_id(user_id)
