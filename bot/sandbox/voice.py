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
4. RTP over UDP, ``aead_xchacha20_poly1305_rtpsize``: each payload is decrypted, decoded with
   PyAV's bundled libopus to s16 48 kHz stereo and grouped into `Utterance` objects. An
   utterance ends after `idle_timeout` seconds without audio or when Opus silence frames
   arrive (discord.py's player sends five when it stops or pauses).

Heartbeats (op 3 -> op 6), SPEAKING (op 5) and RESUME (op 7 -> op 9) are handled too.
The TLS certificate comes from a throwaway CA made with trustme; `client_ssl_context`
trusts it and is meant only for a client running in sandbox mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import json
import logging
import os
import socket
import ssl
import struct
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import nacl.exceptions
import nacl.secret
import numpy as np
import trustme
from aiohttp import WSCloseCode, WSMsgType, web

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
CHANNELS = 2
SAMPLE_WIDTH = 2
BYTES_PER_SECOND = SAMPLE_RATE * CHANNELS * SAMPLE_WIDTH
OPUS_SILENCE = b"\xf8\xff\xfe"
MODE = "aead_xchacha20_poly1305_rtpsize"
SUPPORTED_MODES = (MODE,)
HEARTBEAT_INTERVAL_MS = 13_750
GATEWAY_VERSION = 8

DISCOVERY_LENGTH = 74
DISCOVERY_REQUEST = 0x1
DISCOVERY_RESPONSE = 0x2
RTP_HEADER_LENGTH = 12
NONCE_SUFFIX_LENGTH = 4
AEAD_TAG_LENGTH = 16

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
class Utterance:
    """One stretch of audio the bot played, decoded to s16le 48 kHz stereo PCM."""

    guild_id: int
    ssrc: int
    pcm: bytes
    packets: int
    started_at: float
    ended_at: float
    path: Path | None = None

    @property
    def duration(self) -> float:
        """Seconds of decoded audio."""
        return len(self.pcm) / BYTES_PER_SECOND

    def wav_bytes(self) -> bytes:
        """The audio as a 48 kHz stereo 16-bit WAV file."""
        return _wav(self.pcm, SAMPLE_RATE, CHANNELS)

    def mono16k_wav(self) -> bytes:
        """The audio resampled to a 16 kHz mono 16-bit WAV file, as speech recognizers like."""
        return _wav(_to_mono16k(self.pcm), 16_000, 1)


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
    box: nacl.secret.Aead | None = None
    speaking: int = 0
    client_address: tuple[str, int] | None = None
    decoder: _OpusDecoder | None = None
    pcm: bytearray = field(default_factory=bytearray)
    packets: int = 0
    started_at: float = 0.0
    last_at: float = 0.0
    idle_timer: asyncio.TimerHandle | None = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class _OpusDecoder:
    """Decodes single Opus packets to interleaved s16 48 kHz stereo with PyAV's libopus."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("opus", "r")
        self._codec.sample_rate = SAMPLE_RATE
        self._codec.layout = "stereo"
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)

    def decode(self, payload: bytes) -> bytes:
        chunks: list[bytes] = []
        for frame in self._codec.decode(av.Packet(payload)):
            for converted in self._resampler.resample(frame):
                chunks.append(converted.to_ndarray().tobytes())
        return b"".join(chunks)


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
        self.out_dir = out_dir
        self.idle_timeout = idle_timeout
        self.on_utterance: Callable[[Utterance], None] | None = None

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
        self._utterances: dict[int, list[Utterance]] = {}
        self._first_packet: dict[int, float] = {}
        self._published = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[Utterance, Path | None]] | None = None
        self._file_numbers = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._publisher: asyncio.Task[None] | None = None
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
        self._outbox = asyncio.Queue()
        self._publisher = asyncio.create_task(self._publish_loop(), name="voice-utterance-writer")
        log.info("Sandbox voice server on %s (UDP port %d)", self.endpoint, self._udp_port)

    async def stop(self) -> None:
        """Finish the utterances in progress, save them and close every socket."""
        for session in list(self._sessions.values()):
            self._finish_utterance(session)
        if self._outbox is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._outbox.join()
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None
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
        self._first_packet.pop(guild_id, None)

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
        return list(self._utterances.get(guild_id, ()))

    async def wait_for_utterance(
        self,
        guild_id: int,
        *,
        index: int = 0,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> Utterance:
        """Wait for the `index`-th complete utterance of `guild_id` (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            while True:
                done = self._utterances.get(guild_id, [])
                if len(done) > index:
                    return done[index]
                await self._published.wait()

    def first_packet_time(self, guild_id: int) -> float | None:
        """`time.monotonic()` of the first audio packet of the guild's current voice session."""
        return self._first_packet.get(guild_id)

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
        session.box = nacl.secret.Aead(key)
        session.decoder = _OpusDecoder()
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
        if session is None or session.box is None or session.decoder is None:
            log.debug("Dropping RTP for unknown or unkeyed ssrc %s", ssrc)
            return
        payload = _decrypt_rtpsize(session.box, packet)
        if payload is None:
            log.debug("Dropping an RTP packet for ssrc %s that does not decrypt", ssrc)
            return
        if payload == OPUS_SILENCE:
            self._finish_utterance(session)
            return
        try:
            pcm = session.decoder.decode(payload)
        except av.error.FFmpegError as exc:
            log.debug("Dropping an undecodable Opus packet for ssrc %s: %s", ssrc, exc)
            return
        self._add_audio(session, pcm)

    def _add_audio(self, session: _Session, pcm: bytes) -> None:
        now = time.monotonic()
        self._first_packet.setdefault(session.guild_id, now)
        if session.packets == 0:
            session.started_at = now
        session.pcm += pcm
        session.packets += 1
        session.last_at = now
        if session.idle_timer is not None:
            session.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        session.idle_timer = loop.call_later(self.idle_timeout, self._finish_utterance, session)

    def _finish_utterance(self, session: _Session) -> None:
        if session.idle_timer is not None:
            session.idle_timer.cancel()
            session.idle_timer = None
        if session.packets == 0:
            return
        utterance = Utterance(
            guild_id=session.guild_id,
            ssrc=session.ssrc,
            pcm=bytes(session.pcm),
            packets=session.packets,
            started_at=session.started_at,
            ended_at=session.last_at,
        )
        session.pcm = bytearray()
        session.packets = 0
        path = None
        if self.out_dir is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = (
                self.out_dir
                / f"voice-{session.guild_id}-{stamp}-{next(self._file_numbers):03d}.wav"
            )
        if self._outbox is not None:
            self._outbox.put_nowait((utterance, path))

    # ----- publishing ----------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        """Save utterances in order (off the loop), then make them visible and notify."""
        assert self._outbox is not None
        while True:
            utterance, path = await self._outbox.get()
            try:
                if path is not None:
                    await asyncio.to_thread(_write_atomically, path, utterance.wav_bytes())
                    utterance = dataclasses.replace(utterance, path=path)
                self._publish(utterance)
            except OSError:
                log.exception("Could not save the bot's speech to %s", path)
                self._publish(utterance)
            finally:
                self._outbox.task_done()

    def _publish(self, utterance: Utterance) -> None:
        self._utterances.setdefault(utterance.guild_id, []).append(utterance)
        log.info(
            "Bot said %.2f s in guild %s (%d packets)",
            utterance.duration,
            utterance.guild_id,
            utterance.packets,
        )
        self._published.set()
        self._published = asyncio.Event()
        if self.on_utterance is not None:
            try:
                self.on_utterance(utterance)
            except Exception:
                log.exception("on_utterance callback failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _decrypt_rtpsize(box: nacl.secret.Aead, packet: bytes) -> bytes | None:
    """Open an ``aead_xchacha20_poly1305_rtpsize`` packet and return its Opus payload.

    The associated data is the RTP header with its CSRCs and, when the X bit is set, the
    4-byte extension header; the extension body is inside the ciphertext and is stripped
    from the plaintext. The nonce is the packet's last 4 bytes padded with zeros.
    """
    header_length = RTP_HEADER_LENGTH + 4 * (packet[0] & 0x0F)
    extension_words = 0
    if packet[0] & 0x10:
        if len(packet) < header_length + 4:
            return None
        (extension_words,) = struct.unpack_from(">H", packet, header_length + 2)
        header_length += 4
    if len(packet) < header_length + AEAD_TAG_LENGTH + NONCE_SUFFIX_LENGTH:
        return None
    nonce = packet[-NONCE_SUFFIX_LENGTH:] + bytes(nacl.secret.Aead.NONCE_SIZE - NONCE_SUFFIX_LENGTH)
    try:
        plain = box.decrypt(
            packet[header_length:-NONCE_SUFFIX_LENGTH], packet[:header_length], nonce
        )
    except nacl.exceptions.CryptoError:
        return None
    return plain[4 * extension_words :]


def _dumps(op: int, data: Any, seq: int | None = None) -> str:
    payload: dict[str, Any] = {"op": op, "d": data}
    if seq is not None:
        payload["seq"] = seq
    return json.dumps(payload)


def _wav(pcm: bytes, rate: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def _to_mono16k(pcm: bytes) -> bytes:
    usable = len(pcm) - len(pcm) % (CHANNELS * SAMPLE_WIDTH)
    if usable == 0:
        return b""
    samples = np.frombuffer(pcm[:usable], dtype=np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
    frame.sample_rate = SAMPLE_RATE
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
    frames = resampler.resample(frame) + resampler.resample(None)
    return b"".join(f.to_ndarray().tobytes() for f in frames)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
