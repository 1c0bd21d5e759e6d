"""The voice server's sessions: the voice gateway v8 websocket and the UDP socket.

What `VoiceServer` (voice.py) inherits: one `_Session` per guild, made by IDENTIFY (op 0, checked
against what `expect` was told) and keyed by SELECT_PROTOCOL (op 1 -> op 4, DAVE declined),
resumed by op 7; heartbeats (op 3 -> op 6) and SPEAKING (op 5). On UDP: IP discovery answered,
the bot's RTP decrypted (``aead_xchacha20_poly1305_rtpsize``) and handed to `Hearing`
(voice_hear.py); `_send_ws` and `_send_udp` are how speaking (voice_speak.py) reaches the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import nacl.secret
from aiohttp import WSMsgType, web

from bot.sandbox.voice_hear import BotStream, Hearing
from bot.sandbox.voice_speak import RtpStream
from bot.services.hearing.receive.rtp import TransportDecryptor

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
class Expected:
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


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: VoiceSessions) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._server._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("Voice UDP socket error: %s", exc)


class VoiceSessions:
    """The voice sessions of every guild, over the websocket and UDP (see the module)."""

    def __init__(self, host: str, hearing: Hearing) -> None:
        self.host = host
        self.hearing = hearing
        # Discord stops forwarding to a client that sent nothing for about a minute; with
        # `route_timeout` set (seconds), the sandbox does the same (None: never).
        self.route_timeout: float | None = None
        self._expected: dict[int, Expected] = {}
        self._sessions: dict[int, _Session] = {}  # guild id -> current session
        self._by_ssrc: dict[int, _Session] = {}
        self._ssrcs = itertools.count(1001)
        self._transport: asyncio.DatagramTransport | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._websockets: set[web.WebSocketResponse] = set()
        self._udp_port = 0

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
        if expected != Expected(user_id, session_id, token):
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
