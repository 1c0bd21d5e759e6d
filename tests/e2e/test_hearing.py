"""Talking to the bot: `!listen on`, then users speak in the sandbox's voice channel and the bot
captions them, answers wake words out loud and stops talking when interrupted."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.cogs._receiver import ListeningVoiceClient
from bot.sandbox.server import Sandbox
from tests.e2e.conftest import E2E, eventually

GUILD = Sandbox.GUILD_ID


async def speech(e2e: E2E, text: str) -> bytes:
    """`text` spoken by the bot's own first voice (piper), as WAV bytes."""
    spoken = await e2e.bot.services.synthesis.synthesize(text, "en-US")
    try:
        return spoken.path.read_bytes()
    finally:
        spoken.path.unlink(missing_ok=True)


def voice_client(e2e: E2E) -> ListeningVoiceClient:
    client = e2e.bot.get_guild(GUILD).voice_client
    assert isinstance(client, ListeningVoiceClient)
    return client


async def listen_on(e2e: E2E, *others: str) -> dict[str, Any]:
    await e2e.sandbox.join_voice("owner")
    for name in others:
        await e2e.sandbox.join_voice(name)
    sent = await e2e.sandbox.send("!listen on")
    reply = await e2e.sandbox.wait_for_bot_message(after=sent, timeout=30)
    await eventually(lambda: not e2e.sandbox.bot_self_deaf(), 15)
    return reply


def captions(e2e: E2E, after: dict[str, Any]) -> list[str]:
    """Bot messages in the caption channel (the text channel) after `after`, oldest first."""
    found = e2e.sandbox.bot_messages(int(after["channel_id"]))
    return [m["content"] for m in found if int(m["id"]) > int(after["id"])]


async def test_listen_on_announces_and_undeafens_and_off_deafens(e2e: E2E) -> None:
    reply = await listen_on(e2e)
    text = reply["content"]
    assert text.startswith("🎙️ I'm now listening in **Voice**")
    assert f"<#{reply['channel_id']}>" in text and "`!listen optout`" in text
    assert not e2e.sandbox.bot_self_deaf() and voice_client(e2e).receiving
    assert await e2e.ask_text("!listen off") == "I stopped listening."
    await eventually(e2e.sandbox.bot_self_deaf, 15)
    assert not voice_client(e2e).receiving


async def test_a_sentence_is_captioned_with_the_speakers_name(e2e: E2E) -> None:
    reply = await listen_on(e2e)
    await e2e.sandbox.speak("owner", await speech(e2e, "The weather is lovely today."))
    await eventually(lambda: bool(captions(e2e, reply)), 30)
    caption = captions(e2e, reply)[0]
    assert caption.startswith("**owner:** ") and "weather" in caption.lower()
