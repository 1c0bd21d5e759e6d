"""Every language the bot accepts works offline both ways, through the sandbox and the real bot:
`!language` accepts only what the installed engines serve, the bot speaks a French server's
replies with a French voice, and hears real people in their own language (or detects it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.sandbox.runner import sandboxed_bot
from bot.sandbox.server import Sandbox
from bot.services.common import languages
from bot.services.common.engines import Heard
from bot.services.speech import audio, whisper_models
from bot.services.speech.whisper import WhisperEngine
from tests.e2e.conftest import E2E, eventually
from tests.fixtures.recordings import Recording, error_rate, recordings

GUILD = Sandbox.GUILD_ID
# What each espeak-ng voice says, and the words a listener must hear back (whisper base).
SAID = {
    "fr-FR": (
        "Bonjour tout le monde, il fait beau aujourd'hui.",
        {"tout", "monde", "fait", "beau"},
    ),
    "de-DE": ("Guten Morgen, heute ist ein schöner Tag.", {"guten", "morgen", "heute"}),
    "es-ES": ("Buenos días, hoy hace muy buen tiempo.", {"buenos", "días", "tiempo"}),
}


@pytest.fixture(scope="session")
def multilingual_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled whisper base, joined once for the session (the bots are told its folder
    with WHISPER_MULTILINGUAL_MODEL, as an operator may)."""
    return whisper_models.multilingual_model_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def listener(multilingual_folder: Path) -> WhisperEngine:
    """A multilingual listener for what the bot says: detects the language it hears."""
    return WhisperEngine(multilingual_model=str(multilingual_folder))


async def listen(listener: WhisperEngine, wav: bytes, language: str = "auto") -> Heard:
    return await asyncio.to_thread(listener.transcribe, wav, language)


@pytest.fixture
async def polyglot(
    make_settings: Callable[..., Settings], multilingual_folder: Path, tmp_path: Path
) -> AsyncIterator[E2E]:
    settings = make_settings(WHISPER_MULTILINGUAL_MODEL=str(multilingual_folder))
    async with sandboxed_bot(settings, voice_out_dir=tmp_path / "voice") as (sandbox, bot):
        yield E2E(sandbox, bot)


async def everything_said(e2e: E2E) -> bytes:
    """All the bot said in the voice channel (one utterance per pause), as one 16 kHz WAV."""
    voice = e2e.sandbox.voice
    await voice.wait_for_utterance(GUILD, timeout=60)
    index = 1
    while True:
        try:
            await voice.wait_for_utterance(GUILD, index=index, timeout=3)
        except TimeoutError:
            break
        index += 1
    pieces = [audio.from_wav(u.mono16k_wav()) for u in voice.hearing.utterances(GUILD)]
    return audio.to_wav(sum(pieces[1:], pieces[0]))


def words(text: str) -> set[str]:
    return {w.strip(".,!?¿¡'\"").lower() for w in text.split()}


# --- !language says what it can serve ------------------------------------------------------------


async def test_a_code_that_names_no_language_is_refused(polyglot: E2E) -> None:
    reply = await polyglot.ask_text("!language zz")
    assert reply == (
        "`zz` is not a language code. Use a code like `en-US`, `fr-FR` or `de`, or `auto`."
    )
    assert await polyglot.ask_text("!language") == (
        "The speech language here is `en-US` (English (United States))."
    )


async def test_a_language_no_installed_voice_speaks_is_refused_not_answered_in_english(
    polyglot: E2E,
) -> None:
    # Yoruba: whisper hears it, but no voice here (piper, espeak) speaks it.
    assert await polyglot.ask_text("!language yo") == (
        "Sorry, I can't speak `yo` (Èdè Yorùbá) with the engines here."
    )
    # Chinese: whisper hears it; espeak-ng's data here can't read Chinese characters.
    assert await polyglot.ask_text("!language zh-CN") == (
        "Sorry, I can't speak `zh-CN` (中文（中国）) with the engines here."
    )
    assert await polyglot.ask_text("!language") == (
        "The speech language here is `en-US` (English (United States))."
    )


