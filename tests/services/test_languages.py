"""Languages: codes, names, Chinese script, which engines serve a language, a server's
language (auto, fallback, translation), and the bundled multilingual model's files."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.errors import EngineUnavailableError
from bot.services.common import languages
from bot.services.common.engines import Heard
from bot.services.common.languages import (
    EngineFit,
    matching_languages,
    own_name,
    parse_code,
    verdict,
)
from bot.services.speech import audio, whisper_models
from bot.services.speech.service import SpeechService
from bot.services.speech.transcript import Hearing
from bot.services.speech.whisper import ModelSlot, WhisperEngine
from bot.services.storage import Storage
from bot.services.tenancy.language import ServerLanguages
from bot.services.tenancy.settings import ServerSettings
from bot.services.voice.spoken_text import clean_for_speech
from bot.services.voice.synthesis import (
    EspeakEngine,
    GttsEngine,
    LanguageNotSpokenError,
    PiperEngine,
    SynthesisService,
    japanese_reading,
    split_sentences,
)
from tests.fixtures import speech as samples
from tests.fixtures.recordings import error_rate

# --- codes and names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [("fr_fr", "fr-FR"), ("EN-us", "en-US"), ("de", "de"), ("Auto", "auto"), ("iw", "he")],
)
def test_codes_are_written_the_standard_way(raw: str, code: str) -> None:
    assert parse_code(raw) == code


@pytest.mark.parametrize("raw", ["zz", "xx-YY", "qaa", "english", "e1", "", "fr fr", "ｅｎ"])
def test_a_code_that_names_no_language_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="must be a language code like en-US, or auto"):
        parse_code(raw)


def test_languages_are_named_in_themselves_and_in_english() -> None:
    assert own_name("fr-FR") == "Français (France)"
    assert own_name("de") == "Deutsch"
    assert own_name("ja-JP") == "日本語 (日本)"
    assert own_name("zh-TW").startswith("中文")
    assert languages.english_name("fr-FR") == "French"
    assert languages.english_name("ja") == "Japanese"


def test_suggestions_match_codes_and_own_names_and_keep_only_usable_ones() -> None:
    assert [code for _, code in matching_languages("fr")][:2] == ["fr-FR", "fr-CA"]
    assert matching_languages("日本") == [("日本語 (日本) — ja-JP", "ja-JP")]
    assert "de-DE" in [code for _, code in matching_languages("deutsch")]
    only_french = matching_languages("", usable=lambda code: code.startswith("fr"))
    assert [code for _, code in only_french] == ["fr-FR", "fr-CA"]


@pytest.mark.parametrize(
    ("tag", "script"),
    [("zh", "simplified"), ("zh-CN", "simplified"), ("zh-SG", "simplified"),
     ("zh-TW", "traditional"), ("zh-HK", "traditional"), ("zh-Hant", "traditional"),
     ("ja", None), ("auto", None)],
)  # fmt: skip
def test_chinese_script_by_tag(tag: str, script: str | None) -> None:
    assert languages.chinese_script(tag) == script


def test_chinese_text_is_put_in_the_servers_script() -> None:
    traditional, simplified = "這個問題很簡單，我們明天見。", "这个问题很简单，我们明天见。"
    assert languages.in_script(traditional, "zh-CN") == simplified
    assert languages.in_script(simplified, "zh-TW") == traditional
    assert languages.in_script("Ça va très bien", "fr-FR") == "Ça va très bien"


# --- which engines serve a language ------------------------------------------------------------

OFFLINE = [EngineFit("whisper", online=False)]
ESPEAK = [EngineFit("espeak", online=False)]


def test_a_language_served_offline_both_ways_is_accepted() -> None:
    decision = verdict("fr-FR", OFFLINE, ESPEAK)
    assert decision.accepted
    assert decision.message == "The speech language is now `fr-FR` (Français (France))."


def test_a_direction_only_an_online_engine_serves_is_said() -> None:
    decision = verdict("ha", OFFLINE, [EngineFit("gtts", online=True)])
    assert decision.accepted
    assert decision.message.endswith(
        "Speaking in `ha` needs the gtts engine (online); offline I can't."
    )


def test_a_direction_no_engine_serves_is_refused_and_named() -> None:
    refused = verdict("yo", OFFLINE, [])
    assert not refused.accepted
    assert refused.message == "Sorry, I can't speak `yo` (Èdè Yorùbá) with the engines here."
    neither = verdict("zu", [], [])
    assert "recognize speech in `zu`" in neither.message and "or speak" in neither.message


def test_auto_needs_an_offline_detector() -> None:
    assert verdict("auto", OFFLINE, []).accepted
    refused = verdict("auto", [EngineFit("google", online=True)], [])
    assert not refused.accepted and "multilingual whisper model" in refused.message


def test_the_real_engines_serve_what_they_can(tmp_path: Path) -> None:
    speech = SpeechService(["google", "whisper", "sphinx"])
    synthesis = SynthesisService(["gtts", "piper", "espeak"], tmp_dir=tmp_path)
    assert [f.name for f in speech.hearing("en-US")] == ["google", "whisper", "sphinx"]
    assert [f.name for f in speech.hearing("fr-FR")] == ["google", "whisper"]
    assert [f.name for f in speech.hearing("auto")] == ["whisper"]
    assert [f.name for f in speech.hearing("zu")] == ["google"]  # not in whisper's 99
    assert [f.name for f in synthesis.speaking("en-US")] == ["gtts", "piper", "espeak"]
    assert [f.name for f in synthesis.speaking("fr-FR")] == ["gtts", "espeak"]
    assert [f.name for f in synthesis.speaking("he-IL")] == ["gtts", "espeak"]  # gTTS's "iw"
    assert [f.name for f in synthesis.speaking("yo")] == []


# --- speaking in the server's language -----------------------------------------------------------


class Recorded:
    """An engine that records the languages it was asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.online = getattr(inner, "online", False)
        self.languages: list[str] = []

    def supports(self, language: str) -> bool:
        return self.inner.supports(language)

    def synthesize(
        self, text: str, language: str, voice: str | None, out_dir: Path, speed: float = 1.0
    ) -> Path:
        self.languages.append(language)
        return self.inner.synthesize(text, language, voice, out_dir)


