"""Fair limits through the sandbox: bursts pass, floods are refused with a retry time.

"member" is the one user who is not an admin; "owner" and "moderator" are admins.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from bot.sandbox.runner import sandboxed_bot
from bot.sandbox.server import Sandbox
from bot.services.speech import audio
from tests.e2e.conftest import E2E, eventually, job_ended

GUILD = Sandbox.GUILD_ID
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HELLO = (FIXTURES / "hello.ogg").read_bytes()  # about 2.6 s of speech
SAY_REFUSED = re.compile(r"You're sending `!say` very quickly; try again in (\d+) s\.")
AUDIO_REFUSED = re.compile(
    r"That would go over your transcription allowance of 6 s of audio per 15 s; "
    r"try again in (\d+) s\."
)
JOB_STARTED = re.compile(r"Model training started\. Job ID: (?P<id>[0-9a-f]{8})")


def spoke(sandbox: Sandbox, sent: dict[str, Any]) -> bool:
    return (int(sent["id"]), "🔊") in sandbox.reactions


def reply_to(sandbox: Sandbox, sent: dict[str, Any]) -> dict[str, Any] | None:
    """The bot's reply to `sent`, if it has sent one."""
    for message in sandbox.bot_messages():
        if (message.get("message_reference") or {}).get("message_id") == sent["id"]:
            return message
    return None


async def send_voice(sandbox: Sandbox, author: str = "member") -> dict[str, Any]:
    return await sandbox.send(
        files=[("voice-message.ogg", HELLO)], voice_message=True, author=author
    )


async def answer(sandbox: Sandbox, sent: dict[str, Any], timeout: float = 60.0) -> str:
    """The text of the bot's reply to `sent`, once it has come."""
    reply = await sandbox.wait_for_bot_message(
        after=sent,
        predicate=lambda m: (m.get("message_reference") or {}).get("message_id") == sent["id"],
        timeout=timeout,
    )
    return reply["content"]


def is_transcript(text: str) -> bool:
    lowered = text.lower()
    return text.startswith("**Transcript:** ") and "hello" in lowered and "world" in lowered


# ----- !say --------------------------------------------------------------------------------


async def test_three_quick_says_by_a_member_all_play_in_order(e2e: E2E, hear) -> None:
    await e2e.sandbox.join_voice("member")
    words = ["first", "second", "third"]
    sent = []
    for word in words:
        sent.append(await e2e.sandbox.send(f"!say the {word} message", author="member"))
        await asyncio.sleep(0.15)
    heard = []
    for index in range(3):
        said = await e2e.sandbox.voice.wait_for_utterance(GUILD, index=index, timeout=40)
        heard.append(await hear(said.mono16k_wav()))
    for word, text in zip(words, heard, strict=True):
        assert word in text, heard
    assert all(spoke(e2e.sandbox, message) for message in sent)
    assert e2e.sandbox.bot_messages() == []  # no refusal, no error


async def test_a_say_flood_is_refused_with_a_retry_time_and_others_are_answered(
    e2e: E2E,
) -> None:
    await e2e.sandbox.join_voice("member")
    flood = []
    for n in range(30):  # 30 in 5 s
        flood.append(await e2e.sandbox.send(f"!say number {n}", author="member"))
        await asyncio.sleep(5 / 30)
    hi = await e2e.ask("!hi", author="moderator", timeout=10)  # others are answered at once
    assert hi["content"].startswith("Hi moderator!")

    def settled() -> bool:
        return all(spoke(e2e.sandbox, m) or reply_to(e2e.sandbox, m) for m in flood)

    await eventually(settled, timeout=30)
    accepted = [m for m in flood if spoke(e2e.sandbox, m)]
    refusals = [reply_to(e2e.sandbox, m) for m in flood if not spoke(e2e.sandbox, m)]
    # a burst of 5, then one more every 2 s
    assert 6 <= len(accepted) <= 9, len(accepted)
    assert accepted[:5] == flood[:5]
    waits = []
    for refusal in refusals:
        assert refusal is not None
        found = SAY_REFUSED.fullmatch(refusal["content"])
        assert found, refusal["content"]
        waits.append(int(found[1]))
    assert all(1 <= wait <= 2 for wait in waits), waits

    # the refusals cost nothing: waiting the time the last one gave is enough
    await asyncio.sleep(waits[-1])
    again = await e2e.sandbox.send("!say once more", author="member")
    await eventually(lambda: spoke(e2e.sandbox, again))
    await e2e.ask("!stop")


