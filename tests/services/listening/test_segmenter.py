"""The segmenter cuts each speaker's frames into utterances, with onsets for barge-in."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bot.services.hearing.listening.segmenter import Segmenter, Utterance
from bot.services.hearing.listening.sink import FRAME_BYTES
from tests.services.listening.audio import Clock, espeak, frames, noise, seconds, silence, tone


@dataclass
class Recorder:
    onsets: list[tuple[int, int]] = field(default_factory=list)
    ends: list[tuple[int, Utterance | None]] = field(default_factory=list)

    def onset(self, seq: int, user_id: int) -> None:
        self.onsets.append((seq, user_id))

    def end(self, seq: int, utterance: Utterance | None) -> None:
        self.ends.append((seq, utterance))

    @property
    def utterances(self) -> list[Utterance]:
        return [u for _seq, u in self.ends if u is not None]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def heard() -> Recorder:
    return Recorder()


@pytest.fixture
def segmenter(clock: Clock, heard: Recorder) -> Segmenter:
    return Segmenter(heard.onset, heard.end, clock=clock)


def feed(segmenter: Segmenter, clock: Clock, user_id: int, pcm: bytes) -> None:
    """Frames at their real pace (the clock advances 20 ms a frame)."""
    for frame in frames(pcm):
        clock.now += 0.02
        segmenter.push(user_id, frame)


SENTENCE = "hello there, how are you today"


def test_silence_then_speech_is_one_utterance_with_the_speech(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    speech = espeak(SENTENCE)
    feed(segmenter, clock, 7, silence(2000) + speech + silence(1000))
    assert heard.onsets == [(0, 7)]
    [(seq, utterance)] = heard.ends
    assert seq == 0 and utterance is not None and utterance.user_id == 7
    # the speech, a little pre-roll and a short tail: not the 2 s of silence before it
    assert seconds(speech) - 0.2 <= utterance.seconds <= seconds(speech) + 0.5


def test_silence_alone_and_quiet_noise_make_no_utterance(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    feed(segmenter, clock, 1, silence(3000))
    feed(segmenter, clock, 2, silence(200) + noise(3000, level=0.003))
    segmenter.flush()
    assert heard.onsets == [] and heard.ends == []


def test_a_click_shorter_than_the_minimum_is_dropped_but_reported(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    feed(segmenter, clock, 1, tone(140) + silence(1000))  # with the VAD hangover: 260 ms
    assert heard.onsets == [(0, 1)]
    assert heard.ends == [(0, None)]  # the listener learns the seq will bring nothing


def test_onset_comes_after_five_voiced_frames(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    buzz = frames(tone(400))
    feed(segmenter, clock, 1, silence(300))
    count = 0
    for frame in buzz:
        count += 1
        segmenter.push(1, frame)
        if heard.onsets:
            break
    assert count == 5  # 100 ms of voice: well within the 300 ms barge-in budget
    assert segmenter.speaking() == {1}


def test_end_of_utterance_after_a_pause_not_within_a_word_gap(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    feed(segmenter, clock, 1, tone(600) + silence(300) + tone(600) + silence(500))
    assert heard.ends == []  # gaps of 300 and 500 ms are inside one utterance
    feed(segmenter, clock, 1, silence(500))
    [(_seq, utterance)] = heard.ends
    assert utterance is not None and 1.5 <= utterance.seconds <= 2.0


def test_two_speakers_interleaved_are_attributed_to_each(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    a = frames(espeak("the quick brown fox jumps over the lazy dog") + silence(1000))
    b = frames(silence(500) + espeak("a completely different sentence", "en-gb") + silence(1000))
    for index in range(max(len(a), len(b))):
        clock.now += 0.02
        if index < len(a):
            segmenter.push(10, a[index])
        if index < len(b):
            segmenter.push(20, b[index])
    assert [user for _seq, user in heard.onsets] == [10, 20]
    by_user = {u.user_id: u for u in heard.utterances}
    assert set(by_user) == {10, 20}
    assert by_user[10].pcm in b"".join(a)  # A's utterance holds only A's audio
    assert by_user[20].pcm in b"".join(b)


def test_a_long_monologue_is_cut_at_pauses_into_pieces_of_at_most_30_s(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    # 45 s of talk whose pauses (250 ms) are all shorter than an end of utterance
    sentence = espeak("we keep talking about many things without stopping for long")
    talk = b""
    while seconds(talk) < 45:
        talk += sentence + silence(250)
    feed(segmenter, clock, 3, talk + silence(1000))
    pieces = heard.utterances
    assert len(pieces) == 2
    assert all(piece.seconds <= 30.0 for piece in pieces)
    assert [seq for seq, _u in heard.onsets] == [0, 1]
    # nothing lost: the pieces add up to the talk (minus the trimmed tail of silence)
    assert sum(p.seconds for p in pieces) == pytest.approx(seconds(talk), abs=0.6)
    # cut in a pause: the first piece ends in near-silence
    tail = pieces[0].pcm[-FRAME_BYTES:]
    assert max(abs(int.from_bytes(tail[i : i + 2], "little", signed=True)) for i in (0, 960)) < 500


def test_without_any_pause_a_long_utterance_is_still_cut_at_30_s(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    feed(segmenter, clock, 3, tone(40_000) + silence(1000))
    assert [round(u.seconds) for u in heard.utterances] == [30, 10]


def test_a_speaker_who_stops_sending_is_finished_by_the_tick(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    feed(segmenter, clock, 1, tone(800))  # no silence frames: the sender just stops
    segmenter.tick()
    assert heard.ends == []
    clock.now += 0.8
    segmenter.tick()
    assert len(heard.utterances) == 1


def test_silence_and_leaving_end_the_utterance_at_once(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    feed(segmenter, clock, 1, tone(800))
    segmenter.silence(1)
    feed(segmenter, clock, 2, tone(800))
    segmenter.leave(2)
    assert [u.user_id for u in heard.utterances] == [1, 2]
    assert segmenter.speaking() == set()


def test_discard_drops_what_the_speaker_was_saying(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    feed(segmenter, clock, 1, tone(800))
    segmenter.discard(1)
    assert heard.ends == [(0, None)]


def test_frames_of_the_wrong_size_are_ignored(
    segmenter: Segmenter, clock: Clock, heard: Recorder
) -> None:
    for _ in range(50):
        segmenter.push(1, b"\1" * 100)
    segmenter.flush()
    assert heard.onsets == [] and heard.ends == []


def test_a_failing_callback_does_not_break_the_segmenter(clock: Clock) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("listener bug")

    segmenter = Segmenter(broken, broken, clock=clock)
    feed(segmenter, clock, 1, tone(800) + silence(1000))  # raises nothing
    assert segmenter.speaking() == set()
