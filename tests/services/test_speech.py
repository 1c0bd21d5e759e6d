"""The speech service: real engines on the fixtures, fallback, chunking and every bad input."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.errors import EngineUnavailableError, InvalidInputError, TooLargeError, UserFacingError
from bot.services.speech import audio, recognizers
from bot.services.speech.errors import (
    UNAVAILABLE_MESSAGE,
    LanguageNotServedError,
    NoSpeechError,
    PartialTranscriptError,
    SpeechUnavailableError,
)
from bot.services.speech.recognizers import SphinxEngine
from bot.services.speech.service import MB, SpeechService
from bot.services.speech.transcript import Progress
from bot.services.speech.whisper import WhisperEngine
from tests.fixtures import speech as samples


class FakeEngine:
    """Answers from a script: a string, or an exception to raise. Records what it was given."""

    holds_gil = False

    def __init__(self, name: str, *answers: str | Exception, default: str = "") -> None:
        self.name = name
        self._answers = list(answers)
        self._default = default
        self.calls: list[tuple[float, str]] = []  # (seconds of audio, language)

    def transcribe(self, wav: bytes, language: str) -> str:
        self.calls.append((audio.from_wav(wav).duration_seconds, language))
        answer = self._answers.pop(0) if self._answers else self._default
        if isinstance(answer, Exception):
            raise answer
        return answer.format(n=len(self.calls))


def down(name: str = "down") -> FakeEngine:
    return FakeEngine(name, *[EngineUnavailableError("not reachable")] * 50)


def words(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalpha() or c.isspace())


async def test_whisper_engine_transcribes_the_fixture(whisper_engine: WhisperEngine, hello_wav):
    text = whisper_engine.transcribe(hello_wav, "en-US").text
    assert "hello" in words(text) and "world" in words(text)


@pytest.mark.parametrize("name", ["hello.ogg", "hello.mp3"])
async def test_service_transcribes_voice_message_and_mp3(whisper_engine, name):
    service = SpeechService([whisper_engine])
    transcript = await service.transcribe(samples.fixture(name), name, "en-US")
    assert "hello" in words(transcript.text) and "world" in words(transcript.text)
    assert transcript.engine == "whisper" and transcript.first_choice
    assert transcript.chunks == 1
    assert transcript.duration_seconds == pytest.approx(samples.hello().duration_seconds, abs=0.1)


def test_sphinx_serves_english_only() -> None:
    engine = SphinxEngine()
    assert engine.supports("en-US") and engine.supports("en-GB")
    assert not engine.supports("fr-FR") and not engine.supports("auto")


async def test_a_language_no_engine_serves_is_refused_not_heard_as_english(hello_wav) -> None:
    service = SpeechService(["sphinx"])
    try:
        with pytest.raises(LanguageNotServedError) as refused:
            await service.transcribe(hello_wav, "hello.wav", "fr-FR")
    finally:
        await service.close()
    assert refused.value.message == (
        "I can't recognize speech in French with the engines installed here. "
        "An admin can choose another language with `!language`."
    )


async def test_sphinx_runs_in_a_worker_process(monkeypatch) -> None:
    def not_here(wav: bytes, language: str) -> str:
        raise AssertionError("pocketsphinx ran inside the bot's process")

    # The service must hand sphinx to its process pool; the worker imports the real function.
    monkeypatch.setattr(recognizers, "sphinx_recognize", not_here)
    service = SpeechService(["sphinx"])
    try:
        transcript = await service.transcribe(samples.fixture("hello.ogg"), "hello.ogg", "en-US")
    finally:
        await service.close()
    assert transcript.engine == "sphinx"
    assert isinstance(transcript.text, str)


async def test_falls_back_when_an_engine_is_unavailable(whisper_engine) -> None:
    first = down("google")
    service = SpeechService([first, whisper_engine])
    transcript = await service.transcribe(samples.fixture("hello.ogg"), "hello.ogg", "en-US")
    assert transcript.engine == "whisper"
    assert transcript.first_choice is False
    assert "hello" in words(transcript.text) and "world" in words(transcript.text)
    assert len(first.calls) == 1


async def test_an_unavailable_engine_is_rested() -> None:
    first, second = down("google"), FakeEngine("whisper", default="hello")
    service = SpeechService([first, second], rest_seconds=60)
    for _ in range(3):
        transcript = await service.transcribe(samples.fixture("hello.wav"), "hello.wav", "en-US")
        assert (transcript.engine, transcript.first_choice) == ("whisper", False)
    assert (len(first.calls), len(second.calls)) == (1, 3)


async def test_first_engine_answering_is_first_choice() -> None:
    service = SpeechService([FakeEngine("a", default="hi there"), FakeEngine("b")])
    transcript = await service.transcribe(samples.fixture("hello.wav"), "hello.wav", "en-US")
    assert (transcript.text, transcript.engine, transcript.first_choice) == ("hi there", "a", True)


async def test_language_reaches_the_engine() -> None:
    engine = FakeEngine("a", default="bonjour")
    await SpeechService([engine]).transcribe(samples.fixture("hello.wav"), "hello.wav", "fr-FR")
    assert engine.calls[0][1] == "fr-FR"


async def test_all_engines_down_is_one_clear_error() -> None:
    service = SpeechService([down("a"), down("b")])
    with pytest.raises(SpeechUnavailableError) as caught:
        await service.transcribe(samples.fixture("hello.ogg"), "hello.ogg", "en-US")
    assert caught.value.message == UNAVAILABLE_MESSAGE
    assert "unavailable" in caught.value.message and "try again later" in caught.value.message


async def test_long_audio_is_chunked_and_joined_in_order() -> None:
    clip, _ = samples.sentences_for(180)
    three_minutes = samples.encode(clip, ".ogg", "-c:a", "libopus", "-compression_level", "0")
    engine = FakeEngine("a", default="part{n}")
    service = SpeechService([engine], chunk_seconds=50)
    transcript = await service.transcribe(three_minutes, "long.ogg", "en-US")
    count = len(engine.calls)
    assert count >= 4 and transcript.chunks == count
    assert all(seconds <= 50.0 for seconds, _ in engine.calls)
    assert sum(seconds for seconds, _ in engine.calls) == pytest.approx(len(clip) / 1000, abs=0.1)
    assert transcript.text == " ".join(f"part{n}" for n in range(1, count + 1))
    assert transcript.duration_seconds == pytest.approx(len(clip) / 1000, abs=0.1)
    assert transcript.duration_seconds > 170


async def test_progress_is_reported_after_each_chunk_with_the_text_so_far() -> None:
    clip, _ = samples.sentences_for(180)
    engine = FakeEngine("a", default="part{n}")
    service = SpeechService([engine], chunk_seconds=50)
    seen: list[Progress] = []

    async def note(progress: Progress) -> None:
        seen.append(progress)

    transcript = await service.recognize(clip, "en-US", on_progress=note)
    assert len(seen) == transcript.chunks >= 4
    assert [p.text for p in seen] == [
        " ".join(f"part{n}" for n in range(1, k + 1)) for k in range(1, len(seen) + 1)
    ]
    assert all(a.done_seconds < b.done_seconds for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1].done_seconds == pytest.approx(seen[-1].total_seconds)
    assert seen[-1].text == transcript.text


async def test_a_failure_partway_keeps_the_text_and_says_where_it_stopped() -> None:
    clip, _ = samples.sentences_for(180)
    down_later = EngineUnavailableError("gone")
    # The first piece is short (up to 10 s): the third ends past a minute.
    engine = FakeEngine("a", "first part", "second part", "third part", *[down_later] * 20)
    service = SpeechService([engine], chunk_seconds=50)
    with pytest.raises(PartialTranscriptError) as caught:
        await service.recognize(clip, "en-US")
    error = caught.value
    assert error.text == "first part second part third part"
    assert 60 < error.stopped_at < error.total and error.total > 170
    assert error.message.startswith("Speech recognition stopped at 1:")
    assert " of 3:" in error.message and "kept" in error.message
    # With nothing transcribed yet, it is the plain "unavailable" error.
    with pytest.raises(SpeechUnavailableError) as plain:
        await SpeechService([FakeEngine("b", *[down_later] * 20)]).recognize(clip, "en-US")
    assert not isinstance(plain.value, PartialTranscriptError)


async def test_chunks_stay_with_the_engine_that_answered() -> None:
    # "a" fails once and is ready again at once (no rest); later chunks still go to "b".
    flaky = FakeEngine("a", EngineUnavailableError("blip"), default="from a")
    steady = FakeEngine("b", default="from b")
    service = SpeechService([flaky, steady], rest_seconds=0)
    wav = audio.to_wav(samples.sentences_for(120)[0])
    transcript = await service.transcribe(wav, "long.wav", "en-US")
    assert transcript.chunks >= 3
    assert len(flaky.calls) == 1 and len(steady.calls) == transcript.chunks
    assert (transcript.engine, transcript.first_choice) == ("b", False)


async def test_silence_is_reported_without_asking_an_engine() -> None:
    engine = FakeEngine("a", default="thank you")
    silence = audio.AudioSegment.silent(duration=5000, frame_rate=16000)
    with pytest.raises(NoSpeechError) as caught:
        await SpeechService([engine]).transcribe(audio.to_wav(silence), "quiet.wav", "en-US")
    assert caught.value.message == "I couldn't hear any words in that audio."
    assert engine.calls == []


async def test_unintelligible_audio_is_reported() -> None:
    service = SpeechService([FakeEngine("a", default="")])
    with pytest.raises(NoSpeechError, match="couldn't hear any words"):
        await service.transcribe(samples.fixture("hello.ogg"), "hello.ogg", "en-US")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "That file is empty."),
        (b"just some notes, not a recording\n" * 10, "That file is not audio I can read."),
    ],
    ids=["zero-bytes", "text-file"],
)
async def test_bad_files_are_user_errors(data: bytes, message: str) -> None:
    engine = FakeEngine("a", default="never")
    with pytest.raises(InvalidInputError) as caught:
        await SpeechService([engine]).transcribe(data, "upload.ogg", "en-US")
    assert caught.value.message == message
    assert engine.calls == []


async def test_corrupt_audio_is_a_user_error() -> None:
    with pytest.raises(InvalidInputError, match="damaged"):
        await SpeechService([FakeEngine("a")]).transcribe(
            samples.fixture("hello.ogg")[:300], "voice-message.ogg", "en-US"
        )


def test_size_is_checked_before_download() -> None:
    service = SpeechService([FakeEngine("a")], max_bytes=25 * MB)
    service.check_size(25 * MB)
    with pytest.raises(TooLargeError) as caught:
        service.check_size(31 * MB)
    assert caught.value.message == "That file is too large (31.0 MB; the limit is 25 MB)."
    with pytest.raises(InvalidInputError, match="empty"):
        service.check_size(0)


async def test_downloaded_bytes_over_the_limit_are_refused() -> None:
    engine = FakeEngine("a")
    service = SpeechService([engine], max_bytes=1000)
    with pytest.raises(TooLargeError, match="too large"):
        await service.transcribe(samples.fixture("hello.wav"), "hello.wav", "en-US")
    assert engine.calls == []


async def test_too_long_audio_is_refused() -> None:
    engine = FakeEngine("a")
    service = SpeechService([engine], max_seconds=60)
    clip, _ = samples.sentences_for(70)
    clip += samples.silence(75 - len(clip) / 1000)
    with pytest.raises(TooLargeError) as caught:
        await service.transcribe(audio.to_wav(clip), "long.wav", "en-US")
    assert caught.value.message == "That audio is too long (1:15; the limit is 1:00)."
    assert engine.calls == []


def test_every_error_is_user_facing() -> None:
    for kind in (NoSpeechError, SpeechUnavailableError, InvalidInputError, TooLargeError):
        assert issubclass(kind, UserFacingError)


async def test_from_settings_builds_the_configured_chain() -> None:
    settings = load_settings(
        {"STT_ENGINES": "whisper,sphinx", "MAX_AUDIO_MB": "8", "MAX_AUDIO_SECONDS": "120"},
        env_file=None,
    )
    service = SpeechService.from_settings(settings)
    assert service.engines == ["whisper", "sphinx"]
    assert (service.max_bytes, service.max_seconds) == (8 * MB, 120)
    default = SpeechService.from_settings(load_settings({}, env_file=None))
    assert default.engines == ["google", "whisper", "sphinx"]
    await service.close()


def test_whisper_without_a_model_is_unavailable(hello_wav, tmp_path) -> None:
    engine = WhisperEngine(str(tmp_path / "no-such-model"))
    with pytest.raises(EngineUnavailableError):
        engine.transcribe(hello_wav, "en-US")


async def test_with_workers_the_bot_warms_no_speech_engine(tmp_path) -> None:
    """With TASK_BROKER_URL the workers recognize everything: the bot's runner is theirs,
    and warming it up loads no whisper here."""
    from bot.services.tasks.jobstore import JobStore
    from bot.services.tasks.remote import TaskiqRunner
    from bot.services.tasks.work import WorkServices
    from bot.wiring import task_runner

    settings = load_settings({"TASK_BROKER_URL": "redis://127.0.0.1:9/0"}, None)
    service = SpeechService(["whisper"])
    storage = object()  # never opened: nothing here reaches the database
    runner = task_runner(settings, storage, JobStore(storage), WorkServices(service, None))
    try:
        assert isinstance(runner, TaskiqRunner)
        assert await runner.warm_up() is None
        whisper = service._chain.get("whisper")
        assert not whisper.english.loaded and not whisper.multilingual.loaded
    finally:
        await runner.close()
        await service.close()
