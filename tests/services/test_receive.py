"""Receiving voice without Discord: RTP and transport decryption, jitter buffer, DAVE, pipeline."""

from __future__ import annotations

import os
import struct

import davey
import numpy as np
import pytest

from bot.sandbox.voice_speak import encode_opus, encrypt_rtp
from bot.services.hearing.listening.sink import FRAME_BYTES
from bot.services.hearing.receive.dave import OPUS_SILENCE, DaveDecryptor
from bot.services.hearing.receive.jitter import JitterBuffer
from bot.services.hearing.receive.pipeline import ReceivePipeline
from bot.services.hearing.receive.rtp import MODE, TransportDecryptor, parse_header

KEY = bytes(range(32))
OPUS = b"\x78opus-ish payload"


def packet(**kw: object) -> bytes:
    fields: dict[str, object] = {"sequence": 7, "timestamp": 960, "ssrc": 1234, "nonce": 1}
    fields.update(kw)
    fields.setdefault("payload", OPUS)
    return encrypt_rtp(KEY, **fields)  # type: ignore[arg-type]


# ----- RTP ---------------------------------------------------------------------------------


def test_a_plain_packet_round_trips() -> None:
    got = TransportDecryptor(list(KEY), MODE).decrypt(packet())
    assert got is not None
    assert (got.payload, got.sequence, got.timestamp, got.ssrc) == (OPUS, 7, 960, 1234)
    assert got.header.payload_type == 0x78 and got.header.version == 2


def test_extension_values_csrcs_and_padding_are_stripped() -> None:
    raw = packet(csrcs=(11, 22), extension=b"\x10\xff\x00\x00" * 2, padding=5)
    got = TransportDecryptor(KEY).decrypt(raw)
    assert got is not None
    assert got.payload == OPUS
    assert got.header.csrcs == (11, 22)
    assert got.header.extension and got.header.padding
    assert got.header.length == 12 + 8 + 4


def test_sequence_numbers_wrap() -> None:
    got = TransportDecryptor(KEY).decrypt(packet(sequence=0x1_0005))
    assert got is not None and got.sequence == 5


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80",
        b"\x80\x78" + bytes(9),  # 11 bytes: short header
        packet()[:20],  # truncated ciphertext
        bytes([0x80, 200]) + bytes(30),  # RTCP sender report
        bytes([0x81, 201]) + bytes(30),  # RTCP receiver report
        bytes([0x40]) + bytes(40),  # RTP version 1
        os.urandom(60),
        packet()[:-1] + bytes([packet()[-1] ^ 1]),  # wrong nonce
        packet(extension=b"\x00" * 4)[:15],  # extension header cut short
    ],
)
def test_unusable_packets_are_none(raw: bytes) -> None:
    assert TransportDecryptor(KEY).decrypt(raw) is None


def test_a_forged_header_fails_authentication() -> None:
    raw = bytearray(packet())
    raw[8] ^= 0xFF  # the SSRC is associated data
    assert TransportDecryptor(KEY).decrypt(bytes(raw)) is None


def test_another_key_fails() -> None:
    assert TransportDecryptor(bytes(32)).decrypt(packet()) is None


def test_an_extension_longer_than_the_body_is_refused() -> None:
    raw = bytearray(packet(extension=b"\x00" * 4))
    struct.pack_into(">H", raw, 14, 500)  # claims 500 words (also breaks authentication)
    assert TransportDecryptor(KEY).decrypt(bytes(raw)) is None


def test_header_parsing_refuses_rtcp_and_short() -> None:
    assert parse_header(bytes([0x80, 200]) + bytes(10)) is None
    assert parse_header(bytes([0x8F, 0x78]) + bytes(20)) is None  # 15 CSRCs don't fit
    assert parse_header(packet()) is not None


def test_other_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="Unsupported"):
        TransportDecryptor(KEY, "xsalsa20_poly1305")


# ----- jitter buffer -----------------------------------------------------------------------


def seqs(buffer: JitterBuffer, *numbers: int) -> list[int]:
    out: list[int] = []
    for n in numbers:
        out += [int(p) for p in buffer.push(n, str(n).encode())]
    return out


def test_in_order_packets_pass_at_once() -> None:
    assert seqs(JitterBuffer(), 10, 11, 12) == [10, 11, 12]


def test_reordered_packets_come_out_in_order() -> None:
    assert seqs(JitterBuffer(), 10, 12, 13, 11, 14) == [10, 11, 12, 13, 14]


def test_duplicates_and_late_packets_are_dropped() -> None:
    buffer = JitterBuffer()
    assert seqs(buffer, 10, 12, 12, 9, 11, 11) == [10, 11, 12]
    assert (buffer.stats.duplicates, buffer.stats.late) == (1, 2)  # 9 and the second 11


def test_a_lost_packet_is_given_up_after_depth_packets() -> None:
    buffer = JitterBuffer(depth=3)
    assert seqs(buffer, 1, 3, 4, 5) == [1]
    assert seqs(buffer, 6) == [3, 4, 5, 6]
    assert buffer.stats.lost == 1
    assert seqs(buffer, 2) == []  # too late now


def test_sequence_wrap_around() -> None:
    assert seqs(JitterBuffer(), 65534, 0, 65535, 1) == [65534, 65535, 0, 1]


def test_flush_releases_what_is_held() -> None:
    buffer = JitterBuffer()
    assert seqs(buffer, 1, 3) == [1]
    assert [int(p) for p in buffer.flush()] == [3]


