"""Synthesis engines (really synthesising), fallback, streaming and clean-up."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bot.config import load_settings
from bot.errors import EngineUnavailableError, InvalidInputError
from bot.services.common.engines import AllEnginesFailedError
from bot.services.voice.synthesis import (
    GTTS_TIMEOUT_SECONDS,
    EspeakEngine,
    GttsEngine,
    PiperEngine,
    SpokenAudio,
    SynthesisService,
    audio_duration,
    split_sentences,
)

SENTENCE = "Hello world, this is a test of the speaking voice."


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        return samples, wav.getframerate()


def assert_speech(path: Path, min_seconds: float) -> None:
    """A WAV that lasts a while and is not silence."""
    samples, rate = read_wav(path)
    assert len(samples) / rate >= min_seconds
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    assert rms > 300  # int16 scale; silence is ~0


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


class FakeEngine:
    """Writes 0.1 s of tone per word and records what it was asked to say."""

    def __init__(self, name: str = "fake", fail_on: str | None = None) -> None:
        self.name = name
        self.fail_on = fail_on
        self.calls: list[tuple[str, str, str | None]] = []
        self.gate: threading.Event | None = None
        self.wrote = threading.Event()  # set once a file has been written

    def synthesize(
        self, text: str, language: str, voice: str | None, out_dir: Path, speed: float = 1.0
    ) -> Path:
        self.calls.append((text, language, voice))
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail_on is not None and self.fail_on in text:
            raise EngineUnavailableError(f"{self.name} is down")
        path = out_dir / f"tts-{self.name}-{len(self.calls)}.wav"
        rate = 8000
        t = np.arange(int(0.1 * rate * len(text.split()))) / rate
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
        self.wrote.set()
        return path


# --- sentences ---------------------------------------------------------------------------------


def test_split_sentences_at_end_punctuation() -> None:
    text = "Hello there! How are you? I am fine. Thanks…  Bye"
    assert split_sentences(text) == ["Hello there!", "How are you?", "I am fine.", "Thanks…", "Bye"]


def test_split_sentences_keeps_abbreviations_and_numbers() -> None:
    assert split_sentences("I met Dr. Smith at 3.30 today. He was late.") == [
        "I met Dr. Smith at 3.30 today.",
        "He was late.",
    ]


def test_split_sentences_joins_fragments_with_nothing_to_say() -> None:
    assert split_sentences("Really? !!! ... Yes.") == ["Really? !!! ...", "Yes."]


def test_split_sentences_at_line_breaks() -> None:
    assert split_sentences("first line\nsecond line") == ["first line", "second line"]


def test_split_sentences_cuts_long_sentences_at_commas_then_words() -> None:
    clause = "this clause has a handful of words in it"
    text = ", ".join([clause] * 12) + "."
    parts = split_sentences(text, max_chars=100)
    assert len(parts) > 1
    assert all(len(p) <= 100 for p in parts)
    assert " ".join(parts).split() == text.split()
    words = " ".join(f"w{i}" for i in range(100))
    parts = split_sentences(words, max_chars=50)
    assert all(len(p) <= 50 for p in parts) and " ".join(parts) == words


def test_split_sentences_of_nothing() -> None:
    assert split_sentences("   \n ") == []


# --- real engines ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piper() -> PiperEngine:
    return PiperEngine()  # the bundled en_US-joe-medium voice


def test_piper_speaks(piper: PiperEngine, tmp_path: Path) -> None:
    path = piper.synthesize(SENTENCE, "en-US", None, tmp_path)
    assert path.parent == tmp_path and path.suffix == ".wav"
    assert_speech(path, 1.5)
    assert read_wav(path)[1] == 22050


def test_piper_with_nothing_phonemisable_still_writes_a_valid_wav(
    piper: PiperEngine, tmp_path: Path
) -> None:
    path = piper.synthesize("   ", "en-US", None, tmp_path)
    assert audio_duration(path) < 0.5


def test_piper_unknown_voice_name_uses_the_default(piper: PiperEngine, tmp_path: Path) -> None:
    path = piper.synthesize("Hello.", "en-US", "../../etc/passwd", tmp_path)
    assert_speech(path, 0.3)
    assert piper.voices() == ["en_US-joe-medium"]


def test_piper_missing_voice_file_is_unavailable(tmp_path: Path) -> None:
    engine = PiperEngine(tmp_path / "missing.onnx")
    with pytest.raises(EngineUnavailableError):
        engine.synthesize("Hello.", "en-US", None, tmp_path)


@pytest.mark.parametrize("config", ["{}", "bundled"])
def test_piper_damaged_voice_is_unavailable(tmp_path: Path, config: str) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a model")
    bundled = PiperEngine().default_model().with_suffix(".onnx.json")
    (tmp_path / "broken.onnx.json").write_text(
        bundled.read_text() if config == "bundled" else config
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EngineUnavailableError):
        PiperEngine(model).synthesize("Hello.", "en-US", None, out)
    assert listing(out) == []


def test_espeak_speaks(tmp_path: Path) -> None:
    path = EspeakEngine().synthesize(SENTENCE, "en-US", None, tmp_path)
    assert_speech(path, 1.5)


def test_espeak_reads_text_that_looks_like_an_option(tmp_path: Path) -> None:
    path = EspeakEngine().synthesize("--help me please, -w nothing", "en-US", None, tmp_path)
    assert_speech(path, 1.0)
    assert listing(tmp_path) == [path.name]


@pytest.mark.parametrize(
    ("language", "voice", "chosen"),
    [
        ("en-US", None, "en-us"),
        ("en_GB", None, "en-gb"),
        ("fr-FR", None, "fr-fr"),
        ("de-DE", None, "de"),
        ("ja-JP", None, "ja"),
        ("fr-FR", "en-gb-x-rp", "fr-fr"),  # a voice of another language is not used
        ("en-US", "en-gb-x-rp", "en-gb-x-rp"),
        ("en-US", "EN-US+f3", "en-us+f3"),
        ("en-US", "no-such-voice", "en-us"),
        ("en-US", "en-us; rm -rf", "en-us"),
    ],
)
def test_espeak_voice_choice(language: str, voice: str | None, chosen: str) -> None:
    assert EspeakEngine().voice_for(language, voice) == chosen


def test_espeak_refuses_a_language_it_does_not_speak_instead_of_using_english() -> None:
    engine = EspeakEngine()
    assert not engine.supports("xx-YY")
    # Debian's espeak-ng data reads Chinese characters as English digits: not Chinese.
    assert not engine.supports("zh-CN") and not engine.supports("yue")
    with pytest.raises(EngineUnavailableError, match="espeak does not speak xx-YY"):
        engine.voice_for("xx-YY", None)


def test_espeak_missing_binary_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError):
        EspeakEngine("no-such-espeak-binary").synthesize("Hello.", "en", None, tmp_path)


# --- gTTS when unreachable ---------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gtts_refused_connection_is_unavailable(tmp_path: Path) -> None:
    engine = GttsEngine(endpoint=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(EngineUnavailableError):
        engine.synthesize("Hello.", "en-US", None, tmp_path)
    assert listing(tmp_path) == []


def test_gtts_server_that_never_answers_times_out(tmp_path: Path) -> None:
    assert GTTS_TIMEOUT_SECONDS <= 3  # skipped within 3 s, per request
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        engine = GttsEngine(endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3)
        with pytest.raises(EngineUnavailableError):
            engine.synthesize("Hello.", "en-US", None, tmp_path)


@pytest.fixture
def failing_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that answers every request with 503 and counts them."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


async def test_unreachable_gtts_falls_back_to_espeak(tmp_path: Path) -> None:
    service = SynthesisService(
        ["gtts", "espeak"], gtts_endpoint=f"http://127.0.0.1:{closed_port()}", tmp_dir=tmp_path
    )
    spoken = await service.synthesize(SENTENCE, "en-US")
    assert spoken.engine == "espeak"
    assert spoken.duration_seconds == pytest.approx(audio_duration(spoken.path))
    assert_speech(spoken.path, 1.5)
    await service.close()


async def test_failed_gtts_rests_instead_of_being_asked_again(
    failing_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, hits = failing_server
    service = SynthesisService(["gtts", "espeak"], gtts_endpoint=url, tmp_dir=tmp_path)
    first = await service.synthesize("Hello.", "en-US")
    second = await service.synthesize("Hello again.", "en-US")
    assert (first.engine, second.engine) == ("espeak", "espeak")
    assert len(hits) == 1
    await service.close()


async def test_all_engines_down(tmp_path: Path) -> None:
    service = SynthesisService(
        [GttsEngine(endpoint=f"http://127.0.0.1:{closed_port()}"), EspeakEngine("no-such-espeak")],
        tmp_dir=tmp_path,
    )
    with pytest.raises(AllEnginesFailedError):
        await service.synthesize("Hello.", "en-US")
    assert listing(tmp_path) == []


# --- the service -------------------------------------------------------------------------------


async def test_service_with_real_engines_in_order(piper: PiperEngine, tmp_path: Path) -> None:
    service = SynthesisService([piper, "espeak"], tmp_dir=tmp_path)
    assert service.engine_names == ["piper", "espeak"]
    default = await service.synthesize(SENTENCE, "en-US")
    forced = await service.synthesize(SENTENCE, "en-US", engine="espeak")
    assert (default.engine, forced.engine) == ("piper", "espeak")
    assert_speech(default.path, 1.5)
    assert_speech(forced.path, 1.5)


async def test_forced_engine_not_configured_uses_the_order(tmp_path: Path) -> None:
    first, second = FakeEngine("one"), FakeEngine("two")
    service = SynthesisService([first, second], tmp_dir=tmp_path)
    assert (await service.synthesize("hi", "en", engine="gtts")).engine == "one"
    assert (await service.synthesize("hi", "en", engine="two")).engine == "two"


async def test_language_and_voice_reach_the_engine(tmp_path: Path) -> None:
    engine = FakeEngine()
    service = SynthesisService([engine], tmp_dir=tmp_path)
    await service.synthesize("bonjour", "fr-FR", voice="v1")
    assert engine.calls == [("bonjour", "fr-FR", "v1")]


@pytest.mark.parametrize("text", ["", "   ", "!!! ..."])
async def test_nothing_to_say_is_refused(tmp_path: Path, text: str) -> None:
    engine = FakeEngine()
    service = SynthesisService([engine], tmp_dir=tmp_path)
    with pytest.raises(InvalidInputError):
        await service.synthesize(text, "en")
    with pytest.raises(InvalidInputError):
        async for _ in service.synthesize_stream(text, "en"):
            pass
    assert engine.calls == []


async def test_duration_is_measured_from_the_file(tmp_path: Path) -> None:
    service = SynthesisService([FakeEngine()], tmp_dir=tmp_path)
    spoken = await service.synthesize("one two three four five", "en")
    assert spoken.duration_seconds == pytest.approx(0.5)


async def test_stream_yields_each_sentence_in_order(tmp_path: Path) -> None:
    engine = FakeEngine()
    service = SynthesisService([engine], tmp_dir=tmp_path)
    text = "One. Two words! Three words here? Four words are here now."
    clips = [clip async for clip in service.synthesize_stream(text, "en", voice="v")]
    assert [c.duration_seconds for c in clips] == pytest.approx([0.1, 0.2, 0.3, 0.5])
    assert [call[0] for call in engine.calls] == split_sentences(text)
    assert all(c.path.exists() for c in clips)  # the receiver deletes them


async def test_stream_keeps_the_engine_of_its_first_sentence(tmp_path: Path) -> None:
    first = FakeEngine("first", fail_on="Alpha")
    second = FakeEngine("second")
    service = SynthesisService([first, second], tmp_dir=tmp_path, rest_seconds=0)
    clips = [c async for c in service.synthesize_stream("Alpha. Beta. Gamma.", "en")]
    assert [c.engine for c in clips] == ["second"] * 3
    assert [call[0] for call in first.calls] == ["Alpha."]


async def test_stream_closed_early_deletes_the_clips_made_ahead(tmp_path: Path) -> None:
    service = SynthesisService([FakeEngine()], tmp_dir=tmp_path)
    stream = service.synthesize_stream("One. Two. Three. Four. Five.", "en")
    first = await anext(stream)
    await asyncio.sleep(0.2)  # let it synthesise ahead
    await stream.aclose()
    assert listing(tmp_path) == [first.path.name]


async def test_stream_failing_midway_raises_after_the_good_clips(tmp_path: Path) -> None:
    service = SynthesisService([FakeEngine(fail_on="Three")], tmp_dir=tmp_path)
    clips: list[SpokenAudio] = []
    with pytest.raises(AllEnginesFailedError):
        async for clip in service.synthesize_stream("One. Two. Three. Four.", "en"):
            clips.append(clip)
    assert len(clips) == 2
    assert listing(tmp_path) == sorted(c.path.name for c in clips)


async def test_real_piper_stream(piper: PiperEngine, tmp_path: Path) -> None:
    service = SynthesisService([piper], tmp_dir=tmp_path)
    text = "This is the first sentence. Here is the second one. And a third to finish."
    clips = [clip async for clip in service.synthesize_stream(text, "en-US")]
    assert len(clips) == 3
    for clip in clips:
        assert clip.engine == "piper"
        assert_speech(clip.path, 0.8)


async def test_cancelled_synthesis_deletes_its_file_when_the_thread_ends(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    service = SynthesisService([engine], tmp_dir=tmp_path)
    task = asyncio.create_task(service.synthesize("hello there", "en"))
    await asyncio.to_thread(wait_for, lambda: bool(engine.calls))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    engine.gate.set()
    assert await asyncio.to_thread(engine.wrote.wait, 30)  # the file exists, then goes
    await asyncio.to_thread(wait_for, lambda: listing(tmp_path) == [])
    assert listing(tmp_path) == []


async def test_leftovers_are_removed_at_start_and_close(tmp_path: Path) -> None:
    (tmp_path / "tts-old.wav").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("not ours")
    service = SynthesisService([FakeEngine()], tmp_dir=tmp_path)
    assert listing(tmp_path) == ["keep.txt"]
    await service.synthesize("hello", "en")
    await service.close()
    assert listing(tmp_path) == ["keep.txt"]
    with pytest.raises(RuntimeError):
        await service.synthesize("hello", "en")


def test_from_settings(tmp_path: Path) -> None:
    settings = load_settings(
        {"DATA_DIR": str(tmp_path), "TTS_ENGINES": "espeak,piper", "GTTS_TLD": "co.uk"},
        env_file=None,
    )
    service = SynthesisService.from_settings(settings)
    assert service.engine_names == ["espeak", "piper"]
    assert service.tmp_dir.is_dir() and service.tmp_dir.is_relative_to(tmp_path)
    settings = load_settings({"DATA_DIR": str(tmp_path), "GTTS_ENDPOINT": "http://x:1"}, None)
    gtts = SynthesisService.from_settings(settings).engine("gtts")
    assert isinstance(gtts, GttsEngine)
    assert (gtts.tld, gtts.endpoint) == ("com", "http://x:1")


async def test_voices_per_engine(piper: PiperEngine, tmp_path: Path) -> None:
    service = SynthesisService([piper, "espeak", "gtts"], tmp_dir=tmp_path)
    assert await service.voices("piper") == ["en_US-joe-medium"]
    espeak_voices = await service.voices("espeak")
    assert {"en-us", "en-gb", "fr-fr"} <= set(espeak_voices)
    assert await service.voices("gtts") == []
    assert await service.voices("festival") == []
    broken = SynthesisService([PiperEngine(tmp_path / "missing.onnx")], tmp_dir=tmp_path)
    assert await broken.voices("piper") == []


def test_unknown_engine_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SynthesisService(["festival"], tmp_dir=tmp_path)


def test_a_long_first_sentence_is_streamed_in_two_pieces() -> None:
    from bot.services.voice.synthesis import stream_pieces

    assert stream_pieces("Hello there, nice to meet you. Bye.") == [
        "Hello there,",
        "nice to meet you.",
        "Bye.",
    ]
    assert stream_pieces("Hi, you.") == ["Hi, you."]  # short: left whole
    # no usable comma: cut before a linking word
    assert stream_pieces("The weather today is calm and bright. Yes.") == [
        "The weather today",
        "is calm and bright.",
        "Yes.",
    ]
    assert stream_pieces("Short one here today.") == ["Short one here today."]
