"""The listening service: consent, captions in the order spoken, requests, barge-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.services.hearing.listening import settings as keys
from bot.services.hearing.listening.service import (
    Callbacks,
    ListeningService,
    ListeningSession,
    clean_transcript,
    downsample,
)
from bot.services.speech.errors import NO_SPEECH_MESSAGE, NoSpeechError
from bot.services.speech.service import SpeechService
from bot.services.speech.transcriber import Transcriber
from bot.services.speech.whisper import WhisperEngine
from bot.services.storage import Storage
from bot.services.tasks.jobs import JobRunner
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.work import WorkServices
from tests.services.listening.audio import Clock, espeak, frames, silence, tone

GUILD = 100
ALICE, BOB, CAROL, ROBOT = 1, 2, 3, 99


@dataclass
class Said:
    text: str


class FakeSpeech:
    """Answers by the utterance's length: `long_text` past 2 s (after `gate` opens), else
    `short_text`; records what it was asked."""

    def __init__(self, short_text: str = "short one", long_text: str = "long one") -> None:
        self.short_text, self.long_text = short_text, long_text
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[tuple[float, int, str]] = []
        self.namespaces: list[str | None] = []

    async def recognize(
        self, segment: Any, language: str = "en-US", *, namespace: str | None = None
    ) -> Said:
        self.calls.append((segment.duration_seconds, segment.frame_rate, language))
        self.namespaces.append(namespace)
        if segment.duration_seconds > 2:
            await self.gate.wait()
            text = self.long_text
        else:
            text = self.short_text
        if not text:
            raise NoSpeechError(NO_SPEECH_MESSAGE)
        return Said(text)


class Heard:
    def __init__(self) -> None:
        self.captions: list[tuple[int, int, str]] = []
        self.requests: list[tuple[int, int, str]] = []
        self.barge_ins: list[tuple[int, int]] = []

    async def caption(self, guild_id: int, user_id: int, text: str) -> None:
        self.captions.append((guild_id, user_id, text))

    async def request(self, guild_id: int, user_id: int, text: str) -> None:
        self.requests.append((guild_id, user_id, text))

    async def barge_in(self, guild_id: int, user_id: int) -> None:
        self.barge_ins.append((guild_id, user_id))

    def callbacks(self) -> Callbacks:
        return Callbacks(self.caption, self.request, self.barge_in)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with Storage(tmp_path / "bot.db") as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def speech() -> FakeSpeech:
    return FakeSpeech()


@pytest.fixture
async def service(
    speech: FakeSpeech, storage: Storage, clock: Clock
) -> AsyncIterator[ListeningService]:
    listening = ListeningService(speech, storage, clock=clock)
    await listening.load_consent()
    yield listening
    await listening.close()


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
async def session(service: ListeningService, heard: Heard) -> ListeningSession:
    started = service.start(GUILD, heard.callbacks())
    started.set_members(humans={ALICE, BOB, CAROL, ROBOT}, bots={ROBOT})
    return started


def speak(session: ListeningSession, clock: Clock, voices: dict[int, bytes]) -> None:
    """Frames of several speakers at once, 20 ms apart, as the receiver would call."""
    streams = {user: frames(pcm) for user, pcm in voices.items()}
    for index in range(max(len(s) for s in streams.values())):
        clock.now += 0.02
        for user, stream in streams.items():
            if index < len(stream) and session.wants(user):
                session.on_audio(user, stream[index])


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds (the session works in tasks)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


# ----- consent and who is heard ---------------------------------------------------------------


async def test_an_opted_out_users_frames_never_reach_the_segmenter(
    service: ListeningService, session: ListeningSession, clock: Clock, heard: Heard
) -> None:
    pushed: list[int] = []
    real_push = session.segmenter.push
    session.segmenter.push = lambda user, pcm: (pushed.append(user), real_push(user, pcm))  # type: ignore[method-assign]
    await service.opt_out(ALICE)
    assert not session.wants(ALICE)
    for frame in frames(tone(1000)):
        session.on_audio(ALICE, frame)  # even if a receiver ignored `wants`
    assert pushed == []
    speak(session, clock, {BOB: tone(1000) + silence(1000)})
    await until(lambda: len(heard.captions) == 1)
    assert heard.captions == [(GUILD, BOB, "short one")]
    assert set(pushed) == {BOB}


async def test_bots_and_people_outside_the_channel_are_not_heard(
    session: ListeningSession,
) -> None:
    assert session.wants(ALICE)
    assert not session.wants(ROBOT)
    assert not session.wants(12345)  # not in the channel
    session.set_members(humans={BOB})
    assert not session.wants(ALICE)


async def test_opting_out_mid_sentence_drops_what_was_being_said(
    service: ListeningService, session: ListeningSession, clock: Clock, heard: Heard
) -> None:
    speak(session, clock, {ALICE: tone(1000)})
    await service.opt_out(ALICE)
    speak(session, clock, {BOB: tone(1000) + silence(1000)})
    await until(lambda: len(heard.captions) == 1)
    assert [user for _g, user, _t in heard.captions] == [BOB]


async def test_consent_is_stored_for_every_server_and_forgotten_on_request(
    service: ListeningService, storage: Storage, speech: FakeSpeech
) -> None:
    await service.opt_out(ALICE)
    await service.opt_out(BOB)
    await service.opt_in(BOB)
    restarted = ListeningService(speech, storage)
    await restarted.load_consent()
    assert restarted.is_opted_out(ALICE) and not restarted.is_opted_out(BOB)
    assert await restarted.forget(ALICE) is True
    assert not restarted.is_opted_out(ALICE)
    assert await restarted.forget(ALICE) is False
    assert await storage.users_with_setting(keys.OPT_OUT.key) == {}


async def test_stopped_sessions_hear_no_one(service: ListeningService, session: Any) -> None:
    assert await service.stop(GUILD) is True
    assert not session.wants(ALICE)
    assert await service.stop(GUILD) is False


# ----- captions -------------------------------------------------------------------------------


async def test_captions_keep_the_order_spoken_when_recognition_ends_out_of_order(
    session: ListeningSession, clock: Clock, heard: Heard, speech: FakeSpeech
) -> None:
    speech.gate.clear()  # the long utterance's recognition waits
    speak(
        session,
        clock,
        {
            ALICE: tone(3000) + silence(1000),  # starts first, ends last
            BOB: silence(500) + tone(800) + silence(1000),
        },
    )
    await until(lambda: len(speech.calls) == 2)
    await asyncio.sleep(0.05)
    assert heard.captions == []  # Bob's caption waits for Alice's, which started first
    speech.gate.set()
    await until(lambda: len(heard.captions) == 2)
    assert heard.captions == [(GUILD, ALICE, "long one"), (GUILD, BOB, "short one")]


async def test_pending_counts_utterances_until_their_captions_are_posted(
    service: ListeningService,
    session: ListeningSession,
    clock: Clock,
    heard: Heard,
    speech: FakeSpeech,
) -> None:
    assert service.pending(GUILD) == 0
    speech.gate.clear()
    speak(session, clock, {ALICE: tone(3000) + silence(1000), BOB: tone(800) + silence(1000)})
    await until(lambda: len(speech.calls) == 2)
    assert service.pending(GUILD) == 2  # one transcribing, one waiting for its turn
    speech.gate.set()
    await until(lambda: len(heard.captions) == 2)
    await until(lambda: service.pending(GUILD) == 0)
    assert service.pending(GUILD + 1) == 0  # a server that is not listening


async def test_recognition_gets_16_khz_audio_in_the_servers_language_and_namespace(
    session: ListeningSession, storage: Storage, clock: Clock, heard: Heard, speech: FakeSpeech
) -> None:
    await storage.set_guild_setting(GUILD, "language", "de-DE")
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    await until(lambda: len(heard.captions) == 1)
    [(seconds, rate, language)] = speech.calls
    assert rate == 16_000 and language.language == "de-DE" and 1.0 <= seconds <= 1.5
    assert speech.namespaces == [str(GUILD)]  # with workers, its audio goes to this server's


@pytest.mark.parametrize("transcript", ["", "[BLANK_AUDIO]", "(music) ♪", " . . ", "you"])
async def test_empty_and_noise_transcripts_are_not_posted(
    session: ListeningSession, clock: Clock, heard: Heard, speech: FakeSpeech, transcript: str
) -> None:
    speech.short_text = transcript
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    await until(lambda: len(speech.calls) == 1)
    speech.short_text = "real words"
    speak(session, clock, {BOB: tone(1000) + silence(1000)})
    await until(lambda: len(heard.captions) == 1)
    assert heard.captions == [(GUILD, BOB, "real words")]


def test_clean_transcript_keeps_words_and_drops_annotations() -> None:
    assert clean_transcript(" [laughs] so  funny (applause)") == "so funny"
    assert clean_transcript("You were right") == "You were right"


def test_downsample_keeps_a_tone_and_the_length() -> None:
    pcm = tone(1000, hz=440)
    low = downsample(pcm)
    assert len(low) == len(pcm) // 3
    assert (
        max(abs(int.from_bytes(low[i : i + 2], "little", signed=True)) for i in range(0, 3200, 2))
        > 3000
    )


# ----- barge-in and requests ------------------------------------------------------------------


async def test_barge_in_is_called_at_the_fifth_voiced_frame(
    session: ListeningSession, clock: Clock, heard: Heard
) -> None:
    speak(session, clock, {ALICE: silence(300)})
    count = 0
    for frame in frames(tone(500)):
        count += 1
        clock.now += 0.02
        session.on_audio(ALICE, frame)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if heard.barge_ins:
            break
    assert count == 5  # 100 ms of speech
    assert heard.barge_ins == [(GUILD, ALICE)]


async def test_a_wake_word_makes_the_rest_a_request(
    session: ListeningSession, clock: Clock, heard: Heard, speech: FakeSpeech
) -> None:
    speech.short_text = "Hey Matt, what time is it?"
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    await until(lambda: len(heard.requests) == 1)
    assert heard.captions == [(GUILD, ALICE, "Hey Matt, what time is it?")]
    assert heard.requests == [(GUILD, ALICE, "what time is it?")]


async def test_without_a_wake_word_only_conversation_mode_answers(
    service: ListeningService,
    session: ListeningSession,
    clock: Clock,
    heard: Heard,
    speech: FakeSpeech,
) -> None:
    speech.short_text = "hey everyone"
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    await until(lambda: len(heard.captions) == 1)
    assert heard.requests == []
    await service.set(GUILD, keys.CONVERSATION, True)
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    await until(lambda: len(heard.requests) == 1)
    assert heard.requests == [(GUILD, ALICE, "hey everyone")]


async def test_the_wake_word_alone_makes_the_next_utterance_a_request(
    session: ListeningSession, clock: Clock, heard: Heard, speech: FakeSpeech
) -> None:
    speech.short_text = "Hey bot."
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    await until(lambda: len(heard.captions) == 1)
    speech.short_text = "tell me a joke"
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    await until(lambda: len(heard.requests) == 1)
    assert heard.requests == [(GUILD, ALICE, "tell me a joke")]
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})  # once only
    await until(lambda: len(heard.captions) == 3)
    assert len(heard.requests) == 1


async def test_server_wake_words_and_the_bots_name_wake_it(
    service: ListeningService,
    session: ListeningSession,
    clock: Clock,
    heard: Heard,
    speech: FakeSpeech,
) -> None:
    service.bot_names = ("VoiceChatBot",)
    await service.set(GUILD, keys.WAKE_WORDS, ["ok computer"])
    speech.short_text = "OK computer, lights on"
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    speech_done = len(heard.captions) + 1
    await until(lambda: len(heard.captions) == speech_done)
    speech.short_text = "Voice chat bot, lights off"
    speak(session, clock, {ALICE: tone(1000) + silence(1000)})
    await until(lambda: len(heard.requests) == 2)
    assert [text for _g, _u, text in heard.requests] == ["lights on", "lights off"]


# ----- the real recogniser --------------------------------------------------------------------


async def test_whisper_hears_an_espeak_request_through_the_whole_path(
    storage: Storage, clock: Clock, heard: Heard, whisper_engine: WhisperEngine
) -> None:
    # As the bot hears it: a `transcribe` task on its in-process runner.
    engines = SpeechService([whisper_engine])
    speech = Transcriber(LocalRunner(WorkServices(engines, JobRunner())))
    service = ListeningService(speech, storage, clock=clock)
    try:
        session = service.start(GUILD, heard.callbacks())
        session.set_members(humans={ALICE})
        said = espeak("hey bot, what is the weather like today")
        speak(session, clock, {ALICE: silence(500) + said + silence(1000)})
        await until(lambda: len(heard.captions) == 1)
        [(_g, user, caption)] = heard.captions
        assert user == ALICE and "weather" in caption.lower()
        [(_g, _u, request)] = heard.requests  # "hey bot" heard as whatever: still a wake word
        assert "weather" in request.lower() and not request.lower().startswith("hey")
    finally:
        await service.close()
        await engines.close()
