"""`!listen` settings and consent through the sandbox (hearing itself needs the receiver)."""

from __future__ import annotations

from tests.e2e.conftest import E2E


async def test_status_and_opting_out_and_in(e2e: E2E) -> None:
    status = await e2e.ask_text("!listen", author="member")
    assert "Listening: off" in status
    assert "Wake words: `hey bot`" in status
    assert "You: heard (not opted out)" in status

    assert (await e2e.ask_text("!listen optout", author="member")).startswith("Done: I won't")
    assert "You: opted out" in await e2e.ask_text("!listen", author="member")
    assert "You: heard" in await e2e.ask_text("!listen")  # only that user

    forgot = await e2e.ask_text("!forgetme", author="member")
    assert "Your listening choice is gone too" in forgot
    assert "You: heard" in await e2e.ask_text("!listen", author="member")


async def test_wake_words_and_conversation_are_admin_settings(e2e: E2E) -> None:
    added = await e2e.ask_text("!listen wake add ok computer")
    assert added.startswith("Wake words: `hey bot`, `ok computer`")
    assert "`ok computer`" in await e2e.ask_text("!listen wake", author="member")
    refused = await e2e.ask_text("!listen wake add hello there", author="member")
    assert refused == "You don't have permission to use this command."
    assert "needs more than a greeting" in await e2e.ask_text("!listen wake add hey")
    assert "at most 3 words" in await e2e.ask_text("!listen wake add one two three four")
    assert "is not a wake word here" in await e2e.ask_text("!listen wake remove nope")
    assert (await e2e.ask_text("!listen wake reset")).startswith("Wake words: `hey bot`, ")
    on = await e2e.ask_text("!listen conversation on")
    assert on == "Conversation mode is on: I answer everything said in voice."
    assert await e2e.ask_text("!listen conversation maybe") == "Say `on` or `off`, not `maybe`."


async def test_turning_listening_on_needs_an_admin_in_a_voice_channel(e2e: E2E) -> None:
    refused = await e2e.ask_text("!listen on", author="member")
    assert refused == "You don't have permission to use this command."
    assert await e2e.ask_text("!listen on") == "Join a voice channel first; I'll listen there."
    assert await e2e.ask_text("!listen off") == "I wasn't listening."
