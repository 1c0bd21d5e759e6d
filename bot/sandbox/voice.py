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
import contextlib
import itertools
import json
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.secret
import trustme
from aiohttp import WSCloseCode, WSMsgType, web

from bot.sandbox.voice_hear import (
    BYTES_PER_SECOND,
    CHANNELS,
    OPUS_SILENCE,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    BotStream,
    Hearing,
    Utterance,
)
from bot.sandbox.voice_speak import (
    FRAME_SECONDS,
    SILENCE_FRAMES,
    RtpStream,
    Spoken,
    opus_frames,
)
from bot.services.receive.rtp import TransportDecryptor

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

MODE = "aead_xchacha20_poly1305_rtpsize"
SUPPORTED_MODES = (MODE,)
HEARTBEAT_INTERVAL_MS = 13_750
GATEWAY_VERSION = 8

DISCOVERY_LENGTH = 74
DISCOVERY_REQUEST = 0x1
DISCOVERY_RESPONSE = 0x2
RTP_HEADER_LENGTH = 12

# Voice gateway opcodes (the ones this server reads or writes).
OP_IDENTIFY = 0
OP_SELECT_PROTOCOL = 1
OP_READY = 2
OP_HEARTBEAT = 3
OP_SESSION_DESCRIPTION = 4
OP_SPEAKING = 5
OP_HEARTBEAT_ACK = 6
OP_RESUME = 7
OP_HELLO = 8
OP_RESUMED = 9
OP_CLIENT_DISCONNECT = 13

# Voice gateway close codes, as Discord documents them.
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_SESSION_INVALID = 4006
CLOSE_UNKNOWN_PROTOCOL = 4012
CLOSE_DISCONNECTED = 4014
CLOSE_UNKNOWN_MODE = 4016

# After `disconnect`, the client normally closes the voice websocket itself; give it this
# long before the server closes it with 4014 the way Discord does when a bot is removed.
DISCONNECT_GRACE = 1.0


@dataclass(frozen=True)
class _Expected:
    user_id: int
    session_id: str
    token: str


@dataclass
class _Session:
    """One identified voice connection: its ssrc, key, decoder and the utterance in progress."""

    guild_id: int
    user_id: int
    session_id: str
    token: str
    ssrc: int
    ws: web.WebSocketResponse | None = None
    seq: int = 0
    mode: str | None = None
    speaking: int = 0
    client_address: tuple[str, int] | None = None
    key: bytes = b""
    transport: TransportDecryptor | None = None
    stream: BotStream | None = None
    user_ssrcs: dict[int, int] = field(default_factory=dict)  # user id -> SSRC they speak with
    user_streams: dict[int, RtpStream] = field(default_factory=dict)  # sequence goes on
    last_heard: float = 0.0  # monotonic time of the bot's last datagram
    dropped: int = 0  # datagrams not forwarded because the route had lapsed

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: VoiceServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._server._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("Voice UDP socket error: %s", exc)