def test_a_sender_restart_is_not_late() -> None:
    assert seqs(JitterBuffer(), 30000, 30001, 100, 101) == [30000, 30001, 100, 101]


# ----- DAVE --------------------------------------------------------------------------------


def test_no_session_or_declined_dave_passes_through() -> None:
    assert DaveDecryptor().decrypt(1, b"frame") == b"frame"
    session = davey.DaveSession(davey.DAVE_PROTOCOL_VERSION, 1234, 5678)
    assert DaveDecryptor(session, protocol_version=0).decrypt(1, b"frame") == b"frame"


def test_a_session_that_is_not_ready_drops_frames_quietly() -> None:
    session = davey.DaveSession(davey.DAVE_PROTOCOL_VERSION, 1234, 5678)
    assert not session.ready
    dave = DaveDecryptor(session, davey.DAVE_PROTOCOL_VERSION)
    assert dave.decrypt(99, b"encrypted") is None
    assert dave.dropped["not_ready"] == 1


def test_silence_passes_even_before_the_session_is_ready() -> None:
    session = davey.DaveSession(davey.DAVE_PROTOCOL_VERSION, 1234, 5678)
    session.set_passthrough_mode(True, 10)
    dave = DaveDecryptor(session, davey.DAVE_PROTOCOL_VERSION)
    assert dave.decrypt(99, OPUS_SILENCE) == OPUS_SILENCE


class _ReadySession:
    """davey's API shape for a ready session (a real one needs the voice server's MLS side)."""

    ready = True

    def decrypt(self, user_id: int, media_type: object, frame: bytes) -> bytes:
        assert media_type == davey.MediaType.audio
        if user_id != 7:
            raise ValueError("Failed to decrypt: NoDecryptorForUser")
        return frame[::-1]


def test_a_ready_session_decrypts_and_missing_decryptors_are_counted() -> None:
    dave = DaveDecryptor(_ReadySession(), 1)
    assert dave.decrypt(7, b"abc") == b"cba"
    assert dave.decrypt(8, b"abc") is None
    assert dave.dropped["failed"] == 1


# ----- pipeline ----------------------------------------------------------------------------


class Sink:
    def __init__(self, unwanted: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.unwanted = unwanted
        self.frames: dict[int, int] = {}
        self.events: list[tuple[str, int]] = []

    def wants(self, user_id: int) -> bool:
        return user_id not in self.unwanted

    def on_audio(self, user_id: int, pcm: bytes) -> None:
        assert len(pcm) == FRAME_BYTES
        self.frames[user_id] = self.frames.get(user_id, 0) + 1

    def on_silence(self, user_id: int) -> None:
        self.events.append(("silence", user_id))

    def on_speaker_left(self, user_id: int) -> None:
        self.events.append(("left", user_id))


def tone_packets(ssrc: int, frames: int = 10, start: int = 0) -> list[bytes]:
    t = np.arange(frames * 960) / 48_000
    mono = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    opus = encode_opus(np.repeat(mono, 2).tobytes())
    return [
        packet(sequence=start + i, timestamp=960 * i, ssrc=ssrc, nonce=i, payload=p)
        for i, p in enumerate(opus)
    ]


def test_pipeline_decodes_mapped_speakers_and_holds_unknown_ssrcs_briefly() -> None:
    sink = Sink()
    pipeline = ReceivePipeline(sink)
    pipeline.set_key(KEY, MODE)
    early = tone_packets(ssrc=5)
    for raw in early[:3]:
        pipeline.feed(raw)  # before SPEAKING: held
    assert sink.frames == {}
    pipeline.speaking(42, 5, 1)
    for raw in early[3:]:
        pipeline.feed(raw)
    assert sink.frames[42] >= len(early) - 1
    pipeline.feed(packet(ssrc=5, payload=OPUS_SILENCE, sequence=len(early)))
    pipeline.speaking(42, 5, 0)
    assert sink.events == [("silence", 42)]
    pipeline.user_left(42)
    assert sink.events[-1] == ("left", 42)
    pipeline.feed(tone_packets(ssrc=5, start=100)[0])
    assert pipeline.stats["datagrams"] > 0


def test_pipeline_never_decodes_unwanted_users_and_survives_garbage() -> None:
    sink = Sink(unwanted={9})
    pipeline = ReceivePipeline(sink)
    pipeline.set_key(KEY, MODE)
    pipeline.speaking(9, 77, 1)
    tone = tone_packets(ssrc=77)
    for raw in [*tone, b"", os.urandom(80), bytes([0x80, 201]) + bytes(20)]:
        pipeline.feed(raw)
    assert sink.frames == {} and pipeline.decoded_by_user == {}
    assert pipeline.stats["unwanted"] == len(tone)
    assert pipeline.stats["undecryptable"] >= 1 and pipeline.stats["rtcp"] == 1


def test_unknown_ssrcs_are_dropped_after_a_second() -> None:
    now = [0.0]
    sink = Sink()
    pipeline = ReceivePipeline(sink, clock=lambda: now[0])
    pipeline.set_key(KEY, MODE)
    pipeline.feed(packet(ssrc=3))
    now[0] = 2.0
    pipeline.feed(packet(ssrc=4))
    pipeline.speaking(1, 3, 1)
    assert sink.frames == {} and pipeline.stats["unknown_ssrc"] == 1
