"""A local stand-in for Discord that the real, unmodified discord.py client connects to.

It serves the REST calls the bot makes, the gateway (HELLO, IDENTIFY, READY, GUILD_CREATE,
MESSAGE_CREATE/UPDATE/DELETE, VOICE_STATE_UPDATE) and, through `VoiceServer`, the voice
gateway and UDP audio. Four servers, each with #general and a voice channel and its own
people (see `world.py`): Sandbox (owner, moderator, member), Second (alice, bob), Third
(carol, dave) and Fourth (erin, frank). Shards and logins are metered as Discord does
(`sharding.py`): each session gets the events of its shard's servers only. The token and the
application are answered for as Discord does: 401 (and gateway close 4004) for a token it
refuses, the Message Content intent in the application's flags (close 4014 when it is off).

Tests and the console act as users through the `Sandbox` methods (`send`, `join_voice`,
...) and observe what the bot did (`wait_for_bot_message`, `typing`, `reactions`).
Interactions live in their own modules: `interactions.py` (what users do: `slash`, `menu`,
`autocomplete`, `submit_modal`), `responses.py` (the endpoints the bot answers through) and
`commands.py` (command sync, validated like Discord).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from bot.sandbox.interactions import InteractionRecord, Interactions
from bot.sandbox.responses import Endpoints
from bot.sandbox.sharding import Logins, Shard, ShardRefused, guild_of_event, owns
from bot.sandbox.voice import Spoken, VoiceServer
from bot.sandbox.world import SANDBOX, SECOND, SandboxGuild, SandboxUser, World, now_iso

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
# The certificate authority of the voice endpoint's TLS, for bots in other processes.
CA_PATH = "/sandbox/ca.pem"
VOICE_FLAG = 1 << 13  # MessageFlags.voice
# ApplicationFlags.gateway_message_content_limited: the Message Content intent switched on in
# the Developer Portal by a bot in under 100 servers (a verified one gets 1 << 18 instead).
MESSAGE_CONTENT_LIMITED = 1 << 19
MESSAGE_CONTENT_INTENT = 1 << 15  # Intents.message_content, asked for in IDENTIFY
UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
HEARTBEAT_MS = 41_250
# discord.py's keep-alive thread records when it sent a heartbeat only after the send has
# finished on the event loop; an ACK that reaches the client first is measured against the
# previous heartbeat (an interval ago) and logged as "Can't keep up ... behind". A network
# never answers that fast, so the sandbox waits a round trip before acknowledging.
HEARTBEAT_ACK_DELAY = 0.1  # seconds


@dataclass
class SentFile:
    filename: str
    data: bytes
    content_type: str


@dataclass
class _GatewayClient:
    ws: web.WebSocketResponse
    seq: int = 0
    ready: bool = False
    session_id: str = ""
    shard: Shard = (0, 1)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    acks: set[asyncio.Task[None]] = field(default_factory=set)  # heartbeat ACKs on their way


def _snowflakes(start: int) -> Callable[[], int]:
    counter = itertools.count(start)
    # A real-looking snowflake: timestamp bits make created_at sane for the client.
    return lambda: ((int(time.time() * 1000) - 1420070400000) << 22) + next(counter) % 4096


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
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
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ack_delay = heartbeat_ack_delay
        self.admin_role = admin_role
        self.world = World(admin_role)
        self.bot_user = self.world.bot_user
        self.users = self.world.users
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.messages: dict[int, dict[str, Any]] = {}
        self.files: dict[str, SentFile] = {}  # "attachment_id/filename" -> file
        self.typing: list[tuple[int, float]] = []  # (channel id, monotonic time)
        self.reactions: list[tuple[int, str]] = []  # (message id, emoji)
        self.voice_states = self.world.voice_states  # user id -> voice channel id
        self.voice = VoiceServer(host=host, out_dir=out_dir)
        self.voice.in_voice = self._in_guild_voice
        self._next_id = _snowflakes(1)
        self.interactions = Interactions(self)
        self._clients: list[_GatewayClient] = []
        self.logins = Logins(shard_count=shard_count, max_concurrency=max_concurrency)
        self._sessions: dict[str, Shard] = {}  # session id -> its shard, for RESUME
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []  # (event, data)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = port
        self.token = token
        self.message_content_intent = message_content_intent
        self.gateway_down = False  # an outage: see `stop_gateway`

    @property
    def application_flags(self) -> int:
        return MESSAGE_CONTENT_LIMITED if self.message_content_intent else 0

    # ----- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.add_routes(self._routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await self.voice.start()
        log.info("sandbox listening on %s", self.base_url)

    async def stop(self) -> None:
        for client in list(self._clients):
            await client.ws.close()
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
        self.gateway_down = True
        for client in list(self._clients):
            await client.ws.close(code=4000, message=b"Gateway unavailable.")

    def restore_gateway(self) -> None:
        """The gateway takes connections again; clients reconnect (or resume) by themselves."""
        self.gateway_down = False

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
        return any(c.ready for c in self._clients)

    @property
    def ready_shards(self) -> list[Shard]:
        """The `(id, count)` of every session that is ready, in the order they logged in."""
        return [c.shard for c in self._clients if c.ready]

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
    ) -> dict[str, Any]:
        """Post a message as a user; the bot receives it as MESSAGE_CREATE.

        The channel defaults to #general of the author's first server.
        """
        user = self.user(author)
        if dm:
            channel_id = self._dm_channel(user.id)
        channel_id = channel_id or self.world.home_guild(user).text_channel_id
        guild = self.world.guild_of_channel(channel_id)
        if guild is not None and not self.world.is_member(user, guild):
            raise ValueError(f"{user.name} is not a member of {guild.name}")
        attachments = [self._store_file(name, data, voice_message) for name, data in files or []]
        message = self._message(
            user,
            channel_id,
            content,
            attachments=attachments,
            flags=VOICE_FLAG if voice_message else 0,
            reference=reply_to,
        )
        await self._publish("MESSAGE_CREATE", message)
        return message

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
            await self._publish("VOICE_STATE_UPDATE", self.world.voice_state(user, old, None))
        self.voice_states[user.id] = channel_id
        await self._publish("VOICE_STATE_UPDATE", self.world.voice_state(user, guild, channel_id))

    async def leave_voice(self, author: str = "owner") -> None:
        user = self.user(author)
        channel_id = self.voice_states.pop(user.id, None)
        guild = self.world.guild_of_channel(channel_id) if channel_id else None
        guild = guild or self.world.home_guild(user)
        await self._publish("VOICE_STATE_UPDATE", self.world.voice_state(user, guild, None))
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
        await self._publish(
            "VOICE_STATE_UPDATE", self.world.voice_state(self.bot_user, guild, None)
        )

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

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(find), timeout)
        return find()  # type: ignore[return-value]

    def file(self, attachment: dict[str, Any]) -> bytes:
        return self.files[f"{attachment['id']}/{attachment['filename']}"].data

    # ----- payload builders ------------------------------------------------------------

    def user_by_id(self, user_id: int) -> SandboxUser:
        return self.world.user_by_id(user_id)

    def _dm_channel(self, user_id: int) -> int:
        if user_id not in self.dm_channels:
            self.dm_channels[user_id] = self._next_id()
        return self.dm_channels[user_id]

    def _dm_payload(self, user_id: int) -> dict[str, Any]:
        return {
            "id": str(self._dm_channel(user_id)),
            "type": 1,
            "recipients": [self.user_by_id(user_id).payload()],
            "last_message_id": None,
        }

    def _is_dm(self, channel_id: int) -> bool:
        return channel_id in self.dm_channels.values()

    def _store_file(self, filename: str, data: bytes, voice: bool = False) -> dict[str, Any]:
        attachment_id = self._next_id()
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if voice:
            content_type = "audio/ogg"
        self.files[f"{attachment_id}/{filename}"] = SentFile(filename, data, content_type)
        url = f"{self.base_url}/attachments/{attachment_id}/{filename}"
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

    def _message(
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
            "id": str(self._next_id()),
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
        mentioned = [u for u in [self.bot_user, *self.users.values()] if f"<@{u.id}>" in content]
        message["mentions"] = [u.payload() for u in mentioned]
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

    # ----- gateway ---------------------------------------------------------------------

    async def _publish(self, event: str, data: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(event, data)
        guild_id = guild_of_event(data)
        for client in list(self._clients):
            if client.ready and owns(client.shard, guild_id):
                await self._dispatch(client, event, data)
        async with self._changed:
            self._changed.notify_all()

    async def _dispatch(self, client: _GatewayClient, event: str, data: dict[str, Any]) -> None:
        async with client.lock:
            client.seq += 1
            payload = {"op": 0, "t": event, "s": client.seq, "d": data}
            try:
                await client.ws.send_str(json.dumps(payload))
            except ConnectionError:
                log.debug("gateway client gone while sending %s", event)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_down:
            return web.Response(status=503, text="gateway unavailable")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        client = _GatewayClient(ws)
        self._clients.append(client)
        hello = {"heartbeat_interval": self.heartbeat_interval}
        await ws.send_str(json.dumps({"op": 10, "d": hello}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._gateway_op(client, json.loads(msg.data))
        finally:
            self._clients.remove(client)
            for ack in list(client.acks):
                ack.cancel()
        return ws

    async def _gateway_op(self, client: _GatewayClient, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:  # heartbeat: acknowledged a round trip later, without holding up the loop
            ack = asyncio.create_task(self._ack_heartbeat(client))
            client.acks.add(ack)
            ack.add_done_callback(client.acks.discard)
        elif op == 2:
            await self._identify(client, data if isinstance(data, dict) else {})
        elif op == 6:
            await self._resume(client, data if isinstance(data, dict) else {})
        elif op == 4:  # voice state update from the bot
            await self._bot_voice_state(data)

    async def _ack_heartbeat(self, client: _GatewayClient) -> None:
        await asyncio.sleep(self.heartbeat_ack_delay)
        if client.ws.closed:
            return
        try:
            await client.ws.send_str(json.dumps({"op": 11}))
        except ConnectionError:
            log.debug("gateway client gone before its heartbeat ACK")

    async def _identify(self, client: _GatewayClient, identify: dict[str, Any]) -> None:
        refused = self._refused_identify(identify)
        if refused is not None:
            await client.ws.close(code=refused[0], message=refused[1].encode())
            return
        try:
            client.shard = self.logins.shard_of(identify)
        except ShardRefused as refused:
            await client.ws.close(code=refused.code, message=refused.reason.encode())
            return
        if not self.logins.admit(client.shard):  # its login bucket is taken: op 9, as Discord
            await client.ws.send_str(json.dumps({"op": 9, "d": False}))
            return
        await self._start_session(client)

    def _refused_identify(self, identify: dict[str, Any]) -> tuple[int, str] | None:
        """Discord's close code and reason for an IDENTIFY it refuses, or None."""
        if self.token is not None and identify.get("token") != self.token:
            return 4004, "Authentication failed."
        intents = identify.get("intents")
        if (
            not self.message_content_intent
            and isinstance(intents, int)
            and intents & MESSAGE_CONTENT_INTENT
        ):
            return 4014, "Disallowed intent(s)."
        return None

    async def _resume(self, client: _GatewayClient, resume: dict[str, Any]) -> None:
        """A RESUME starts a fresh session of the same shard; it is no login, as on Discord.
        An unknown session gets op 9 (identify again)."""
        shard = self._sessions.get(str(resume.get("session_id")))
        if shard is None:
            await client.ws.send_str(json.dumps({"op": 9, "d": False}))
            return
        client.shard = shard
        await self._start_session(client)

    async def _start_session(self, client: _GatewayClient) -> None:
        client.session_id = f"sandbox-{self._next_id()}"
        self._sessions[client.session_id] = client.shard
        guilds = [g for g in self.world.guilds.values() if owns(client.shard, g.id)]
        ready = {
            "v": 10,
            "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": client.session_id,
            "resume_gateway_url": self.gateway_url,
            "private_channels": [],
            "relationships": [],
            "application": {"id": str(self.APPLICATION_ID), "flags": self.application_flags},
            "shard": list(client.shard),
        }
        await self._dispatch(client, "READY", ready)
        for guild in guilds:
            await self._dispatch(client, "GUILD_CREATE", self.world.guild_payload(guild))
        client.ready = True
        async with self._changed:
            self._changed.notify_all()

    async def _bot_voice_state(self, data: dict[str, Any]) -> None:
        guild = self.world.guild_by_id(int(data["guild_id"]))
        channel_id = int(data["channel_id"]) if data.get("channel_id") else None
        self.world.bot_self_deaf[guild.id] = bool(data.get("self_deaf"))
        state = self.world.voice_state(self.bot_user, guild, channel_id)
        if channel_id is not None and self.world.bot_voice.get(guild.id) == channel_id:
            # Same channel (deafening, muting): Discord only updates the voice state.
            await self._publish("VOICE_STATE_UPDATE", state)
            return
        if channel_id is None:
            self.world.bot_voice.pop(guild.id, None)
            self.voice.disconnect(guild.id)
            await self._publish("VOICE_STATE_UPDATE", state)
            return
        self.world.bot_voice[guild.id] = channel_id
        token = f"voice-{self._next_id()}"
        self.voice.expect(
            guild_id=guild.id, user_id=self.bot_user.id, session_id=state["session_id"], token=token
        )
        await self._publish("VOICE_STATE_UPDATE", state)
        server = {"token": token, "guild_id": str(guild.id), "endpoint": self.voice.endpoint}
        await self._publish("VOICE_SERVER_UPDATE", server)

    # ----- REST ------------------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        p = API_PREFIX
        return [
            web.get("/gateway", self._gateway),
            web.get(p + "/gateway", self._get_gateway),
            web.get(p + "/gateway/bot", self._get_gateway_bot),
            web.get(p + "/users/@me", self._get_me),
            web.get(p + "/oauth2/applications/@me", self._get_application),
            web.get(p + "/applications/@me", self._get_application),
            web.post(p + "/users/@me/channels", self._create_dm),
            web.post(p + "/channels/{channel_id}/messages", self._create_message),
            web.get(p + "/channels/{channel_id}/messages", self._list_messages),
            web.get(p + "/channels/{channel_id}/messages/{message_id}", self._get_message),
            web.patch(p + "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            web.delete(p + "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            web.post(p + "/channels/{channel_id}/typing", self._typing),
            web.put(
                p + "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._add_reaction,
            ),
            web.get("/attachments/{attachment_id}/{filename}", self._download),
            web.get(CA_PATH, self._voice_ca),
            *Endpoints(self.interactions).routes(p),
            web.route("*", p + "/{tail:.*}", self._not_found),
        ]

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return _json(self.logins.gateway_bot(self.gateway_url))

    def _authorized(self, request: web.Request) -> bool:
        """Whether the request carries a bot token the sandbox accepts (`token`, else any)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bot" and bool(token) and self.token in (None, token)

    async def _get_me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json(UNAUTHORIZED, status=401)
        return _json({**self.bot_user.payload(), "verified": True, "mfa_enabled": False})

    async def _get_application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json(UNAUTHORIZED, status=401)
        return _json(
            {
                "id": str(self.APPLICATION_ID),
                "name": self.bot_user.name,
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.users["owner"].payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": self.application_flags,
                "summary": "",
            }
        )

    async def _create_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        return _json(self._dm_payload(int(body["recipient_id"])))

    async def _create_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        body, uploads = await self._read_message_body(request)
        attachments = [self._store_file(f.filename, f.data) for f in uploads]
        reference = (body.get("message_reference") or {}).get("message_id")
        message = self._message(
            self.bot_user,
            channel_id,
            body.get("content") or "",
            attachments=attachments,
            reference=int(reference) if reference else None,
            embeds=body.get("embeds"),
        )
        await self._publish("MESSAGE_CREATE", message)  # Discord echoes the bot's own messages
        return _json(message)

    async def _read_message_body(
        self, request: web.Request
    ) -> tuple[dict[str, Any], list[SentFile]]:
        if not request.content_type.startswith("multipart/"):
            return await request.json(), []
        body: dict[str, Any] = {}
        uploads: list[SentFile] = []
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":
                body = json.loads(await part.text())
            elif part.filename:
                data = bytes(await part.read())
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                uploads.append(SentFile(part.filename, data, content_type))
        return body, uploads

    def _find_message(self, request: web.Request) -> dict[str, Any] | None:
        message = self.messages.get(int(request.match_info["message_id"]))
        if message and message["channel_id"] == request.match_info["channel_id"]:
            return message
        return None

    async def _get_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        return _json(message)

    async def _list_messages(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel_id"]
        limit = int(request.query.get("limit", "50"))
        found = [m for m in self.messages.values() if m["channel_id"] == channel]
        return _json(sorted(found, key=lambda m: int(m["id"]), reverse=True)[:limit])

    async def _edit_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        body, uploads = await self._read_message_body(request)
        for key in ("content", "embeds"):
            if key in body:
                message[key] = body[key]
        if "attachments" in body:  # the ones listed by id stay; new files are added
            keep = {str(a.get("id")) for a in body["attachments"]}
            kept = [a for a in message["attachments"] if a["id"] in keep]
            message["attachments"] = kept + [self._store_file(f.filename, f.data) for f in uploads]
        message["edited_timestamp"] = now_iso()
        await self._publish("MESSAGE_UPDATE", message)
        return _json(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        del self.messages[int(message["id"])]
        deleted = {"id": message["id"], "channel_id": message["channel_id"]}
        if "guild_id" in message:
            deleted["guild_id"] = message["guild_id"]
        await self._publish("MESSAGE_DELETE", deleted)
        return web.Response(status=204)

    async def _typing(self, request: web.Request) -> web.Response:
        self.typing.append((int(request.match_info["channel_id"]), time.monotonic()))
        return web.Response(status=204)

    async def _add_reaction(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        self.reactions.append((int(message["id"]), request.match_info["emoji"]))
        return web.Response(status=204)

    async def _download(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['attachment_id']}/{request.match_info['filename']}"
        sent = self.files.get(key)
        if sent is None:
            return web.Response(status=404)
        return web.Response(body=sent.data, headers={"Content-Type": sent.content_type})

    async def _voice_ca(self, request: web.Request) -> web.Response:
        """The voice endpoint's CA (PEM): a bot in another process (SANDBOX_URL) trusts it.
        Served over plain loopback HTTP, like everything of the sandbox but voice."""
        return web.Response(body=self.voice.ca_pem, content_type="application/x-pem-file")

    async def _not_found(self, request: web.Request) -> web.Response:
        log.warning("sandbox has no route for %s %s", request.method, request.path)
        return _json({"message": "404: Not Found", "code": 0}, status=404)
