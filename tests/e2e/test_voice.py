"""Voice through the sandbox's voice server: what the bot says arrives as real audio."""

from __future__ import annotations

import re

from bot.cogs.voice import BOT_NOT_IN_VOICE, NOT_IN_VOICE
from bot.core.checks import NO_PERMISSION
from bot.sandbox.server import Sandbox
from tests.e2e.conftest import E2E, eventually

GUILD = Sandbox.GUILD_ID


async def test_join_and_leave(e2e: E2E) -> None:
    assert await e2e.ask_text("!join") == NOT_IN_VOICE
    assert await e2e.ask_text("!leave") == BOT_NOT_IN_VOICE
    await e2e.sandbox.join_voice("owner")
    assert await e2e.ask_text("!join") == "Joined **Voice**."
    assert e2e.sandbox.bot_voice_channel() == e2e.sandbox.VOICE_CHANNEL_ID
    assert await e2e.ask_text("!leave") == "Left **Voice**."
    await eventually(lambda: e2e.sandbox.bot_voice_channel() is None)
    assert await e2e.ask_text("!leave") == BOT_NOT_IN_VOICE


async def test_say_is_heard_in_the_voice_channel(e2e: E2E, hear) -> None:
    await e2e.sandbox.join_voice("owner")
    sent = await e2e.sandbox.send("!say hello world")
    said = await e2e.sandbox.voice.wait_for_utterance(GUILD, timeout=30)
    assert (int(sent["id"]), "🔊") in e2e.sandbox.reactions
    reference = await e2e.bot.services.synthesis.synthesize("Hello world.", "en-US")
    assert abs(said.duration - reference.duration_seconds) <= 0.25 * reference.duration_seconds
    heard = await hear(said.mono16k_wav())
    assert "hello" in heard and "world" in heard


async def test_say_needs_the_author_in_voice_and_something_to_say(e2e: E2E) -> None:
    assert await e2e.ask_text("!say hello") == NOT_IN_VOICE
    await e2e.sandbox.join_voice("owner")
    assert await e2e.ask_text("!say ```code only```") == "There is nothing to say in that text."
    assert await e2e.ask_text("!say") == "Missing `text`. Usage: `!say <text>`"


async def test_five_quick_says_play_in_order(e2e: E2E, hear) -> None:
    await e2e.sandbox.join_voice("owner")
    # espeak says a text the same way every time; piper varies (whisper once heard its
    # "the fourth message" as "before its message"): this test is about the order.
    assert await e2e.ask_text("!voice engine espeak") == "Speech engine set to `espeak`."
    words = ["first", "second", "third", "fourth", "fifth"]
    spelled = {"first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th"}
    for word in words:
        await e2e.sandbox.send(f"!say the {word} message")
    heard = []
    for index in range(5):
        said = await e2e.sandbox.voice.wait_for_utterance(GUILD, index=index, timeout=40)
        heard.append(await hear(said.mono16k_wav()))
    for word, text in zip(words, heard, strict=True):
        assert word in text or spelled[word] in text, heard  # whisper may write "4th"
    assert not [m for m in e2e.sandbox.bot_messages() if "wrong" in m["content"]]


async def test_stop_clears_the_queue_and_skip_says_when_idle(e2e: E2E) -> None:
    await e2e.sandbox.join_voice("owner")
    assert await e2e.ask_text("!skip") == "Nothing is playing."
    for n in range(4):
        await e2e.sandbox.send(f"!say this is a fairly long sentence number {n} to keep talking")
    await eventually(lambda: e2e.sandbox.voice.first_packet_time(GUILD) is not None, 30)
    text = await e2e.ask_text("!stop")
    assert re.fullmatch(r"Stopped; [1-4] item\(s\) removed\.", text)


async def test_auto_leave_when_only_bots_remain(e2e: E2E) -> None:
    await e2e.sandbox.join_voice("owner")
    await e2e.ask("!join")
    await e2e.sandbox.leave_voice("owner")
    await eventually(lambda: e2e.sandbox.bot_voice_channel() is None)
    await eventually(lambda: not e2e.bot.voice_clients)


async def test_auto_leave_after_silence(make_settings, tmp_path) -> None:
    from bot.sandbox.runner import sandboxed_bot

    async with sandboxed_bot(make_settings(VOICE_IDLE_SECONDS="5")) as (sandbox, bot):
        env = E2E(sandbox, bot)
        await sandbox.join_voice("owner")
        assert await env.ask_text("!join") == "Joined **Voice**."
        await eventually(lambda: sandbox.bot_voice_channel() is None, timeout=15)


async def test_dropped_connection_is_cleaned_up_and_the_bot_reconnects(e2e: E2E, hear) -> None:
    await e2e.sandbox.join_voice("owner")
    await e2e.ask("!join")
    await e2e.sandbox.drop_bot_voice()
    await eventually(lambda: not e2e.bot.voice_clients)
    await e2e.sandbox.send("!say hello again")
    said = await e2e.sandbox.voice.wait_for_utterance(GUILD, timeout=30)
    assert "hello" in await hear(said.mono16k_wav())
    assert e2e.sandbox.bot_voice_channel() == e2e.sandbox.VOICE_CHANNEL_ID


async def test_voice_settings_admin_only(e2e: E2E) -> None:
    assert await e2e.ask_text("!voice engine espeak", author="member") == NO_PERMISSION
    assert await e2e.ask_text("!voice engine espeak") == "Speech engine set to `espeak`."
    assert "Engine: `espeak`" in await e2e.ask_text("!voice", author="member")
    assert (await e2e.ask_text("!voice engine nope")).startswith("Unknown engine `nope`.")
    assert await e2e.ask_text("!voice autospeak off") == "Spoken replies are now off."
    assert "Spoken replies: off" in await e2e.ask_text("!voice")
    assert await e2e.ask_text("!voice autospeak maybe") == "Say `on` or `off`, not `maybe`."


async def test_chat_reply_to_a_user_in_voice_is_spoken(e2e: E2E, hear) -> None:
    await e2e.ask("!chat on")
    await e2e.sandbox.join_voice("owner")
    sent = await e2e.sandbox.send("hello")
    reply = await e2e.sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: m["content"].startswith("Hello!"), timeout=60
    )
    heard = ""
    for index in range(3):  # one utterance per sentence when the pause between them is long
        said = await e2e.sandbox.voice.wait_for_utterance(GUILD, index=index, timeout=30)
        heard += " " + await hear(said.mono16k_wav())
        if "nice to see you" in heard:
            break
    assert "hello" in heard and "nice to see you" in heard, (reply["content"], heard)
    assert e2e.sandbox.bot_voice_channel() == e2e.sandbox.VOICE_CHANNEL_ID


async def test_member_not_in_voice_gets_text_only(e2e: E2E) -> None:
    await e2e.ask("!chat on")
    sent = await e2e.sandbox.send("hello")
    await e2e.sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: m["content"].startswith("Hello!"), timeout=60
    )
    assert e2e.sandbox.bot_voice_channel() is None
    assert e2e.sandbox.voice.utterances(GUILD) == []


async def test_voice_settings_only_in_a_server(e2e: E2E) -> None:
    text = await e2e.ask_text("!voice autospeak off", dm=True)
    assert text == "That command works only in a server channel."
