"""A discord.py voice client that can also receive: `ListeningVoiceClient`.

discord.py 2.7 has no receive API, so this leans on internals that
tests/test_discord_internals.py pins (it fails loudly, naming the internal, when they change):

- `VoiceConnectionState(voice_client, hook=...)`: the hook is awaited as ``hook(ws, msg)``
  after discord.py handled every JSON message of the voice websocket. From it we read
  READY (op 2: a new session, so the SSRC map starts afresh), SESSION_DESCRIPTION (op 4: the
  key), SPEAKING (op 5: SSRC → user id), CLIENT_CONNECT (op 12) and CLIENT_DISCONNECT (op 13).
- `add_socket_listener` / `remove_socket_listener`: every UDP datagram, on the socket-reader
  thread; `secret_key`, `mode` and `dave_session` / `dave_protocol_version` of the connection.

The receive path itself lives in `bot.services.hearing.receive.pipeline.ReceivePipeline` (no discord
import). The SSRC map is kept even while not receiving, because SPEAKING is sent once per
speaker and session, possibly long before `start_receiving`.

What the voice websocket tells the pipeline (SPEAKING, a user left, a new session) goes to it
on a one-thread executor, in order: those calls may decode held packets and call the sink,
and the sink's contract (bot/services/listening/sink.py) is that it is never called from the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import discord
from discord.gateway import DiscordVoiceWebSocket
from discord.utils import MISSING
from discord.voice_state import VoiceConnectionState

from bot import metrics
from bot.services.hearing.listening.sink import AudioSink
from bot.services.hearing.receive.dave import DaveDecryptor
from bot.services.hearing.receive.opus import OPUS_SILENCE
from bot.services.hearing.receive.pipeline import ReceivePipeline

log = logging.getLogger(__name__)

# Discord drops the UDP route of a client that sends nothing for about a minute; a silence
# frame now and then keeps it (and the first one opens it).
KEEPALIVE_SECONDS = 5.0
KEEPALIVE_CHECK_SECONDS = 1.0


class ListeningVoiceClient(discord.VoiceClient):
    """`discord.VoiceClient` plus `start_receiving(sink)` / `stop_receiving()` / `receiving`."""

    def __init__(self, client: discord.Client, channel: discord.abc.Connectable) -> None:
        # create_connection_state runs inside super().__init__, so these come first.
        self._ssrc_users: dict[int, int] = {}
        self._pipeline: ReceivePipeline | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._last_sent = 0.0
        self._control = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-control")
        self._counted = False  # in metrics.VOICE_CONNECTIONS: connected, not yet cleaned up
        super().__init__(client, channel)

    async def connect(
        self, *, reconnect: bool, timeout: float, self_deaf: bool = False, self_mute: bool = False
    ) -> None:
        await super().connect(
            reconnect=reconnect, timeout=timeout, self_deaf=self_deaf, self_mute=self_mute
        )
        if not self._counted:
            self._counted = True
            metrics.VOICE_CONNECTIONS.inc()

    def create_connection_state(self) -> VoiceConnectionState:
        return VoiceConnectionState(self, hook=self._voice_hook)

    # ----- public API -------------------------------------------------------------------

    @property
    def receiving(self) -> bool:
        """Whether a sink is attached."""
        return self._pipeline is not None

    @property
    def receive_stats(self) -> dict[str, int]:
        """Counters of the receive path (datagrams, dropped by reason, decoded, frames)."""
        return dict(self._pipeline.stats) if self._pipeline is not None else {}

    @property
    def decoded_by_user(self) -> dict[int, int]:
        """Opus packets decoded per user id since `start_receiving`."""
        return dict(self._pipeline.decoded_by_user) if self._pipeline is not None else {}

    def start_receiving(self, sink: AudioSink) -> None:
        """Hand every speaker's audio to `sink` (replacing a sink already attached)."""
        if self._pipeline is not None:
            self.stop_receiving()
        pipeline = ReceivePipeline(sink, dave=DaveDecryptor())
        self._load_key(pipeline)
        for ssrc, user_id in self._ssrc_users.items():
            pipeline.speaking(user_id, ssrc, 1)
        self._pipeline = pipeline
        self._connection.add_socket_listener(self._on_datagram)
        self._last_sent = 0.0
        self._keepalive = self.loop.create_task(self._keep_route_alive(), name="voice-keepalive")
        log.info("Receiving voice in guild %s", self.guild.id)

    def stop_receiving(self) -> None:
        """Detach the sink; packets are no longer read or decoded."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is None:
            return
        self._connection.remove_socket_listener(self._on_datagram)
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self._off_loop(pipeline.reset)
        log.info("Stopped receiving voice in guild %s", self.guild.id)

    def cleanup(self) -> None:
        """The connection is gone for good (discord.py calls this once it has ended)."""
        if self._counted:
            self._counted = False
            metrics.VOICE_CONNECTIONS.dec()
        self.stop_receiving()
        self._control.shutdown(wait=False)
        super().cleanup()

    def _off_loop(self, call: Callable[..., None], *args: Any) -> None:
        """Run a pipeline call that may reach the sink on the control thread, in order."""
        try:
            self._control.submit(call, *args)
        except RuntimeError:  # shut down: the connection is gone, nothing to tell
            log.debug("voice control call after cleanup: %s", call)

    # ----- UDP (socket-reader thread) ---------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            return
        connection = self._connection
        pipeline.dave.update(connection.dave_session, connection.dave_protocol_version)
        pipeline.feed(data)

    # ----- voice websocket (event loop) -------------------------------------------------

    async def _voice_hook(self, ws: DiscordVoiceWebSocket, msg: dict[str, Any]) -> None:
        try:
            self._on_voice_message(msg)
        except Exception:  # an exception here would end discord.py's voice poller
            log.debug("Receiver ignored a voice message: %r", msg, exc_info=True)

    def _on_voice_message(self, msg: dict[str, Any]) -> None:
        op, data = msg.get("op"), msg.get("d")
        if op == DiscordVoiceWebSocket.READY:
            self._ssrc_users.clear()
            if self._pipeline is not None:
                self._off_loop(self._pipeline.reset)
        elif op == DiscordVoiceWebSocket.SESSION_DESCRIPTION:
            if self._pipeline is not None:
                self._load_key(self._pipeline)
        elif op == DiscordVoiceWebSocket.SPEAKING:
            self._speaking(int(data["user_id"]), int(data["ssrc"]), int(data.get("speaking", 0)))
        elif op == DiscordVoiceWebSocket.CLIENT_CONNECT and "audio_ssrc" in data:
            self._speaking(int(data["user_id"]), int(data["audio_ssrc"]), 1)
        elif op == DiscordVoiceWebSocket.CLIENTS_CONNECT:
            log.debug("Users in voice: %s", data.get("user_ids"))
        elif op == DiscordVoiceWebSocket.CLIENT_DISCONNECT:
            self._user_left(int(data["user_id"]))

    def _speaking(self, user_id: int, ssrc: int, flags: int) -> None:
        if user_id == self.user.id:
            return
        for other in [s for s, uid in self._ssrc_users.items() if uid == user_id and s != ssrc]:
            del self._ssrc_users[other]
        self._ssrc_users[ssrc] = user_id
        if self._pipeline is not None:
            self._off_loop(self._pipeline.speaking, user_id, ssrc, flags)

    def _user_left(self, user_id: int) -> None:
        for ssrc in [s for s, uid in self._ssrc_users.items() if uid == user_id]:
            del self._ssrc_users[ssrc]
        if self._pipeline is not None:
            self._off_loop(self._pipeline.user_left, user_id)

    def _load_key(self, pipeline: ReceivePipeline) -> None:
        key, mode = self._connection.secret_key, self._connection.mode
        if key is MISSING or mode is MISSING or not key:
            return
        try:
            pipeline.set_key(key, mode)
        except ValueError as exc:
            log.warning("Cannot receive voice in guild %s: %s", self.guild.id, exc)

    # ----- keeping the UDP route open ----------------------------------------------------

    async def _keep_route_alive(self) -> None:
        while True:
            now = time.monotonic()
            if self.is_playing():
                self._last_sent = now
            elif self.is_connected() and now - self._last_sent >= KEEPALIVE_SECONDS:
                self._last_sent = now
                try:
                    self.send_audio_packet(OPUS_SILENCE, encode=False)
                except Exception:  # not connected this instant; try again later
                    log.debug("Could not send a keep-alive silence frame", exc_info=True)
            await asyncio.sleep(KEEPALIVE_CHECK_SECONDS)
