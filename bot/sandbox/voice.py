"""The voice half of the local Discord stand-in: voice gateway v8 over TLS plus UDP audio.

The unmodified discord.py 2.7 client connects here after the sandbox gateway answers its
op 4 with VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE (whose ``endpoint`` is `endpoint`).
The flow, as the client drives it:

1. ``wss://{endpoint}/?v=8``: we send HELLO (op 8); the client sends IDENTIFY (op 0), checked
   against what `VoiceServer.expect` was told; we answer READY (op 2: ssrc, ip, port, modes).
2. UDP IP discovery: a 74-byte request (type 1) answered with type 2, the address the
   datagram came from written at offset 8 and its port in the last two bytes.
3. SELECT_PROTOCOL (op 1) is answered with SESSION_DESCRIPTION (op 4): a fresh secret key and
   ``dave_protocol_version: 0``, which declines DAVE end-to-end encryption. The client then
   never creates a DAVE session and sends plain Opus inside the transport encryption.
4. RTP over UDP, ``aead_xchacha20_poly1305_rtpsize``, both ways: what the bot says is
   decrypted and handed to `Hearing` (bot/sandbox/voice_hear.py), which groups it into
   `Utterance` objects; `speak` sends a user's voice to the bot the way a voice server
   forwards it (SPEAKING op 5 on the websocket, then RTP; bot/sandbox/voice_speak.py).
   `client_disconnect` sends op 13 and `send_raw` any datagram, for fault tests.

Heartbeats (op 3 -> op 6), SPEAKING (op 5) and RESUME (op 7 -> op 9) are handled too.
The TLS certificate comes from a throwaway CA made with trustme; `client_ssl_context`
trusts it and is meant only for a client running in sandbox mode.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import trustme
from aiohttp import WSCloseCode, web

from bot.sandbox.voice_hear import (
    BYTES_PER_SECOND,
    CHANNELS,
    OPUS_SILENCE,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    Hearing,
    Utterance,
)
from bot.sandbox.voice_session import (
    CLOSE_DISCONNECTED,
    DISCONNECT_GRACE,
    MODE,
    OP_CLIENT_DISCONNECT,
    OP_SPEAKING,
    Expected,
    UdpProtocol,
    VoiceSessions,
)
from bot.sandbox.voice_speak import (
    FRAME_SECONDS,
    SILENCE_FRAMES,
    RtpStream,
    Spoken,
    opus_frames,
)

__all__ = [
    "BYTES_PER_SECOND",
    "CHANNELS",
    "MODE",
    "OPUS_SILENCE",
    "SAMPLE_RATE",
    "SAMPLE_WIDTH",
    "Spoken",
    "Utterance",
    "VoiceServer",
]

log = logging.getLogger(__name__)


class VoiceServer(VoiceSessions):
    """Voice gateway v8 (TLS websocket) and UDP media endpoint for the sandbox."""

    def __init__(
        self, host: str = "127.0.0.1", out_dir: Path | None = None, *, idle_timeout: float = 0.4
    ) -> None:
        super().__init__(host, Hearing(out_dir, idle_timeout=idle_timeout))
        # Whether a user is in the bot's voice channel of a guild; the sandbox sets it.
        self.in_voice: Callable[[int, int], bool] | None = None

        self._ca = trustme.CA()
        identities = dict.fromkeys((host, "127.0.0.1", "localhost"))
        self._cert = self._ca.issue_cert(*identities)
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(self._server_ssl)
        self._client_ssl = ssl.create_default_context()
        self._ca.configure_trust(self._client_ssl)

        self._runner: web.AppRunner | None = None
        self._tcp_port = 0

    # ----- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Listen for the voice websocket (TLS) and UDP media on free ports of `host`."""
        loop = asyncio.get_running_loop()
        app = web.Application()
        app.router.add_get("/", self._websocket)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self._tcp_port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self._server_ssl).start()

        transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpProtocol(self), local_addr=(self.host, 0)
        )
        self._transport = transport
        self._udp_port = transport.get_extra_info("sockname")[1]
        await self.hearing.start()
        log.info("Sandbox voice server on %s (UDP port %d)", self.endpoint, self._udp_port)

    async def stop(self) -> None:
        """Finish the utterances in progress, save them and close every socket."""
        for session in list(self._sessions.values()):
            self._finish_utterance(session)
        await self.hearing.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for ws in list(self._websockets):
            await ws.close(code=WSCloseCode.OK)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._sessions.clear()
        self._by_ssrc.clear()

    @property
    def endpoint(self) -> str:
        """``host:port`` of the voice websocket, as sent in VOICE_SERVER_UPDATE."""
        return f"{self.host}:{self._tcp_port}"

    @property
    def out_dir(self) -> Path | None:
        """Where the bot's utterances are saved as WAV files (None: not saved)."""
        return self.hearing.out_dir

    @property
    def on_utterance(self) -> Callable[[Utterance], None] | None:
        """Called with each utterance of the bot once it is complete (and saved)."""
        return self.hearing.on_utterance

    @on_utterance.setter
    def on_utterance(self, callback: Callable[[Utterance], None] | None) -> None:
        self.hearing.on_utterance = callback

    @property
    def udp_port(self) -> int:
        return self._udp_port

    @property
    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this server's certificate (sandbox clients only)."""
        return self._client_ssl

    @property
    def ca_pem(self) -> bytes:
        """The certificate authority of this server's TLS certificate, as PEM."""
        return self._ca.cert_pem.bytes()

    # ----- what the sandbox gateway calls ---------------------------------------------

    def expect(self, *, guild_id: int, user_id: int, session_id: str, token: str) -> None:
        """Allow one IDENTIFY for `guild_id` with exactly these credentials."""
        self._expected[guild_id] = Expected(user_id, session_id, token)
        self.hearing.new_session(guild_id)

    def disconnect(self, guild_id: int) -> None:
        """End the guild's voice session: keep what was said, close the websocket."""
        self._expected.pop(guild_id, None)
        session = self._sessions.pop(guild_id, None)
        if session is None:
            return
        self._finish_utterance(session)
        self._by_ssrc.pop(session.ssrc, None)
        if session.ws is not None and not session.ws.closed:
            self._spawn(self._close_later(session.ws, DISCONNECT_GRACE, CLOSE_DISCONNECTED))

    # ----- what tests, the console and benchmarks read ----------------------------------

    def utterances(self, guild_id: int) -> list[Utterance]:
        """Complete utterances played in `guild_id`, oldest first."""
        return self.hearing.utterances(guild_id)

    async def wait_for_utterance(
        self,
        guild_id: int,
        *,
        index: int = 0,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> Utterance:
        """Wait for the `index`-th complete utterance of `guild_id` (raises TimeoutError)."""
        return await self.hearing.wait_for_utterance(guild_id, index=index, timeout=timeout)

    def first_packet_time(self, guild_id: int) -> float | None:
        """`time.monotonic()` of the first audio packet of the guild's current voice session."""
        return self.hearing.first_packet_time(guild_id)

    # ----- what users do: speak to the bot ------------------------------------------------

    async def speak(
        self, guild_id: int, user_id: int, audio: Path | str | bytes, *, ssrc: int | None = None
    ) -> Spoken:
        """Send `audio` (a WAV path or bytes, any rate) to the bot as `user_id`'s voice.

        SPEAKING (op 5) maps the SSRC to the user on the bot's voice websocket, then 20 ms
        Opus frames are paced as RTP to the bot's UDP address, ending with five silence
        frames. Several calls may run at once (different users overlap). Raises ValueError
        when the user is not in the bot's voice channel (`in_voice`), RuntimeError when the
        bot has no voice connection in the guild.
        """
        if self.in_voice is not None and not self.in_voice(guild_id, user_id):
            raise ValueError(f"User {user_id} is not in the bot's voice channel of {guild_id}")
        session = self._ready_session(guild_id)
        frames = await asyncio.to_thread(opus_frames, audio)
        ssrc = ssrc if ssrc is not None else session.user_ssrcs.get(user_id) or next(self._ssrcs)
        session.user_ssrcs[user_id] = ssrc
        stream = session.user_streams.get(user_id)
        if stream is None or stream.ssrc != ssrc:  # a client's sequence goes on between turns
            stream = session.user_streams[user_id] = RtpStream(session.key, ssrc)
        await self._send_ws(
            session, OP_SPEAKING, {"user_id": str(user_id), "ssrc": ssrc, "speaking": 1}
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, payload in enumerate([*frames, *[OPUS_SILENCE] * SILENCE_FRAMES]):
            delay = start + index * FRAME_SECONDS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._send_udp(session, stream.packet(payload))
        log.info(
            "User %s spoke %.2f s to the bot in guild %s",
            user_id,
            len(frames) * FRAME_SECONDS,
            guild_id,
        )
        return Spoken(ssrc, len(frames))

    def session_key(self, guild_id: int) -> bytes:
        """The transport key of the guild's voice session (to forge packets in fault tests)."""
        return self._ready_session(guild_id).key

    def route_dropped(self, guild_id: int) -> int:
        """Datagrams for the bot dropped because it had been silent past `route_timeout`."""
        session = self._sessions.get(guild_id)
        return session.dropped if session is not None else 0

    def send_raw(self, guild_id: int, packet: bytes) -> None:
        """Send any datagram to the bot's voice socket (malformed packets, unknown SSRCs)."""
        self._send_udp(self._ready_session(guild_id), packet)

    async def client_disconnect(self, guild_id: int, user_id: int) -> None:
        """Tell the bot's voice websocket that `user_id` left the call (op 13)."""
        session = self._sessions.get(guild_id)
        if session is None or session.ws is None:
            return
        session.user_ssrcs.pop(user_id, None)
        session.user_streams.pop(user_id, None)
        await self._send_ws(session, OP_CLIENT_DISCONNECT, {"user_id": str(user_id)})
