"""The sandbox voice server, driven by a hand-made client that speaks discord.py's protocol.

The client here does what discord.py 2.7's voice client does on the wire (TLS websocket,
voice gateway v8, UDP IP discovery, ``aead_xchacha20_poly1305_rtpsize`` RTP with Opus
encoded by PyAV), so each test checks one piece of the server against the real format.
"""

from __future__ import annotations

import asyncio
import fractions
import io
import json
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import discord
import imageio_ffmpeg
import nacl.secret
import numpy as np
import pytest
import yarl

from bot.sandbox.server import Sandbox
from bot.sandbox.voice import MODE, OPUS_SILENCE, Utterance, VoiceServer

GUILD_ID = 4242
USER_ID = 777
SESSION_ID = "session-abc"
TOKEN = "voice-token-1"
FRAME_SAMPLES = 960  # 20 ms at 48 kHz


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    """Interleaved s16 stereo samples of a sine tone at 48 kHz."""
    t = np.arange(int(48_000 * seconds)) / 48_000
    mono = (np.sin(2 * np.pi * freq * t) * 12_000).astype(np.int16)
    return np.repeat(mono, 2)


def opus_packets(samples: np.ndarray) -> list[bytes]:
    """Encode interleaved s16 stereo 48 kHz samples to 20 ms Opus packets with PyAV."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48_000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.time_base = fractions.Fraction(1, 48_000)
    encoder.open()
    packets: list[bytes] = []
    frames = len(samples) // 2
    for start in range(0, frames - frames % FRAME_SAMPLES, FRAME_SAMPLES):
        chunk = samples[start * 2 : (start + FRAME_SAMPLES) * 2].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = 48_000
        frame.pts = start
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    return packets


def dominant_frequency(pcm: bytes, rate: int, channels: int) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).reshape(-1, channels)[:, 0].astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


class FakeVoiceClient:
    """The voice side of a discord.py client, reduced to what these tests need."""

    def __init__(self, server: VoiceServer) -> None:
        self.server = server
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=server.client_ssl_context)
        )
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.udp_protocol = _Udp()
        self.ssrc = 0
        self.box: nacl.secret.Aead | None = None
        self.sequence = 0
        self.timestamp = 0
        self.nonce = 0

    async def open(self) -> dict[str, Any]:
        """Connect the websocket and return HELLO."""
        self.ws = await self.http.ws_connect(f"wss://{self.server.endpoint}/?v=8", compress=15)
        return await self.receive()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.udp is not None:
            self.udp.close()
        await self.http.close()

    async def send(self, op: int, data: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"op": op, "d": data}))

    async def receive(self) -> dict[str, Any]:
        assert self.ws is not None
        message = await asyncio.wait_for(self.ws.receive(), 5)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    async def close_code(self) -> int | None:
        assert self.ws is not None
        message = await asyncio.wait_for(self.ws.receive(), 5)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        return message.data

    async def identify(self, token: str = TOKEN) -> dict[str, Any]:
        data = {
            "server_id": str(GUILD_ID),
            "user_id": str(USER_ID),
            "session_id": SESSION_ID,
            "token": token,
            "max_dave_protocol_version": 1,
        }
        await self.send(0, data)
        return await self.receive()

    async def discover(self, ready: dict[str, Any]) -> bytes:
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(
            lambda: self.udp_protocol, remote_addr=(ready["ip"], ready["port"])
        )
        request = bytearray(74)
        struct.pack_into(">HHI", request, 0, 1, 70, ready["ssrc"])
        self.udp.sendto(bytes(request))
        return await asyncio.wait_for(self.udp_protocol.received.get(), 5)

    async def connect(self) -> dict[str, Any]:
        """The whole handshake; returns SESSION_DESCRIPTION."""
        await self.open()
        ready = (await self.identify())["d"]
        self.ssrc = ready["ssrc"]
        answer = await self.discover(ready)
        ip = answer[8 : answer.index(0, 8)].decode("ascii")
        port = struct.unpack_from(">H", answer, 72)[0]
        await self.send(1, {"protocol": "udp", "data": {"address": ip, "port": port, "mode": MODE}})
        description = await self.receive()
        self.box = nacl.secret.Aead(bytes(description["d"]["secret_key"]))
        return description

    def rtp(self, payload: bytes, *, extension: bytes | None = None, box: Any = None) -> bytes:
        """One RTP packet encrypted the way discord.py does (optionally with an extension)."""
        self.sequence = (self.sequence + 1) % 65536
        header = bytearray(12)
        header[0] = 0x80 | (0x10 if extension is not None else 0)
        header[1] = 0x78
        struct.pack_into(">HII", header, 2, self.sequence, self.timestamp, self.ssrc)
        self.timestamp = (self.timestamp + FRAME_SAMPLES) % 2**32
        plain = payload
        if extension is not None:
            header += struct.pack(">HH", 0xBEDE, len(extension) // 4)
            plain = extension + payload
        nonce = struct.pack(">I", self.nonce) + bytes(20)
        self.nonce += 1
        sealed = (box or self.box).encrypt(plain, bytes(header), nonce).ciphertext
        return bytes(header) + sealed + nonce[:4]

    async def play(self, packets: list[bytes], *, paced: bool = False) -> None:
        assert self.udp is not None
        for payload in packets:
            self.udp.sendto(self.rtp(payload))
            if paced:
                await asyncio.sleep(0.02)
            else:
                await asyncio.sleep(0)

    async def silence(self) -> None:
        await self.play([OPUS_SILENCE] * 5)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[VoiceServer]:
    voice = VoiceServer(out_dir=tmp_path / "voice")
    await voice.start()
    voice.expect(guild_id=GUILD_ID, user_id=USER_ID, session_id=SESSION_ID, token=TOKEN)
    yield voice
    await voice.stop()


@pytest.fixture
async def client(server: VoiceServer) -> AsyncIterator[FakeVoiceClient]:
    fake = FakeVoiceClient(server)
    yield fake
    await fake.close()


async def test_handshake_follows_voice_gateway_v8(
    server: VoiceServer, client: FakeVoiceClient
) -> None:
    hello = await client.open()
    assert hello["op"] == 8
    assert hello["d"]["heartbeat_interval"] > 0

    ready = await client.identify()
    assert ready["op"] == 2
    assert ready["d"]["ip"] == "127.0.0.1"
    assert ready["d"]["port"] == server.udp_port
    assert MODE in ready["d"]["modes"]
    assert isinstance(ready["d"]["ssrc"], int)
    assert isinstance(ready["seq"], int)

    answer = await client.discover(ready["d"])
    local_port = client.udp.get_extra_info("sockname")[1]
    assert len(answer) == 74
    assert struct.unpack_from(">HHI", answer) == (2, 70, ready["d"]["ssrc"])
    assert answer[8 : answer.index(0, 8)] == b"127.0.0.1"
    assert struct.unpack_from(">H", answer, 72)[0] == local_port

    select = {"protocol": "udp", "data": {"address": "127.0.0.1", "port": local_port, "mode": MODE}}
    await client.send(1, select)
    description = await client.receive()
    assert description["op"] == 4
    assert description["d"]["mode"] == MODE
    assert description["d"]["dave_protocol_version"] == 0
    key = description["d"]["secret_key"]
    assert len(key) == 32 and all(0 <= b < 256 for b in key)
    assert description["seq"] > ready["seq"]

    await client.send(3, {"t": 1234567, "seq_ack": description["seq"]})
    ack = await client.receive()
    assert ack == {"op": 6, "d": {"t": 1234567}}

    await client.send(5, {"speaking": 1, "delay": 0, "ssrc": ready["d"]["ssrc"]})
    await client.send(3, {"t": 99, "seq_ack": description["seq"]})
    assert (await client.receive())["op"] == 6  # SPEAKING accepted, connection still open


async def test_wrong_token_is_refused(client: FakeVoiceClient) -> None:
    await client.open()
    await client.send(0, {"server_id": str(GUILD_ID), "user_id": str(USER_ID),
                          "session_id": SESSION_ID, "token": "stolen"})  # fmt: skip
    assert await client.close_code() == 4004


async def test_select_protocol_before_identify_is_refused(client: FakeVoiceClient) -> None:
    await client.open()
    await client.send(1, {"protocol": "udp", "data": {"address": "x", "port": 1, "mode": MODE}})
    assert await client.close_code() == 4003


async def test_unknown_encryption_mode_is_refused(client: FakeVoiceClient) -> None:
    await client.open()
    await client.identify()
    await client.send(1, {"protocol": "udp", "data": {"address": "x", "port": 1, "mode": "rot13"}})
    assert await client.close_code() == 4016


async def test_resume_keeps_the_session(server: VoiceServer, client: FakeVoiceClient) -> None:
    await client.connect()
    await client.ws.close()

    again = FakeVoiceClient(server)
    try:
        await again.open()
        resume = {"token": TOKEN, "server_id": str(GUILD_ID), "session_id": SESSION_ID}
        await again.send(7, {**resume, "seq_ack": 2})
        assert (await again.receive())["op"] == 9
    finally:
        await again.close()

    # Audio on the resumed session's ssrc and key is still accepted.
    await client.play(opus_packets(tone(0.4)))
    await client.silence()
    utterance = await server.wait_for_utterance(GUILD_ID, timeout=5)
    assert utterance.duration == pytest.approx(0.4, rel=0.1)


async def test_resume_with_wrong_session_is_refused(client: FakeVoiceClient) -> None:
    await client.open()
    await client.send(7, {"token": TOKEN, "server_id": str(GUILD_ID), "session_id": "nope"})
    assert await client.close_code() == 4006


async def test_tone_is_decrypted_decoded_and_saved(
    server: VoiceServer, client: FakeVoiceClient, tmp_path: Path
) -> None:
    heard: list[Utterance] = []
    server.on_utterance = heard.append
    await client.connect()
    assert server.first_packet_time(GUILD_ID) is None

    await client.play(opus_packets(tone(1.5)))
    utterance = await server.wait_for_utterance(GUILD_ID, timeout=5)

    assert utterance.duration == pytest.approx(1.5, rel=0.1)
    assert utterance.guild_id == GUILD_ID
    assert utterance.ssrc == client.ssrc
    assert utterance.packets >= 75
    assert dominant_frequency(utterance.pcm, 48_000, 2) == pytest.approx(440, abs=5)
    assert server.first_packet_time(GUILD_ID) == utterance.started_at
    assert utterance.started_at <= utterance.ended_at
    assert heard == [utterance]

    assert utterance.path is not None and utterance.path.parent == tmp_path / "voice"
    with wave.open(str(utterance.path)) as saved:
        assert (saved.getframerate(), saved.getnchannels(), saved.getsampwidth()) == (48_000, 2, 2)
        assert saved.readframes(saved.getnframes()) == utterance.pcm
    assert utterance.path.read_bytes() == utterance.wav_bytes()

    with wave.open(io.BytesIO(utterance.mono16k_wav())) as mono:
        assert (mono.getframerate(), mono.getnchannels(), mono.getsampwidth()) == (16_000, 1, 2)
        assert mono.getnframes() / 16_000 == pytest.approx(utterance.duration, rel=0.02)
        pcm16k = mono.readframes(mono.getnframes())
    assert dominant_frequency(pcm16k, 16_000, 1) == pytest.approx(440, abs=5)


async def test_a_pause_splits_two_utterances(server: VoiceServer, client: FakeVoiceClient) -> None:
    await client.connect()
    await client.play(opus_packets(tone(0.6, 440)), paced=True)
    await asyncio.sleep(0.8)
    await client.play(opus_packets(tone(1.0, 660)), paced=True)

    first = await server.wait_for_utterance(GUILD_ID, index=0, timeout=5)
    second = await server.wait_for_utterance(GUILD_ID, index=1, timeout=5)

    assert first.duration == pytest.approx(0.6, rel=0.1)
    assert second.duration == pytest.approx(1.0, rel=0.1)
    assert dominant_frequency(first.pcm, 48_000, 2) == pytest.approx(440, abs=5)
    assert dominant_frequency(second.pcm, 48_000, 2) == pytest.approx(660, abs=5)
    assert second.started_at - first.ended_at >= 0.7
    assert len(server.utterances(GUILD_ID)) == 2
    paths = sorted(p.name for p in server.out_dir.iterdir())
    assert paths == sorted([first.path.name, second.path.name])


async def test_silence_frames_end_an_utterance(tmp_path: Path) -> None:
    # With a long idle timeout only the silence frames can split these.
    server = VoiceServer(idle_timeout=30)
    await server.start()
    server.expect(guild_id=GUILD_ID, user_id=USER_ID, session_id=SESSION_ID, token=TOKEN)
    client = FakeVoiceClient(server)
    try:
        await client.connect()
        await client.play(opus_packets(tone(0.5)))
        await client.silence()
        await client.play(opus_packets(tone(0.3)))
        await client.silence()
        first = await server.wait_for_utterance(GUILD_ID, index=0, timeout=5)
        second = await server.wait_for_utterance(GUILD_ID, index=1, timeout=5)
    finally:
        await client.close()
        await server.stop()
    assert first.duration == pytest.approx(0.5, rel=0.1)
    assert second.duration == pytest.approx(0.3, rel=0.1)
    assert first.path is None  # no out_dir: nothing saved


async def test_header_extension_is_stripped_and_bad_packets_dropped(
    server: VoiceServer, client: FakeVoiceClient
) -> None:
    await client.connect()
    packets = opus_packets(tone(0.6))
    wrong_key = nacl.secret.Aead(bytes(32))
    for payload in packets:
        client.udp.sendto(client.rtp(payload, extension=b"\x10\x01\x02\x03"))
        client.udp.sendto(client.rtp(payload, box=wrong_key))  # forged: must be ignored
        client.udp.sendto(b"\x80\x78garbage")
    await client.silence()

    utterance = await server.wait_for_utterance(GUILD_ID, timeout=5)
    assert utterance.packets == len(packets)
    assert utterance.duration == pytest.approx(0.6, rel=0.1)
    assert dominant_frequency(utterance.pcm, 48_000, 2) == pytest.approx(440, abs=5)


async def test_disconnect_closes_the_session(server: VoiceServer, client: FakeVoiceClient) -> None:
    await client.connect()
    await client.play(opus_packets(tone(0.5)))
    await asyncio.sleep(0.1)  # let the datagrams in; shorter than the idle timeout
    server.disconnect(GUILD_ID)

    # What was said before leaving is kept, and the websocket is closed as Discord does.
    utterance = await server.wait_for_utterance(GUILD_ID, timeout=5)
    assert utterance.duration == pytest.approx(0.5, rel=0.1)
    assert await client.close_code() == 4014

    # The session is gone: its credentials no longer identify, its audio is ignored.
    await client.play(opus_packets(tone(0.5)))
    again = FakeVoiceClient(server)
    try:
        await again.open()
        await again.send(0, {"server_id": str(GUILD_ID), "user_id": str(USER_ID),
                             "session_id": SESSION_ID, "token": TOKEN})  # fmt: skip
        assert await again.close_code() == 4004
    finally:
        await again.close()
    assert len(server.utterances(GUILD_ID)) == 1


async def test_waiting_for_a_missing_utterance_times_out(
    server: VoiceServer, client: FakeVoiceClient
) -> None:
    await client.connect()
    with pytest.raises(TimeoutError):
        await server.wait_for_utterance(GUILD_ID, timeout=0.5)


async def test_real_discord_client_plays_into_the_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unmodified discord.py client joins through the sandbox gateway and plays a clip."""
    clip = tmp_path / "tone.wav"
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes(tone(1.2).tobytes())

    async with Sandbox(out_dir=tmp_path / "voice") as sandbox:
        monkeypatch.setattr(discord.http.Route, "BASE", sandbox.api_base)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(sandbox.gateway_url)
        )
        intents = discord.Intents.none()
        intents.guilds = True
        intents.voice_states = True
        connector = aiohttp.TCPConnector(limit=0, ssl=sandbox.voice.client_ssl_context)
        client = discord.Client(intents=intents, connector=connector, guild_ready_timeout=0.05)
        runner = asyncio.create_task(client.start("sandbox-token"))
        try:
            async with asyncio.timeout(20):
                while not client.is_ready():
                    if runner.done():
                        runner.result()  # surfaces a login failure instead of a timeout
                    await asyncio.sleep(0.02)

            channel = client.get_channel(Sandbox.VOICE_CHANNEL_ID)
            assert isinstance(channel, discord.VoiceChannel)
            voice = await channel.connect(timeout=15, reconnect=False)
            assert voice.is_connected()

            finished = asyncio.Event()
            loop = asyncio.get_running_loop()
            source = discord.FFmpegOpusAudio(str(clip), executable=imageio_ffmpeg.get_ffmpeg_exe())
            voice.play(source, after=lambda _error: loop.call_soon_threadsafe(finished.set))
            utterance = await sandbox.voice.wait_for_utterance(Sandbox.GUILD_ID, timeout=20)
            await asyncio.wait_for(finished.wait(), 10)

            assert utterance.duration == pytest.approx(1.2, rel=0.1)
            assert dominant_frequency(utterance.pcm, 48_000, 2) == pytest.approx(440, abs=5)
            assert utterance.path is not None and utterance.path.exists()

            await asyncio.wait_for(voice.disconnect(), 10)
            assert not voice.is_connected()
        finally:
            await client.close()
            await asyncio.gather(runner, return_exceptions=True)
