"""Speech to text through the sandbox, with the offline whisper engine."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import pytest

from bot.core.checks import NO_PERMISSION
from bot.sandbox.runner import sandboxed_bot
from bot.services.speech import audio
from tests.e2e.conftest import E2E, eventually
from tests.fixtures import speech

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def long_speech_wav(seconds: float, pause: float = 0.3) -> bytes:
    """The fixture phrase repeated with short pauses, as 16 kHz mono WAV."""
    phrase = audio.decode(fixture("hello.wav"), "hello.wav")
    unit = phrase + audio.AudioSegment.silent(int(pause * 1000), frame_rate=phrase.frame_rate)
    repeats = int(seconds * 1000 // len(unit)) + 1
    return audio.to_wav((unit * repeats)[: int(seconds * 1000)])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_heard(text: str) -> None:
    lowered = text.lower()
    assert "hello" in lowered and "world" in lowered and "test" in lowered, text


@pytest.fixture
async def stt(make_settings) -> E2E:
    async with sandboxed_bot(make_settings()) as (sandbox, bot):
        yield E2E(sandbox, bot)


async def test_voice_message_and_mp3_are_transcribed(stt: E2E) -> None:
    reply = await stt.ask(files=[("voice-message.ogg", fixture("hello.ogg"))], voice_message=True)
    assert reply["content"].startswith("**Transcript:** ")
    assert_heard(reply["content"])
    assert "Recognized by" not in reply["content"]  # the first engine answered
    reply = await stt.ask("listen to this", files=[("hello.mp3", fixture("hello.mp3"))])
    assert_heard(reply["content"])
    assert stt.sandbox.typing  # the typing indicator showed while it worked


async def test_transcriptions_run_as_tasks_but_do_not_crowd_the_job_list(stt: E2E) -> None:
    """The bot transcribes through its runner (a task in this process); users never see a
    transcription's job id, so `!jobs` keeps listing only what they started."""
    for _ in range(2):
        reply = await stt.ask(files=[("hello.ogg", fixture("hello.ogg"))], voice_message=True)
        assert_heard(reply["content"])
    assert await stt.ask_text("!jobs") == "No jobs yet."


async def test_long_audio_streams_into_one_reply_then_a_file_while_the_bot_stays_responsive(
    stt: E2E,
) -> None:
    clip, said = await asyncio.to_thread(speech.sentences_for, 240)
    wav = await asyncio.to_thread(audio.to_wav, clip)
    updates: list[tuple[float, str]] = []  # (time, content) of each edit of a bot message
    stt.sandbox.listeners.append(
        lambda event, data: (
            updates.append((time.monotonic(), data["content"]))
            if event == "MESSAGE_UPDATE"
            else None
        )
    )
    sent = await stt.sandbox.send(files=[("long.wav", wav)])
    live = await stt.sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: "Transcript" in m["content"], timeout=60
    )
    # Answered at once, before any text: the length is known after decoding.
    assert re.fullmatch(
        r"\*\*Transcript\*\* \(0:00 of [34]:\d\d, still transcribing…\):", live["content"]
    )
    hi = await stt.ask("!hi")
    assert hi["content"].startswith("Hi owner!")
    answered_hi = time.monotonic()
    final = stt.sandbox.messages[int(live["id"])]
    await eventually(lambda: bool(final["attachments"]), timeout=600)

    growing = [(t, c) for t, c in updates if "still transcribing" in c]
    assert len(growing) >= 2, updates
    clocks = [re.search(r"\((\d+):(\d\d) of", c).groups() for _, c in growing]
    seconds = [int(m) * 60 + int(s) for m, s in clocks]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert all(len(c) > len(growing[0][1]) - 5 for _, c in growing[1:])  # text only grows
    times = [t for t, _ in updates]
    assert all(b - a >= 1.9 for a, b in zip(times, times[1:], strict=False)), times
    assert answered_hi < times[-1]  # !hi was answered during the transcription

    assert final["content"].startswith("**Transcript** (")
    assert final["attachments"][0]["filename"] == "transcript.txt"
    text = stt.sandbox.file(final["attachments"][0]).decode()
    assert len(text) > 1900
    # every chunk was transcribed, in order: the last sentence said is in the transcript's end
    last_words = said.split(".")[-2].split()[-3:]
    assert " ".join(last_words).lower() in text.lower()[-300:], (last_words, text[-300:])
    assert text.lower().count("smooth planks") >= 5  # the first sentence comes back every 33 s
    # The streamed transcript is the one the service makes without streaming.
    whole = await stt.bot.services.speech.transcribe(wav, "long.wav", "en-US")
    assert text == whole.text


async def test_a_recording_just_over_a_minute_shows_its_first_words_before_the_whole(
    stt: E2E,
) -> None:
    clip, _said = await asyncio.to_thread(speech.sentences_for, 66)
    voice = await asyncio.to_thread(speech.voice_message, clip)
    edits: list[str] = []  # each version of the growing reply, in order
    stt.sandbox.listeners.append(
        lambda event, data: edits.append(data["content"]) if event == "MESSAGE_UPDATE" else None
    )
    sent = await stt.sandbox.send(files=[("reading.ogg", voice)])
    await stt.sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: "still transcribing" in m["content"], timeout=60
    )
    await eventually(lambda: bool(edits) and "still transcribing" not in edits[-1], timeout=120)

    growing = [c for c in edits if "still transcribing…): " in c]
    assert growing, edits  # some text showed before the whole transcript
    # The first words came alone, from the first seconds of the recording.
    assert re.match(r"\*\*Transcript\*\* \(0:(0\d|10) of 1:0\d, still transcribing", growing[0])
    assert "smooth planks" in growing[0].lower()
    assert edits[-1].startswith("**Transcript:** ") and "smooth planks" in edits[-1].lower()