class VoiceServer:
    """Voice gateway v8 (TLS websocket) and UDP media endpoint for the sandbox."""

    def __init__(
        self, host: str = "127.0.0.1", out_dir: Path | None = None, *, idle_timeout: float = 0.4
    ) -> None:
        self.host = host
        self.hearing = Hearing(out_dir, idle_timeout=idle_timeout)
        # Whether a user is in the bot's voice channel of a guild; the sandbox sets it.
        self.in_voice: Callable[[int, int], bool] | None = None
        # Discord stops forwarding to a client that sent nothing for about a minute; with
        # `route_timeout` set (seconds), the sandbox does the same (None: never).
        self.route_timeout: float | None = None

        self._ca = trustme.CA()
        identities = dict.fromkeys((host, "127.0.0.1", "localhost"))
        self._cert = self._ca.issue_cert(*identities)
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(self._server_ssl)
        self._client_ssl = ssl.create_default_context()
        self._ca.configure_trust(self._client_ssl)

        self._expected: dict[int, _Expected] = {}
        self._sessions: dict[int, _Session] = {}  # guild id -> current session
        self._by_ssrc: dict[int, _Session] = {}
        self._ssrcs = itertools.count(1001)
        self._runner: web.AppRunner | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._websockets: set[web.WebSocketResponse] = set()
        self._tcp_port = 0
        self._udp_port = 0

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
            lambda: _UdpProtocol(self), local_addr=(self.host, 0)
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

    # ----- what the sandbox gateway calls ---------------------------------------------

    def expect(self, *, guild_id: int, user_id: int, session_id: str, token: str) -> None:
        """Allow one IDENTIFY for `guild_id` with exactly these credentials."""
        self._expected[guild_id] = _Expected(user_id, session_id, token)
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

    def _ready_session(self, guild_id: int) -> _Session:
        session = self._sessions.get(guild_id)
        if session is None or session.ws is None or not session.key:
            raise RuntimeError(f"The bot has no voice connection in guild {guild_id}")
        if session.client_address is None:
            raise RuntimeError(f"The bot's voice UDP address in guild {guild_id} is unknown")
        return session

    async def _send_ws(self, session: _Session, op: int, data: Any) -> None:
        if session.ws is not None and not session.ws.closed:
            await session.ws.send_str(_dumps(op, data, session.next_seq()))

    def _send_udp(self, session: _Session, packet: bytes) -> None:
        lapsed = time.monotonic() - session.last_heard
        if self.route_timeout is not None and lapsed > self.route_timeout:
            session.dropped += 1
            return
        if self._transport is not None and session.client_address is not None:
            self._transport.sendto(packet, session.client_address)

    # ----- websocket -------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("v") != str(GATEWAY_VERSION):
            log.warning("Voice client asked for gateway version %r", request.query.get("v"))
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        self._websockets.add(ws)
        session: _Session | None = None
        try:
            hello = {"v": GATEWAY_VERSION, "heartbeat_interval": HEARTBEAT_INTERVAL_MS}
            await ws.send_str(_dumps(OP_HELLO, hello))
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    session = await self._handle_text(ws, session, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    log.debug(
                        "Ignoring binary voice frame of %d bytes (DAVE is declined)", len(msg.data)
                    )
        finally:
            self._websockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
        log.debug("Voice websocket closed with %s", ws.close_code)
        return ws

    async def _handle_text(
        self, ws: web.WebSocketResponse, session: _Session | None, text: str
    ) -> _Session | None:
        try:
            payload = json.loads(text)
            op = payload["op"]
            data = payload.get("d")
        except (ValueError, KeyError, TypeError):
            await ws.close(code=CLOSE_DECODE_ERROR, message=b"Failed to decode payload")
            return session

        if op == OP_HEARTBEAT:
            nonce = data.get("t") if isinstance(data, dict) else data
            await ws.send_str(_dumps(OP_HEARTBEAT_ACK, {"t": nonce}))
            return session
        if op == OP_IDENTIFY:
            if session is not None:
                await ws.close(code=CLOSE_ALREADY_AUTHENTICATED, message=b"Already authenticated")
                return session
            return await self._identify(ws, data)
        if op == OP_RESUME:
            return await self._resume(ws, data)
        if session is None:
            await ws.close(code=CLOSE_NOT_AUTHENTICATED, message=b"Not authenticated")
            return None
        if op == OP_SELECT_PROTOCOL:
            await self._select_protocol(ws, session, data)
        elif op == OP_SPEAKING:
            session.speaking = int(data.get("speaking", 0))
            log.debug(
                "Guild %s voice ssrc %s speaking=%s",
                session.guild_id,
                session.ssrc,
                session.speaking,
            )
        else:
            log.debug("Ignoring voice op %s", op)
        return session

    async def _identify(self, ws: web.WebSocketResponse, data: Any) -> _Session | None:
        try:
            guild_id = int(data["server_id"])
            user_id = int(data["user_id"])
            session_id = str(data["session_id"])
            token = str(data["token"])
        except (KeyError, TypeError, ValueError):
            await ws.close(code=CLOSE_DECODE_ERROR, message=b"Bad IDENTIFY")
            return None
        expected = self._expected.get(guild_id)
        if expected != _Expected(user_id, session_id, token):
            log.warning("Voice IDENTIFY for guild %s does not match the expected session", guild_id)
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed")
            return None

        old = self._sessions.pop(guild_id, None)
        if old is not None:
            self._finish_utterance(old)
            self._by_ssrc.pop(old.ssrc, None)
        session = _Session(guild_id, user_id, session_id, token, ssrc=next(self._ssrcs), ws=ws)
        self._sessions[guild_id] = session
        self._by_ssrc[session.ssrc] = session
        ready = {
            "ssrc": session.ssrc,
            "ip": self.host,
            "port": self._udp_port,
            "modes": list(SUPPORTED_MODES),
            "experiments": [],
        }
        await ws.send_str(_dumps(OP_READY, ready, session.next_seq()))
        log.info("Voice session for guild %s identified (ssrc %s)", guild_id, session.ssrc)
        return session

    async def _select_protocol(
        self, ws: web.WebSocketResponse, session: _Session, data: Any
    ) -> None:
        if not isinstance(data, dict) or data.get("protocol") != "udp":
            await ws.close(code=CLOSE_UNKNOWN_PROTOCOL, message=b"Unknown protocol")
            return
        details = data.get("data") or {}
        mode = details.get("mode")
        if mode not in SUPPORTED_MODES:
            await ws.close(code=CLOSE_UNKNOWN_MODE, message=b"Unknown encryption mode")
            return
        key = os.urandom(nacl.secret.Aead.KEY_SIZE)
        session.mode = mode
        session.key = key
        session.transport = TransportDecryptor(key, mode)
        session.stream = BotStream(session.guild_id, session.ssrc)
        with contextlib.suppress(KeyError, TypeError, ValueError):
            session.client_address = (str(details["address"]), int(details["port"]))
        description = {
            "mode": mode,
            "secret_key": list(key),
            "dave_protocol_version": 0,
            "audio_codec": "opus",
            "video_codec": None,
            "media_session_id": f"sandbox-{session.ssrc}",
        }
        await ws.send_str(_dumps(OP_SESSION_DESCRIPTION, description, session.next_seq()))

    async def _resume(self, ws: web.WebSocketResponse, data: Any) -> _Session | None:
        session = None
        with contextlib.suppress(KeyError, TypeError, ValueError):
            session = self._sessions.get(int(data["server_id"]))
        if (
            session is None
            or session.session_id != data.get("session_id")
            or session.token != data.get("token")
        ):
            await ws.close(code=CLOSE_SESSION_INVALID, message=b"Session no longer valid")
            return None
        session.ws = ws
        await ws.send_str(_dumps(OP_RESUMED, None, session.next_seq()))
        log.info("Voice session for guild %s resumed", session.guild_id)
        return session

    async def _close_later(self, ws: web.WebSocketResponse, delay: float, code: int) -> None:
        await asyncio.sleep(delay)
        if not ws.closed:
            await ws.close(code=code, message=b"Disconnected")

    # ----- UDP ---------------------------------------------------------------------------

    def _datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) == DISCOVERY_LENGTH and struct.unpack_from(">H", data)[0] == DISCOVERY_REQUEST:
            self._answer_discovery(data, addr)
        elif len(data) >= RTP_HEADER_LENGTH and data[0] & 0xC0 == 0x80:
            self._receive_rtp(data)
        else:
            log.debug("Ignoring a %d-byte datagram from %s", len(data), addr)

    def _answer_discovery(self, request: bytes, addr: tuple[str, int]) -> None:
        (ssrc,) = struct.unpack_from(">I", request, 4)
        session = self._by_ssrc.get(ssrc)
        if session is not None:
            session.last_heard = time.monotonic()
        answer = bytearray(DISCOVERY_LENGTH)
        struct.pack_into(">HHI", answer, 0, DISCOVERY_RESPONSE, DISCOVERY_LENGTH - 4, ssrc)
        ip = addr[0].encode("ascii")[:63]
        answer[8 : 8 + len(ip)] = ip
        struct.pack_into(">H", answer, DISCOVERY_LENGTH - 2, addr[1])
        if self._transport is not None:
            self._transport.sendto(bytes(answer), addr)

    def _receive_rtp(self, packet: bytes) -> None:
        if 200 <= packet[1] <= 204:  # RTCP sender/receiver reports share the socket
            return
        (ssrc,) = struct.unpack_from(">I", packet, 8)
        session = self._by_ssrc.get(ssrc)
        if session is None or session.transport is None or session.stream is None:
            log.debug("Dropping RTP for unknown or unkeyed ssrc %s", ssrc)
            return
        session.last_heard = time.monotonic()
        packet_in = session.transport.decrypt(packet)
        if packet_in is None:
            log.debug("Dropping an RTP packet for ssrc %s that does not decrypt", ssrc)
            return
        self.hearing.receive(session.stream, packet_in.payload)

    def _finish_utterance(self, session: _Session) -> None:
        if session.stream is not None:
            self.hearing.finish(session.stream)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _dumps(op: int, data: Any, seq: int | None = None) -> str:
    payload: dict[str, Any] = {"op": op, "d": data}
    if seq is not None:
        payload["seq"] = seq
    return json.dumps(payload)
