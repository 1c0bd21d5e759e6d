"""Text to be spoken: any chat message through `clean_for_speech`, then sentence splitting
and a synthesis stream with a stand-in engine. Nothing escapes, nothing hangs, and every
piece handed to an engine has something to say."""

from __future__ import annotations

import tempfile
import wave
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bot.errors import UserFacingError
from bot.services.voice.spoken_text import CUT_NOTICE, clean_for_speech
from bot.services.voice.synthesis import SynthesisService, split_sentences, stream_pieces
from tests.fuzz.contract import async_outcome, outcome
from tests.fuzz.strategies import simple, text

MAX_CHARS = 300
# Discord markup that the cleaner rewrites, to be mixed into the messages.
MARKUP = [
    "**", "*", "__", "~~", "||", "`", "```", "> ", "# ", "- ", "<@123>", "<@!45>", "<@&6>",
    "<#7>", "</cmd sub:8>", "<t:1700000000:R>", "<:smile:9>", "<a:wave_hi:10>",
    "[link](https://example.invalid/x)", "https://example.invalid/a?b=c", "www.example.invalid",
    "@everyone", "sooooooo", "!!!!!!", "...", "Dr.", "e.g.", "\n", "\n\n", " ", ",", ";",
]  # fmt: skip
message = st.lists(st.one_of(st.sampled_from(MARKUP), simple, text), max_size=40).map("".join)


@given(message, st.sampled_from(["!", "?", "bot ", "$"]))
def test_clean_for_speech(raw: str, prefix: str) -> None:
    names = {"users": {123: "Ann"}, "roles": {6: "mods"}, "channels": {7: "general"}}
    cleaned = outcome(clean_for_speech, raw, prefix=prefix, max_chars=MAX_CHARS, **names)
    if cleaned is not None:
        assert any(char.isalnum() for char in cleaned)
        assert len(cleaned) <= MAX_CHARS + len(CUT_NOTICE) + 1


@given(st.one_of(message, text, st.integers(1, 5000).map(lambda n: "a, " * n)))
def test_sentence_splitting(raw: str) -> None:
    for split in (split_sentences, stream_pieces):
        pieces = outcome(split, raw)
        assert all(piece and piece == piece.strip() for piece in pieces)


class SilentEngine:
    """Writes a short silent WAV for any text."""

    name = "silent"

    def synthesize(
        self, text: str, language: str, voice: str | None, out_dir: Path, speed: float = 1.0
    ) -> Path:
        assert any(char.isalnum() for char in text)
        path = out_dir / f"tts-silent-{abs(hash(text))}.wav"
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(b"\0\0" * 80)
        return path


async def speak_all(service: SynthesisService, raw: str) -> int:
    clips = 0
    async for clip in service.synthesize_stream(raw, "en-US"):
        clip.path.unlink()
        clips += 1
    await service.close()
    return clips


@given(st.one_of(message, text))
def test_synthesis_stream(raw: str) -> None:
    cleaned = clean_for_speech(raw, prefix="!", max_chars=MAX_CHARS) or raw
    with tempfile.TemporaryDirectory() as folder:
        service = SynthesisService([SilentEngine()], tmp_dir=Path(folder))
        clips = async_outcome(speak_all, service, cleaned)
        if not isinstance(clips, UserFacingError):
            assert clips >= 1
