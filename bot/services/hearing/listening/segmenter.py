"""Per-speaker utterances from a stream of 20 ms frames, by voice activity detection.

Each speaker has a webrtcvad detector (48 kHz, 20 ms frames, no resampling). An utterance
starts when `onset_frames` of the last `onset_frames + 1` frames are voiced (100 ms at the
default 5; fewer let the detector's first guesses on plain noise through): `on_onset` fires
at once with the utterance's sequence number, so a listener can stop the bot's speech
(barge-in) and reserve the utterance's place in the order of captions. A short pre-roll of
frames before the onset is kept, so the first syllable is not cut off.

An utterance ends after `end_ms` of unvoiced frames, when the speaker goes silent or leaves,
or when no frame has arrived for `end_ms` (`tick`, called periodically, notices a speaker who
simply stopped sending). Past `max_ms` it is cut at its last pause (else its quietest frame)
and the rest continues as a new utterance, so no piece is longer than `max_ms`. An utterance
with less than `min_voice_ms` of voiced frames is dropped (a cough, a click).

`on_end(seq, utterance)` reports every utterance that had an onset: with the audio, or with
None when it was dropped. Callbacks run outside the lock, on whichever thread called in.
Thread-safe; no I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import webrtcvad

from bot.services.hearing.listening.sink import FRAME_BYTES, FRAME_MS, SAMPLE_RATE

log = logging.getLogger(__name__)

PRE_ROLL_FRAMES = 10  # 200 ms kept before the onset
TAIL_FRAMES = 10  # 200 ms of trailing unvoiced audio kept after the last voiced frame
QUIET_SEARCH_FRAMES = 500  # no pause: cut at the quietest frame of the last 10 s
MIN_PAUSE_FRAMES = 5  # a run of 100 ms unvoiced counts as a pause to cut a long utterance at


@dataclass(frozen=True)
class Utterance:
    seq: int
    user_id: int
    pcm: bytes  # 48 kHz mono s16le
    started_at: float  # clock time of the onset

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (SAMPLE_RATE * 2)


OnsetCallback = Callable[[int, int], None]  # (seq, user_id)
EndCallback = Callable[[int, Utterance | None], None]  # (seq, utterance or None if dropped)


@dataclass
class _Open:
    seq: int
    started_at: float
    frames: list[bytes] = field(default_factory=list)
    voiced: list[bool] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    trailing_unvoiced: int = 0


@dataclass
class _Speaker:
    vad: webrtcvad.Vad
    recent: deque[tuple[bytes, bool, float]]  # pre-roll: (frame, voiced, energy)
    last_frame_at: float = 0.0
    open: _Open | None = None


class Segmenter:
    def __init__(
        self,
        on_onset: OnsetCallback,
        on_end: EndCallback,
        *,
        aggressiveness: int = 2,
        onset_frames: int = 5,
        end_ms: int = 700,
        max_ms: int = 30_000,
        min_voice_ms: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ValueError("aggressiveness is 0..3")
        self._on_onset = on_onset
        self._on_end = on_end
        self._aggressiveness = aggressiveness
        self.onset_frames = max(1, onset_frames)
        self._end_frames = max(1, end_ms // FRAME_MS)
        self._end_seconds = end_ms / 1000
        self._max_frames = max(self._end_frames, max_ms // FRAME_MS)
        self._min_voiced = max(1, min_voice_ms // FRAME_MS)
        self._clock = clock
        self._lock = threading.Lock()
        self._speakers: dict[int, _Speaker] = {}
        self._next_seq = 0

    # ----- input ----------------------------------------------------------------------------

    def push(self, user_id: int, pcm: bytes) -> None:
        """One 20 ms frame of `user_id` (FRAME_BYTES of 48 kHz mono s16le)."""
        if len(pcm) != FRAME_BYTES:
            log.debug("dropping a frame of %d bytes from %s", len(pcm), user_id)
            return
        events: list[Callable[[], None]] = []
        with self._lock:
            now = self._clock()
            speaker = self._speakers.get(user_id)
            if speaker is None:
                speaker = self._speakers[user_id] = self._new_speaker()
            elif now - speaker.last_frame_at >= self._end_seconds:
                self._close(user_id, speaker, events)  # a gap as long as a pause ends it
                speaker.recent.clear()
            speaker.last_frame_at = now
            self._frame(user_id, speaker, pcm, now, events)
        _run(events)

    def silence(self, user_id: int) -> None:
        """The speaker went silent: end their utterance now."""
        events: list[Callable[[], None]] = []
        with self._lock:
            speaker = self._speakers.get(user_id)
            if speaker is not None:
                self._close(user_id, speaker, events)
                speaker.recent.clear()
        _run(events)

    def leave(self, user_id: int) -> None:
        """The speaker left: end their utterance and forget them."""
        events: list[Callable[[], None]] = []
        with self._lock:
            speaker = self._speakers.pop(user_id, None)
            if speaker is not None:
                self._close(user_id, speaker, events)
        _run(events)

    def discard(self, user_id: int) -> None:
        """Forget the speaker's audio without reporting it as speech (they opted out)."""
        events: list[Callable[[], None]] = []
        with self._lock:
            speaker = self._speakers.pop(user_id, None)
            if speaker is not None and speaker.open is not None:
                seq = speaker.open.seq
                events.append(lambda: self._on_end(seq, None))
        _run(events)

    def tick(self) -> None:
        """End the utterances of speakers who sent nothing for a pause's length."""
        events: list[Callable[[], None]] = []
        with self._lock:
            now = self._clock()
            for user_id, speaker in list(self._speakers.items()):
                if now - speaker.last_frame_at >= self._end_seconds:
                    self._close(user_id, speaker, events)
                    speaker.recent.clear()
        _run(events)

    def flush(self) -> None:
        """End every open utterance (listening stops)."""
        events: list[Callable[[], None]] = []
        with self._lock:
            for user_id, speaker in self._speakers.items():
                self._close(user_id, speaker, events)
            self._speakers.clear()
        _run(events)

    def speaking(self) -> set[int]:
        """Speakers with an utterance in progress."""
        with self._lock:
            return {u for u, s in self._speakers.items() if s.open is not None}

    # ----- inside the lock ------------------------------------------------------------------

    def _new_speaker(self) -> _Speaker:
        return _Speaker(webrtcvad.Vad(self._aggressiveness), deque(maxlen=PRE_ROLL_FRAMES))

    def _frame(
        self,
        user_id: int,
        speaker: _Speaker,
        pcm: bytes,
        now: float,
        events: list[Callable[[], None]],
    ) -> None:
        voiced = speaker.vad.is_speech(pcm, SAMPLE_RATE)
        energy = _energy(pcm)
        current = speaker.open
        if current is None:
            speaker.recent.append((pcm, voiced, energy))
            if self._has_onset(speaker.recent):
                self._start(user_id, speaker, now, events)
            return
        current.frames.append(pcm)
        current.voiced.append(voiced)
        current.energy.append(energy)
        current.trailing_unvoiced = 0 if voiced else current.trailing_unvoiced + 1
        if current.trailing_unvoiced >= self._end_frames:
            self._close(user_id, speaker, events)
        elif len(current.frames) >= self._max_frames:
            self._cut_long(user_id, speaker, now, events)

    def _has_onset(self, recent: deque[tuple[bytes, bool, float]]) -> bool:
        window = list(recent)[-(self.onset_frames + 1) :]
        return sum(voiced for _pcm, voiced, _e in window) >= self.onset_frames

    def _start(
        self, user_id: int, speaker: _Speaker, now: float, events: list[Callable[[], None]]
    ) -> None:
        seq = self._next_seq
        self._next_seq += 1
        opened = _Open(seq, now)
        for pcm, voiced, energy in speaker.recent:
            opened.frames.append(pcm)
            opened.voiced.append(voiced)
            opened.energy.append(energy)
        speaker.recent.clear()
        speaker.open = opened
        events.append(lambda: self._on_onset(seq, user_id))

    def _close(self, user_id: int, speaker: _Speaker, events: list[Callable[[], None]]) -> None:
        current = speaker.open
        if current is None:
            return
        speaker.open = None
        keep = len(current.frames) - max(0, current.trailing_unvoiced - TAIL_FRAMES)
        self._report(user_id, current, keep, events)

    def _report(
        self, user_id: int, current: _Open, keep: int, events: list[Callable[[], None]]
    ) -> None:
        seq = current.seq
        if sum(current.voiced[:keep]) < self._min_voiced:
            events.append(lambda: self._on_end(seq, None))
            return
        utterance = Utterance(seq, user_id, b"".join(current.frames[:keep]), current.started_at)
        events.append(lambda: self._on_end(seq, utterance))

    def _cut_long(
        self, user_id: int, speaker: _Speaker, now: float, events: list[Callable[[], None]]
    ) -> None:
        """Report the utterance up to its last pause; the rest goes on as a new one."""
        current = speaker.open
        assert current is not None
        cut = _cut_point(current.voiced, current.energy)
        rest = _Open(-1, now, current.frames[cut:], current.voiced[cut:], current.energy[cut:])
        self._report(user_id, current, cut, events)
        seq = self._next_seq
        self._next_seq += 1
        rest.seq = seq
        trailing = 0
        for voiced in reversed(rest.voiced):
            if voiced:
                break
            trailing += 1
        rest.trailing_unvoiced = trailing
        speaker.open = rest
        events.append(lambda: self._on_onset(seq, user_id))


def _run(events: list[Callable[[], None]]) -> None:
    for event in events:
        try:
            event()
        except Exception:  # a listener's bug must not kill the receiver's thread
            log.exception("segmenter callback failed")


def _energy(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    return float(np.dot(samples, samples) / len(samples))


def _cut_point(voiced: list[bool], energy: list[float]) -> int:
    """Where to cut an over-long utterance: the middle of its last pause in the second half,
    else its quietest frame of the last 10 s (the latest of equals).
    Always leaves both sides non-empty."""
    total = len(voiced)
    half = total // 2
    run_end = None
    run = 0
    for index in range(total - 1, half - 1, -1):
        if not voiced[index]:
            run += 1
            if run >= MIN_PAUSE_FRAMES and run_end is None:
                run_end = index + run
        elif run_end is not None:
            return (index + 1 + run_end) // 2
        else:
            run = 0
    if run_end is not None:
        return max(1, (half + run_end) // 2)
    recent = energy[-QUIET_SEARCH_FRAMES:]
    latest_quietest = len(recent) - 1 - int(np.argmin(recent[::-1]))
    return min(max(1, total - len(recent) + latest_quietest), total - 1)
