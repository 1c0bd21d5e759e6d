"""Audio from users: any bytes under any file name, and real recordings with random damage,
through decoding and `SpeechService.transcribe` with a stand-in engine (no model is loaded).
Each is transcribed or refused with one clear message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.errors import UserFacingError
from bot.services.speech.service import SpeechService
from bot.services.speech.transcript import Transcript
from tests.fixtures.speech import fixture
from tests.fuzz.contract import async_outcome
from tests.fuzz.strategies import mutated, text

# Short recordings keep each example to one quick ffmpeg run.
RECORDINGS = {name: fixture(name) for name in ("hello.wav", "hello.ogg", "hello.mp3")}
MAX_SECONDS = 20
# ffmpeg on damaged input on a shared machine: allow more than for the text parsers.
BOUND = 30.0


class EchoEngine:
    """Answers every piece of audio with the same words, at once."""

    name = "echo"
    holds_gil = False

    def transcribe(self, wav: bytes, language: str) -> str:
        assert wav.startswith(b"RIFF")
        return "hello"


@st.composite
def audio_upload(draw: st.DrawFn) -> tuple[bytes, str]:
    """(bytes, file name): a damaged recording, a recording under another name, or any bytes."""
    name = draw(st.sampled_from(sorted(RECORDINGS)))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        data = draw(st.binary(max_size=2048))
    elif kind == 1:
        data = RECORDINGS[name]
    else:
        data = draw(mutated(RECORDINGS[name]))
    filename = draw(
        st.one_of(
            st.just(name),
            st.sampled_from(["voice.ogg", "a.mp4", "x.png", "noext", ".wav", "a.WAV"]),
            text,
        )
    )
    return data, filename


@given(audio_upload(), st.sampled_from(["en-US", "fr", "x"]))
def test_transcribe_any_audio(sent: tuple[bytes, str], language: str) -> None:
    data, filename = sent
    service = SpeechService([EchoEngine()], max_seconds=MAX_SECONDS)
    result = async_outcome(service.transcribe, data, filename, language, bound=BOUND)
    if not isinstance(result, UserFacingError):
        assert isinstance(result, Transcript)
        assert result.text and result.engine == "echo"
