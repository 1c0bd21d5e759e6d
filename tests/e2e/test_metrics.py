"""The voice and listening metrics through the sandbox (issue #21): what a user does moves
the bot's counters in `bot.metrics.REGISTRY` (the bot runs in this process)."""

from __future__ import annotations

from bot.metrics import REGISTRY
from bot.sandbox.server import Sandbox
from tests.e2e.conftest import E2E, eventually
from tests.e2e.test_hearing import captions, listen_on, speech

GUILD = Sandbox.GUILD_ID


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def total(name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels` (any other labels)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_say_observes_its_first_audio_and_the_connection_is_counted(e2e: E2E) -> None:
    connections = value("voicechat_voice_connections")
    first_audio = value("voicechat_say_first_audio_seconds_count")
    waited = value("voicechat_say_first_audio_seconds_sum")
    await e2e.sandbox.join_voice("owner")
    await e2e.sandbox.send("!say hello")
    await e2e.sandbox.voice.wait_for_utterance(GUILD, timeout=30)
    assert value("voicechat_voice_connections") == connections + 1
    assert value("voicechat_say_first_audio_seconds_count") == first_audio + 1
    assert 0 < value("voicechat_say_first_audio_seconds_sum") - waited < 30
    assert await e2e.ask_text("!leave") == "Left **Voice**."
    await eventually(lambda: value("voicechat_voice_connections") == connections)
    assert value("voicechat_voice_queue_length") == 0


async def test_a_spoken_sentence_counts_one_caption_and_its_latency(e2e: E2E) -> None:
    captioned = value("voicechat_listening_utterances_total", outcome="captioned")
    latency = value("voicechat_caption_latency_seconds_count")
    latency_sum = value("voicechat_caption_latency_seconds_sum")
    heard = total("voicechat_transcriptions_total", engine="whisper", outcome="ok")
    reply = await listen_on(e2e)
    await e2e.sandbox.speak("owner", await speech(e2e, "The weather is lovely today."))
    await eventually(lambda: bool(captions(e2e, reply)), 30)
    await eventually(
        lambda: value("voicechat_listening_utterances_total", outcome="captioned") > captioned
    )
    assert value("voicechat_listening_utterances_total", outcome="captioned") == captioned + 1
    assert value("voicechat_caption_latency_seconds_count") == latency + 1
    assert 0 < value("voicechat_caption_latency_seconds_sum") - latency_sum < 30
    assert total("voicechat_transcriptions_total", engine="whisper", outcome="ok") == heard + 1