async def test_a_language_set_before_it_was_checked_gets_one_clear_answer(polyglot: E2E) -> None:
    # An older version accepted any well-formed code; Zulu has no offline recognizer here.
    await polyglot.bot.services.storage.set_guild_setting(GUILD, "language", "zu")
    recording = clip("en-1.ogg")
    reply = await polyglot.ask(files=[("voice.ogg", recording.data())], voice_message=True)
    assert reply["content"] == (
        "I can't recognize speech in Zulu with the engines installed here. "
        "An admin can choose another language with `!language`."
    )
    assert (await polyglot.ask_text("!hi")).startswith("Hi owner")  # and the bot goes on


async def test_auto_and_translation_are_set_and_shown(polyglot: E2E) -> None:
    assert await polyglot.ask_text("!language auto translate") == (
        "The speech language is now `auto`: I recognize each recording in the language it is "
        "spoken in, and answer aloud in the language I heard last.\n"
        "Transcripts come with an English translation."
    )
    assert await polyglot.ask_text("!language") == (
        "The speech language here is `auto` (Automatic (the language spoken)). I answer aloud "
        "in `en-US`. Transcripts come with an English translation."
    )
    assert (await polyglot.ask_text("!language de maybe")).startswith("`maybe` after the")
    assert await polyglot.ask_text("!language de notranslate") == (
        "The speech language is now `de` (Deutsch)."
    )


# --- speaking: a French server hears French -------------------------------------------------------


@pytest.mark.parametrize("language", sorted(SAID))
async def test_say_speaks_the_servers_language_with_a_voice_of_it(
    polyglot: E2E, listener: WhisperEngine, language: str
) -> None:
    text, expected = SAID[language]
    assert (await polyglot.ask_text(f"!language {language}")).startswith(
        f"The speech language is now `{language}`"
    )
    voice = await polyglot.ask_text("!voice")
    assert f"Voices for `{language}`: espeak:" in voice and "piper" not in voice.split("Voices")[1]
    await polyglot.sandbox.join_voice("owner")
    await polyglot.sandbox.send(f"!say {text}")
    heard = await listen(listener, await everything_said(polyglot))
    # A listener who does not know the language recognizes it, and the words.
    assert heard.language == language.split("-")[0], heard
    assert len(expected & words(heard.text)) >= 2, heard.text


# --- hearing real people in their own language ------------------------------------------------

# One recording per language (tests/fixtures/languages/README.md), with the server's code.
HEARD = [("fr-1.ogg", "fr-FR"), ("de-3.ogg", "de-DE"), ("es-1.ogg", "es-ES"),
         ("it-2.ogg", "it-IT"), ("pt-1.ogg", "pt-BR"), ("ja-1.ogg", "ja-JP")]  # fmt: skip
# Today's bot heard every one of these as English (100-450% errors); whisper base alone
# scores 0-24% on them. A transcript this far off the reference is not the language.
MAX_ERROR = 0.35


def clip(name: str) -> Recording:
    return next(r for r in recordings() if r.file == name)


def transcript_of(reply: dict) -> str:
    content = reply["content"]
    assert content.startswith("**Transcript:** "), content
    return content.removeprefix("**Transcript:** ").split("\n")[0]


@pytest.mark.parametrize(("name", "code"), HEARD)
async def test_a_voice_message_is_heard_in_the_servers_language(
    polyglot: E2E, name: str, code: str
) -> None:
    recording = clip(name)
    assert (await polyglot.ask_text(f"!language {code}")).startswith("The speech language is now")
    reply = await polyglot.ask(
        files=[("voice-message.ogg", recording.data())], voice_message=True, timeout=60
    )
    text = transcript_of(reply)
    assert error_rate(recording.text, text, recording.language) <= MAX_ERROR, text
    assert "Recognized by" not in reply["content"]  # the server's own language: no footer


