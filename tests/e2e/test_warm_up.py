"""Warm at start: the first engines load in the background, the gateway never waits for them,
and a message that arrives while they load is still answered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.sandbox.runner import sandboxed_bot
from bot.services.speech.whisper import WhisperEngine
from tests.e2e.conftest import eventually

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def slow_whisper_load(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Whisper takes 3 s longer to load than it does; returns when each load finished."""
    loaded: list[float] = []
    real = WhisperEngine._load

    def slow(self: WhisperEngine, source: str):  # type: ignore[no-untyped-def]
        time.sleep(3)
        model = real(self, source)
        loaded.append(time.monotonic())
        return model

    monkeypatch.setattr(WhisperEngine, "_load", slow)
    return loaded


async def test_a_voice_message_during_warm_up_is_answered(make_settings, slow_whisper_load) -> None:
    settings = make_settings(WARM_UP="on")
    async with sandboxed_bot(settings) as (sandbox, bot):
        # READY came while whisper was still loading: loading never holds up the gateway.
        assert bot.warming is not None and not bot.warming.done()
        assert not slow_whisper_load
        hello = (FIXTURES / "hello.ogg").read_bytes()
        sent = await sandbox.send(files=[("voice.ogg", hello)], voice_message=True)
        reply = await sandbox.wait_for_bot_message(after=sent, timeout=60)
        assert reply["content"].startswith("**Transcript:** ")
        assert "hello" in reply["content"].lower()
        assert len(slow_whisper_load) == 1  # one load, shared by the warm-up and the message
        await eventually(bot.warming.done, timeout=60)
        assert bot.warming.exception() is None


async def test_warm_up_loads_whisper_and_piper_before_any_request(make_settings) -> None:
    settings = make_settings(WARM_UP="on", STT_ENGINES="whisper,google", TTS_ENGINES="piper,gtts")
    async with sandboxed_bot(settings) as (_sandbox, bot):
        assert bot.warming is not None
        await eventually(bot.warming.done, timeout=90)
        whisper = bot.services.speech._chain.get("whisper")
        piper = bot.services.synthesis.engine("piper")
        assert whisper is not None and whisper.english.loaded
        assert not whisper.multilingual.loaded  # an English bot never pays for it
        assert piper is not None and piper._loaded


async def test_warm_up_loads_the_multilingual_model_when_the_default_language_needs_it(
    make_settings,
) -> None:
    settings = make_settings(WARM_UP="on", LANGUAGE="fr-FR")
    async with sandboxed_bot(settings) as (_sandbox, bot):
        assert bot.warming is not None
        await eventually(bot.warming.done, timeout=90)
        whisper = bot.services.speech._chain.get("whisper")
        assert whisper.multilingual.loaded and not whisper.english.loaded


async def test_online_engines_named_first_have_nothing_to_warm(make_settings) -> None:
    settings = make_settings(WARM_UP="on", STT_ENGINES="google,whisper", TTS_ENGINES="gtts,piper")
    async with sandboxed_bot(settings) as (_sandbox, bot):
        assert bot.warming is not None
        await eventually(bot.warming.done, timeout=30)
        assert not bot.services.speech._chain.get("whisper").english.loaded  # on first use
        assert not bot.services.synthesis.engine("piper")._loaded
        assert not bot.services.speech._chain.is_resting("google")  # not contacted


async def test_warm_up_can_be_turned_off(make_settings) -> None:
    async with sandboxed_bot(make_settings(WARM_UP="off")) as (_sandbox, bot):
        assert bot.warming is None