async def test_admins_have_no_say_limit_but_the_queue_has_a_cap(make_settings) -> None:
    async with sandboxed_bot(make_settings(SAY_BURST="1", SAY_QUEUE_MAX="2")) as (sb, bot):
        await sb.join_voice("owner")
        long = "this is a fairly long sentence to keep the voice channel busy for a while"
        sent = [await sb.send(f"!say {long} {n}") for n in range(4)]
        await eventually(lambda: all(spoke(sb, m) or reply_to(sb, m) for m in sent), 30)
        assert [spoke(sb, m) for m in sent].count(True) == 2  # a burst of 1 does not apply
        for message in sent:
            if not spoke(sb, message):
                assert reply_to(sb, message)["content"] == (
                    "The voice queue is full (2 items); try again when it has played, "
                    "or `!stop` it."
                )
        await E2E(sb, bot).ask("!stop")
        after_stop = await sb.send("!say hello")
        await eventually(lambda: spoke(sb, after_stop))
        await E2E(sb, bot).ask("!stop")


# ----- transcription -----------------------------------------------------------------------


async def test_six_voice_messages_back_to_back_all_get_transcripts_in_order(e2e: E2E) -> None:
    sent = [await send_voice(e2e.sandbox) for _ in range(6)]
    await eventually(lambda: all(reply_to(e2e.sandbox, m) for m in sent), timeout=180)
    replies = [reply_to(e2e.sandbox, m) for m in sent]
    for reply in replies:
        assert is_transcript(reply["content"]), reply["content"]
    ids = [int(reply["id"]) for reply in replies]
    assert ids == sorted(ids)  # posted in the order the messages were sent


async def test_an_audio_flood_is_refused_with_a_retry_time_and_failures_cost_nothing(
    make_settings,
) -> None:
    settings = make_settings(TRANSCRIBE_BUDGET_SECONDS="6", TRANSCRIBE_WINDOW_SECONDS="15")
    async with sandboxed_bot(settings) as (sandbox, bot):
        env = E2E(sandbox, bot)
        budget = bot.get_cog("Transcribe").budget
        member = sandbox.user("member").id
        silence = audio.to_wav(audio.AudioSegment.silent(3000, frame_rate=16000))
        failed = await sandbox.send(files=[("silence.wav", silence)], author="member")
        assert await answer(sandbox, failed) == "I couldn't hear any words in that audio."
        assert budget.used(member) == 0  # a file with no speech costs nothing

        first, second, third = [await send_voice(sandbox) for _ in range(3)]
        # meanwhile others are answered, and admins have no budget
        by_admin = [await send_voice(sandbox, author="owner") for _ in range(3)]
        assert (await env.ask_text("!hi", author="moderator")).startswith("Hi moderator!")
        assert is_transcript(await answer(sandbox, first))
        assert is_transcript(await answer(sandbox, second))
        refusal = await answer(sandbox, third)
        found = AUDIO_REFUSED.fullmatch(refusal)
        assert found, refusal
        wait = int(found[1])
        assert 1 <= wait <= 15

        # the refusal cost nothing: after the time it named, the same audio goes through
        await asyncio.sleep(wait)
        retried = await send_voice(sandbox)
        for message in by_admin:
            assert is_transcript(await answer(sandbox, message))
        assert is_transcript(await answer(sandbox, retried))


# ----- !train ------------------------------------------------------------------------------


async def test_an_admin_corrects_a_reply_then_trains_right_away(e2e: E2E) -> None:
    hi = await e2e.ask("!hi")
    assert (await e2e.ask_text(f"!correct {hi['id']} Hello there!")).startswith("Thanks")
    first = await e2e.ask_text("!train", timeout=60)
    assert JOB_STARTED.match(first), first
    second = await e2e.ask_text("!train", timeout=60)  # and again: no cooldown, it queues
    assert JOB_STARTED.match(second), second
    for text in (first, second):
        job_id = JOB_STARTED.match(text)["id"]
        await job_ended(e2e.bot, job_id)