async def test_auto_recognizes_each_recording_in_the_language_spoken(polyglot: E2E) -> None:
    assert (await polyglot.ask_text("!language auto")).startswith("The speech language is now")
    for name, named in (("de-2.ogg", "German"), ("ja-2.ogg", "Japanese"), ("es-2.ogg", "Spanish")):
        recording = clip(name)
        reply = await polyglot.ask(files=[(name, recording.data())], timeout=60)
        assert reply["content"].endswith(f"\n-# Recognized by the whisper engine · {named}.")
        text = transcript_of(reply)
        assert error_rate(recording.text, text, recording.language) <= MAX_ERROR, text
    # Spoken replies follow the language heard last.
    assert "I answer aloud in `es`" in await polyglot.ask_text("!language")


@pytest.fixture
async def chinese_ok(
    make_settings: Callable[..., Settings], multilingual_folder: Path
) -> AsyncIterator[E2E]:
    """A bot with gtts first (unreachable here): Chinese is then spoken online only."""
    settings = make_settings(
        WHISPER_MULTILINGUAL_MODEL=str(multilingual_folder),
        TTS_ENGINES="gtts,piper,espeak",
        GTTS_ENDPOINT="http://127.0.0.1:9",
    )
    async with sandboxed_bot(settings) as (sandbox, bot):
        yield E2E(sandbox, bot)


async def test_chinese_comes_in_the_script_the_server_asks_for(chinese_ok: E2E) -> None:
    recording = clip("zh-3.ogg")  # whisper writes this one in traditional characters
    assert await chinese_ok.ask_text("!language zh-CN") == (
        "The speech language is now `zh-CN` (中文（中国）).\n"
        "Speaking in `zh-CN` needs the gtts engine (online); offline I can't."
    )
    simplified = transcript_of(
        await chinese_ok.ask(files=[("zh.ogg", recording.data())], timeout=60)
    )
    assert simplified == languages.in_script(simplified, "zh-CN")
    assert error_rate(recording.text, simplified, "zh") <= MAX_ERROR, simplified
    await chinese_ok.ask_text("!language zh-TW")
    traditional = transcript_of(
        await chinese_ok.ask(files=[("zh.ogg", recording.data())], timeout=60)
    )
    assert traditional != simplified and traditional == languages.in_script(traditional, "zh-TW")
    assert languages.in_script(traditional, "zh-CN") == simplified


async def test_translation_is_posted_beside_the_transcript(polyglot: E2E) -> None:
    recording = clip("fr-1.ogg")
    await polyglot.ask_text("!language fr-FR translate")
    reply = await polyglot.ask(files=[("fr.ogg", recording.data())], timeout=60)
    transcript, english = reply["content"].split("\n**English:** ")
    assert error_rate(recording.text, transcript.removeprefix("**Transcript:** "), "fr") <= 0.35
    assert "consul" in english.lower() and "conservat" in english.lower(), english
    await polyglot.ask_text("!language fr-FR notranslate")
    again = await polyglot.ask(files=[("fr.ogg", recording.data())], timeout=60)
    assert "**English:**" not in again["content"]


async def test_captions_are_made_in_the_language_spoken(polyglot: E2E) -> None:
    recording = clip("de-3.ogg")
    await polyglot.ask_text("!language auto")
    await polyglot.sandbox.join_voice("owner")
    on = await polyglot.sandbox.send("!listen on")
    reply = await polyglot.sandbox.wait_for_bot_message(after=on, timeout=30)
    wav = await asyncio.to_thread(lambda: audio.to_wav(audio.decode(recording.data(), "de.ogg")))
    await polyglot.sandbox.speak("owner", wav)
    channel = int(reply["channel_id"])

    def captions() -> list[str]:
        found = polyglot.sandbox.bot_messages(channel)
        return [m["content"] for m in found if int(m["id"]) > int(reply["id"])]

    await eventually(lambda: bool(captions()), 60)
    caption = captions()[0].removeprefix("**owner:** ")
    assert error_rate(recording.text, caption, "de") <= MAX_ERROR, caption
    # The server now answers aloud in the language heard.
    assert "I answer aloud in `de`" in await polyglot.ask_text("!language")
