"""The sandbox's gateway: the websocket discord.py keeps open, its sessions and what they get.

HELLO, heartbeats (ACKed a round trip later), IDENTIFY (the token and the Message Content
intent checked as Discord does: close 4004, 4014), RESUME, READY and GUILD_CREATE for the
servers of the session's shard (`sharding.py`), and `publish`, which sends an event to every
ready session whose shard carries it. The bot's op 4 (join, leave, deafen in voice) is
answered here too: VOICE_STATE_UPDATE, then VOICE_SERVER_UPDATE pointing at `VoiceServer`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bot.sandbox.sharding import Logins, Shard, ShardRefused, guild_of_event, owns
from bot.sandbox.voice import VoiceServer
from bot.sandbox.world import World

log = logging.getLogger(__name__)

# ApplicationFlags.gateway_message_content_limited: the Message Content intent switched on in
# the Developer Portal by a bot in under 100 servers (a verified one gets 1 << 18 instead).
MESSAGE_CONTENT_LIMITED = 1 << 19
MESSAGE_CONTENT_INTENT = 1 << 15  # Intents.message_content, asked for in IDENTIFY
HEARTBEAT_MS = 41_250
# discord.py's keep-alive thread records when it sent a heartbeat only after the send has
# finished on the event loop; an ACK that reaches the client first is measured against the
# previous heartbeat (an interval ago) and logged as "Can't keep up ... behind". A network
# never answers that fast, so the sandbox waits a round trip before acknowledging.
HEARTBEAT_ACK_DELAY = 0.1  # seconds


@dataclass
class Application:
    """The bot's application as the Developer Portal has it."""

    id: int
    token: str | None = None  # the one bot token accepted (None: any)
    message_content_intent: bool = True

    @property
    def flags(self) -> int:
        return MESSAGE_CONTENT_LIMITED if self.message_content_intent else 0

    def accepts(self, token: str | None) -> bool:
        return bool(token) and self.token in (None, token)


@dataclass
class _GatewayClient:
    ws: web.WebSocketResponse
    seq: int = 0
    ready: bool = False
    session_id: str = ""
    shard: Shard = (0, 1)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    acks: set[asyncio.Task[None]] = field(default_factory=set)  # heartbeat ACKs on their way


class Gateway:
    """The gateway's sessions (see the module's docstring)."""

    def __init__(
        self,
        world: World,
        application: Application,
        voice: VoiceServer,
        next_id: Callable[[], int],
        *,
        url: Callable[[], str],
        heartbeat_interval: int = HEARTBEAT_MS,
        heartbeat_ack_delay: float = HEARTBEAT_ACK_DELAY,
        shard_count: int = 1,
        max_concurrency: int = 1,
    ) -> None:
        """`url` gives the gateway's address once the sandbox listens (`resume_gateway_url`)."""
        self.world = world
        self.application = application
        self.voice = voice
        self.next_id = next_id
        self.url = url
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ack_delay = heartbeat_ack_delay
        self.logins = Logins(shard_count=shard_count, max_concurrency=max_concurrency)
        self.clients: list[_GatewayClient] = []
        self._sessions: dict[str, Shard] = {}  # session id -> its shard, for RESUME
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []  # (event, data)
        self.changed = asyncio.Condition()
        self.down = False  # an outage: see `stop`

    @property
    def connected(self) -> bool:
        return any(c.ready for c in self.clients)

    @property
    def ready_shards(self) -> list[Shard]:
        return [c.shard for c in self.clients if c.ready]

    async def close_all(self, code: int = 1000, message: bytes = b"") -> None:
        for client in list(self.clients):
            await client.ws.close(code=code, message=message)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def publish(self, event: str, data: dict[str, Any]) -> None:
        """Tell the listeners, then every ready session whose shard carries the event."""
        for listener in self.listeners:
            listener(event, data)
        guild_id = guild_of_event(data)
        for client in list(self.clients):
            if client.ready and owns(client.shard, guild_id):
                await self._dispatch(client, event, data)
        await self.notify()

    async def _dispatch(self, client: _GatewayClient, event: str, data: dict[str, Any]) -> None:
        async with client.lock:
            client.seq += 1
            payload = {"op": 0, "t": event, "s": client.seq, "d": data}
            try:
                await client.ws.send_str(json.dumps(payload))
            except ConnectionError:
                log.debug("gateway client gone while sending %s", event)

    async def connect(self, request: web.Request) -> web.StreamResponse:
        """`GET /gateway`: one client's websocket, from HELLO until it closes."""
        if self.down:
            return web.Response(status=503, text="gateway unavailable")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        client = _GatewayClient(ws)
        self.clients.append(client)
        hello = {"heartbeat_interval": self.heartbeat_interval}
        await ws.send_str(json.dumps({"op": 10, "d": hello}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._gateway_op(client, json.loads(msg.data))
        finally:
            self.clients.remove(client)
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
        application = self.application
        if application.token is not None and identify.get("token") != application.token:
            return 4004, "Authentication failed."
        intents = identify.get("intents")
        if (
            not application.message_content_intent
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
        client.session_id = f"sandbox-{self.next_id()}"
        self._sessions[client.session_id] = client.shard
        guilds = [g for g in self.world.guilds.values() if owns(client.shard, g.id)]
        bot_user = self.world.bot_user
        ready = {
            "v": 10,
            "user": {**bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": client.session_id,
            "resume_gateway_url": self.url(),
            "private_channels": [],
            "relationships": [],
            "application": {"id": str(self.application.id), "flags": self.application.flags},
            "shard": list(client.shard),
        }
        await self._dispatch(client, "READY", ready)
        for guild in guilds:
            await self._dispatch(client, "GUILD_CREATE", self.world.guild_payload(guild))
        client.ready = True
        await self.notify()

    async def _bot_voice_state(self, data: dict[str, Any]) -> None:
        guild = self.world.guild_by_id(int(data["guild_id"]))
        channel_id = int(data["channel_id"]) if data.get("channel_id") else None
        self.world.bot_self_deaf[guild.id] = bool(data.get("self_deaf"))
        bot_user = self.world.bot_user
        state = self.world.voice_state(bot_user, guild, channel_id)
        if channel_id is not None and self.world.bot_voice.get(guild.id) == channel_id:
            # Same channel (deafening, muting): Discord only updates the voice state.
            await self.publish("VOICE_STATE_UPDATE", state)
            return
        if channel_id is None:
            self.world.bot_voice.pop(guild.id, None)
            self.voice.disconnect(guild.id)
            await self.publish("VOICE_STATE_UPDATE", state)
            return
        self.world.bot_voice[guild.id] = channel_id
        token = f"voice-{self.next_id()}"
        self.voice.expect(
            guild_id=guild.id, user_id=bot_user.id, session_id=state["session_id"], token=token
        )
        await self.publish("VOICE_STATE_UPDATE", state)
        server = {"token": token, "guild_id": str(guild.id), "endpoint": self.voice.endpoint}
        await self.publish("VOICE_SERVER_UPDATE", server)