async def test_french_replies_skip_the_english_piper_voice_in_any_order(tmp_path: Path) -> None:
    gtts = Recorded(GttsEngine(endpoint="http://127.0.0.1:9", timeout=0.5))  # unreachable
    piper, espeak = Recorded(PiperEngine()), Recorded(EspeakEngine())
    service = SynthesisService([piper, gtts, espeak], tmp_dir=tmp_path)
    try:
        spoken = await service.synthesize("Bonjour tout le monde.", "fr-FR", engine="piper")
        assert spoken.engine == "espeak" and spoken.duration_seconds > 0.5
        assert piper.languages == [] and espeak.languages == ["fr-FR"]
        assert gtts.languages == ["fr-FR"]  # tried (the language goes to gTTS), unreachable
        english = await service.synthesize("Hello there.", "en-US")
        assert english.engine == "piper"
    finally:
        await service.close()


async def test_a_language_no_voice_speaks_is_one_clear_error(tmp_path: Path) -> None:
    service = SynthesisService(["piper", "espeak"], tmp_dir=tmp_path)
    try:
        with pytest.raises(LanguageNotSpokenError) as refused:
            await service.synthesize("Ẹ kú àárọ̀.", "yo")
        assert refused.value.message == (
            "I can't speak Yoruba with the voices installed here. "
            "An admin can choose another language with `!language`."
        )
    finally:
        await service.close()


async def test_voices_are_listed_for_a_language(tmp_path: Path) -> None:
    service = SynthesisService(["piper", "espeak"], tmp_dir=tmp_path)
    try:
        assert await service.voices("espeak", "fr-FR") == ["fr", "fr-be", "fr-ch", "fr-fr"]
        assert await service.voices("piper", "fr-FR") == []
        assert await service.voices("piper", "en-GB") == ["en_US-joe-medium"]
    finally:
        await service.close()


# --- a server's language -------------------------------------------------------------------------