async def test_transcribe_command_as_a_reply_and_with_an_attachment(stt: E2E) -> None:
    await stt.ask_text("!autotranscribe off")
    original = await stt.sandbox.send(
        "an old recording", files=[("hello.mp3", fixture("hello.mp3"))]
    )
    reply = await stt.ask("!transcribe", reply_to=int(original["id"]))
    assert_heard(reply["content"])
    reply = await stt.ask("!transcribe", files=[("hello.ogg", fixture("hello.ogg"))])
    assert_heard(reply["content"])
    text = await stt.ask_text("!transcribe")
    assert text.startswith("I don't see an audio file there.")


async def test_autotranscribe_switch_is_admin_only_and_persistent(stt: E2E) -> None:
    assert await stt.ask_text("!autotranscribe off", author="member") == NO_PERMISSION
    text = await stt.ask_text("!autotranscribe off")
    assert text.startswith("Automatic transcription is now off")
    sent = await stt.sandbox.send(files=[("hello.mp3", fixture("hello.mp3"))])
    hi = await stt.ask("!hi")  # the audio above got no reply of its own
    assert int(hi["id"]) > int(sent["id"])
    assert [m for m in stt.sandbox.bot_messages() if int(m["id"]) > int(sent["id"])] == [hi]
    assert (
        await stt.bot.services.storage.get_guild_setting(stt.sandbox.GUILD_ID, "autotranscribe")
        is False
    )
    assert (await stt.ask_text("!autotranscribe maybe")).startswith("Say `on` or `off`")


async def test_language_is_admin_only(stt: E2E) -> None:
    shown = await stt.ask_text("!language")
    assert shown == "The speech language here is `en-US` (English (United States))."
    assert await stt.ask_text("!language fr-FR", author="member") == NO_PERMISSION
    assert await stt.ask_text("!language fr-FR") == (
        "The speech language is now `fr-FR` (Français (France))."
    )
    assert await stt.ask_text("!language") == (
        "The speech language here is `fr-FR` (Français (France))."
    )
    assert (await stt.ask_text("!language 42")).startswith("`42` is not a language code.")


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("empty.ogg", b"", "That file is empty."),
        ("notes.mp3", b"just some text, not audio\n" * 20, "That file is not audio I can read."),
        ("cut.ogg", fixture("hello.ogg")[:600], None),
        ("silence.wav", audio.to_wav(audio.AudioSegment.silent(3000, frame_rate=16000)), None),
    ],
)
async def test_bad_audio_gets_one_clear_reply(stt: E2E, name: str, data: bytes, expected) -> None:
    sent = await stt.sandbox.send(files=[(name, data)])
    reply = await stt.sandbox.wait_for_bot_message(after=sent)
    if expected:
        assert reply["content"] == expected
    elif name == "silence.wav":
        assert reply["content"] == "I couldn't hear any words in that audio."
    else:
        assert "Traceback" not in reply["content"] and len(reply["content"]) < 200
        assert not reply["content"].startswith("Sorry, something went wrong")
    assert (await stt.ask_text("!hi")).startswith("Hi owner!")  # and the bot carries on
    replies = [m for m in stt.sandbox.bot_messages() if int(m["id"]) > int(sent["id"])]
    assert len(replies) == 2  # exactly one reply to the bad file, then !hi


async def test_too_large_and_too_long(make_settings) -> None:
    settings = make_settings(MAX_AUDIO_MB="1", MAX_AUDIO_SECONDS="5")
    async with sandboxed_bot(settings) as (sandbox, bot):
        env = E2E(sandbox, bot)
        big = await asyncio.to_thread(long_speech_wav, 40)
        assert await env.ask_text(files=[("big.wav", big)]) == (
            "That file is too large (1.3 MB; the limit is 1 MB)."
        )
        six = await asyncio.to_thread(long_speech_wav, 6)
        text = await env.ask_text(files=[("six.wav", six)])
        assert text.startswith("That audio is too long") and "the limit is 0:05" in text


async def test_engines_down_and_fallback_naming_the_engine(make_settings) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/speech-api/v2/recognize"
    settings = make_settings(STT_ENGINES="google", GOOGLE_STT_ENDPOINT=dead)
    async with sandboxed_bot(settings) as (sandbox, bot):
        text = await E2E(sandbox, bot).ask_text(files=[("hello.mp3", fixture("hello.mp3"))])
        assert text == "Speech recognition is unavailable right now. Please try again later."
    settings = make_settings(
        STT_ENGINES="google,whisper",
        GOOGLE_STT_ENDPOINT=dead,
        DATA_DIR=str(Path(settings.data_dir).parent / "second"),
    )
    async with sandboxed_bot(settings) as (sandbox, bot):
        text = await E2E(sandbox, bot).ask_text(files=[("hello.mp3", fixture("hello.mp3"))])
        assert_heard(text)
        assert text.endswith("-# Recognized by the whisper engine.")


async def test_transcribe_as_a_reply_to_a_deleted_message(stt: E2E) -> None:
    gone = await stt.sandbox.send("old", files=[("hello.mp3", fixture("hello.mp3"))])
    await stt.sandbox.wait_for_bot_message(after=gone)
    reference = int(gone["id"])
    del stt.sandbox.messages[reference]  # the user deleted it
    text = await stt.ask_text("!transcribe", reply_to=reference)
    assert text == "I can't find the message you replied to."
