"""The seam between receiving voice and listening to it.

A receiver (bot.cogs._receiver.ListeningVoiceClient) calls these methods from its threads,
never from the event loop: audio from the socket-reader thread, and what the voice websocket
announces (a speaker went silent or left) from a control thread. So an implementation must be
thread-safe and quick (no I/O, no waiting): it may append to buffers under a lock and hand
finished work to the loop with `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

from typing import Protocol

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
FRAME_BYTES = FRAME_SAMPLES * 2  # s16le mono: 1920 bytes


class AudioSink(Protocol):
    def wants(self, user_id: int) -> bool:
        """Whether this speaker's audio may be decoded at all.

        Asked before DAVE decryption and Opus decoding: False (an opted-out user, another bot,
        listening off) means the packet is dropped undecoded.
        """
        ...

    def on_audio(self, user_id: int, pcm: bytes) -> None:
        """One 20 ms frame of a speaker: 48 kHz mono s16le, `FRAME_BYTES` long, in RTP order.

        Gaps (lost packets, silence the sender did not send) are not filled with zeros; the
        sink learns of silence from `on_silence` or from time passing.
        """
        ...

    def on_silence(self, user_id: int) -> None:
        """The speaker sent Opus silence frames or stopped speaking (SPEAKING 0)."""
        ...

    def on_speaker_left(self, user_id: int) -> None:
        """The speaker left the channel (voice op 13) or their stream ended; flush and forget."""
        ...