@pytest.fixture
async def storage(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Storage(tmp_path / "bot.db")
    await store.open()
    yield store
    await store.close()


async def test_an_auto_server_falls_back_to_and_speaks_the_language_it_heard_last(
    storage: Storage,
) -> None:
    servers = ServerLanguages(ServerSettings(storage, SimpleNamespace(language="en-US")))
    assert await servers.hearing(1) == Hearing("en-US", "en-US", False)
    await servers.choose(1, "auto", translate=True)
    assert await servers.hearing(1) == Hearing("auto", "en-US", True)
    assert await servers.speaking(1) == "en-US"
    await servers.heard(1, "fr")
    assert await servers.hearing(1) == Hearing("auto", "fr", True)
    assert await servers.speaking(1) == "fr"
    await servers.choose(1, "de-DE")  # translation unchanged when not said
    assert await servers.hearing(1) == Hearing("de-DE", "de-DE", True)
    await servers.heard(1, "ja")  # only auto servers remember what they heard
    assert await servers.speaking(1) == "de-DE"
    assert await servers.hearing(2) == Hearing("en-US", "en-US", False)  # another server
    assert await servers.hearing(None) == Hearing("en-US", "en-US", False)  # a DM


async def test_an_auto_default_speaks_english_until_something_is_heard(storage: Storage) -> None:
    servers = ServerLanguages(ServerSettings(storage, SimpleNamespace(language="auto")))
    assert await servers.speaking(7) == "en-US"
    assert (await servers.hearing(7)).fallback == "en-US"


# --- recognizing with auto, fallback and script ---------------------------------------------------


class Detecting:
    """A speech engine that 'detects' `detected` at `probability` and records its calls."""

    name = "whisper"
    holds_gil = False
    online = False

    def __init__(self, detected: str = "fr", probability: float = 0.99, text: str = "bonjour"):
        self.detected, self.probability, self.text = detected, probability, text
        self.calls: list[str] = []

    def supports(self, language: str) -> bool:
        return True

    def transcribe(self, wav: bytes, language: str) -> Heard:
        self.calls.append(language)
        if language == "auto":
            return Heard(self.text, self.detected, self.probability)
        return Heard(self.text, language)

    def translate(self, wav: bytes, language: str) -> str:
        self.calls.append(f"translate:{language}")
        return "hello"


def speech(seconds: float) -> Any:
    """Real speech of about `seconds` (the fixture sentences, or the start of one)."""
    if seconds < 2:
        return samples.hello()[: round(seconds * 1000)]
    return samples.sentences_for(seconds)[0]


async def recognize(engine: Detecting, hearing: Hearing, seconds: float = 3.0) -> Any:
    service = SpeechService([engine])
    try:
        return await service.recognize(speech(seconds), hearing)
    finally:
        await service.close()


async def test_auto_detects_the_language_and_names_it() -> None:
    engine = Detecting("fr", 0.98)
    transcript = await recognize(engine, Hearing("auto", "en-US"))
    assert engine.calls == ["auto"]
    assert transcript.language == "fr" and transcript.text == "bonjour"


async def test_unsure_detection_falls_back_to_the_servers_last_language() -> None:
    engine = Detecting("en", 0.31)
    transcript = await recognize(engine, Hearing("auto", "de"))
    assert engine.calls == ["auto", "de"] and transcript.language == "de"


async def test_very_short_audio_is_not_detected_but_heard_in_the_fallback() -> None:
    engine = Detecting("en", 0.99)
    transcript = await recognize(engine, Hearing("auto", "es"), seconds=0.8)
    assert engine.calls == ["es"] and transcript.language == "es"


async def test_the_first_chunk_decides_the_language_of_the_rest() -> None:
    engine = Detecting("it", 0.97)
    transcript = await recognize(engine, Hearing("auto", "en-US"), seconds=130)
    assert transcript.chunks >= 3
    assert engine.calls[0] == "auto" and set(engine.calls[1:]) == {"it"}


async def test_translation_comes_beside_a_transcript_not_in_english() -> None:
    engine = Detecting("fr", 0.99)
    transcript = await recognize(engine, Hearing("auto", "en-US", translate=True))
    assert transcript.translation == "hello" and "translate:fr" in engine.calls
    english = Detecting("en", 0.99, text="hello")
    assert (await recognize(english, Hearing("auto", "en-US", translate=True))).translation is None


async def test_chinese_transcripts_come_in_the_servers_script() -> None:
    traditional = Detecting("zh", 0.99, text="這個問題很簡單")
    assert (await recognize(traditional, Hearing("zh-CN", "zh-CN"))).text == "这个问题很简单"
    assert (await recognize(traditional, Hearing("auto", "en-US"))).text == "这个问题很简单"
    simplified = Detecting("zh", 0.99, text="这个问题很简单")
    assert (await recognize(simplified, Hearing("zh-TW", "zh-TW"))).text == "這個問題很簡單"


# --- the whisper engine: models by language, loaded lazily, unloaded when idle --------------------


def test_whisper_picks_the_model_by_language() -> None:
    engine = WhisperEngine()
    assert engine.slot_for("en-GB") is engine.english
    assert engine.slot_for("fr-FR") is engine.multilingual
    assert engine.slot_for("auto") is engine.multilingual
    assert engine.supports("fr-FR") and engine.supports("auto") and engine.supports("ja")
    assert not engine.supports("zu")  # not one of whisper's languages


def test_an_idle_model_is_unloaded_and_loads_again_when_needed() -> None:
    loads: list[str] = []
    slot = ModelSlot("test", lambda: "model", lambda source: loads.append(source) or object(), 0.2)
    with slot.use():
        time.sleep(0.4)  # in use: never unloaded under a running call
        assert slot.loaded
    deadline = time.monotonic() + 5
    while slot.loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not slot.loaded and loads == ["model"]
    with slot.use():
        assert slot.loaded and loads == ["model", "model"]
    slot.close()


def test_concurrent_first_uses_load_the_model_once() -> None:
    loads: list[str] = []

    def slow_load(source: str) -> object:
        time.sleep(0.2)
        loads.append(source)
        return object()

    slot = ModelSlot("test", lambda: "model", slow_load)
    threads = [threading.Thread(target=slot.load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["model"]


# --- the bundled multilingual model's files ---------------------------------------------------


def test_the_parts_are_joined_once_and_checked(tmp_path: Path) -> None:
    folder = whisper_models.multilingual_model_folder(tmp_path)
    model = folder / "model.bin"
    assert model.stat().st_size == whisper_models.BASE_SIZE
    assert {p.name for p in folder.iterdir()} == {"model.bin", *whisper_models.BASE_FILES}
    stamp = model.stat().st_mtime_ns
    assert whisper_models.multilingual_model_folder(tmp_path) == folder
    assert model.stat().st_mtime_ns == stamp  # not joined again
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no scratch left


def test_a_damaged_joined_model_is_joined_again(tmp_path: Path) -> None:
    folder = whisper_models.multilingual_model_folder(tmp_path)
    with open(folder / "model.bin", "r+b") as file:
        file.seek(1000)
        file.write(b"\0" * 64)
    again = whisper_models.multilingual_model_folder(tmp_path)
    digest = hashlib.sha256((again / "model.bin").read_bytes()).hexdigest()
    assert digest == whisper_models.BASE_SHA256


def test_parts_that_join_into_other_bytes_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whisper_models, "BASE_SHA256", "0" * 64)
    with pytest.raises(EngineUnavailableError, match="do not join into the expected file"):
        whisper_models.multilingual_model_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-made is left to load


# --- text for speech in any script -----------------------------------------------------------


def test_the_cleanup_speaks_its_own_words_in_the_messages_language() -> None:
    message = "regarde https://example.com/x <@1> <#5>"
    assert clean_for_speech(message, prefix="!", max_chars=200, language="fr-FR") == (
        "regarde un lien quelqu'un un salon"
    )
    assert clean_for_speech(
        "見て https://example.com", prefix="!", max_chars=200, language="ja"
    ) == ("見て リンク")
    assert clean_for_speech(
        "look https://example.com", prefix="!", max_chars=200, language="xx"
    ) == ("look a link")
    cut = clean_for_speech("un deux trois quatre", prefix="!", max_chars=10, language="fr")
    assert cut == "un deux … (message coupé)"


def test_non_latin_text_passes_through_the_cleanup_unchanged() -> None:
    for text in (
        "Привет, как дела? 12345",
        "مرحبا بالعالم",
        "今日はいい天気ですね。",
        "你好，世界！",
    ):
        assert clean_for_speech(text, prefix="!", max_chars=200) == text


def test_chinese_and_japanese_sentences_end_without_spaces() -> None:
    assert split_sentences("おはよう。今日は「晴れ」です！散歩しますか？ Yes.") == [
        "おはよう。",
        "今日は「晴れ」です！",
        "散歩しますか？",
        "Yes.",
    ]
    assert split_sentences("大家早上好，今天天气很好。我们走吧。") == [
        "大家早上好，今天天气很好。",
        "我们走吧。",
    ]


def test_japanese_kanji_are_read_in_katakana_for_espeak() -> None:
    assert japanese_reading("今日は良い天気です。") == "キョウハヨイテンキデス。"


async def test_japanese_spoken_offline_is_heard_back_as_japanese(tmp_path: Path) -> None:
    sentence = "おはようございます。今日はとても良い天気です。"
    service = SynthesisService(["piper", "espeak"], tmp_dir=tmp_path)
    listener = WhisperEngine(cache_dir=tmp_path / "models")
    try:
        spoken = await service.synthesize(sentence, "ja-JP")
        assert spoken.engine == "espeak"
        wav = audio.to_wav(audio.decode(spoken.path.read_bytes(), spoken.path.name))
        heard = await asyncio.to_thread(listener.transcribe, wav, "auto")
    finally:
        await service.close()
        listener.close()
    assert heard.language == "ja", heard
    # Compared as readings: whisper may write a word in kana that was said from kanji.
    said, back = japanese_reading(sentence), japanese_reading(heard.text)
    assert error_rate(said, back, "ja") <= 0.2, heard.text
