"""!feedback, !correct and !forgetme through the sandbox, and a correction the model learns."""

from __future__ import annotations

import asyncio
import csv
import io
import re

import pytest

from bot.core.checks import NO_PERMISSION
from tests.e2e.conftest import E2E, eventually
from tests.e2e.test_model import FIRST_TRAINING, TRAINING_TIMEOUT, train

THANKS = "Thank you for your feedback. We will use it to improve the model."
USAGE = (
    "Reply to one of my messages with `!correct better answer`, or give its id: "
    "`!correct MESSAGE_ID better answer`."
)
UNKNOWN_MESSAGE_ID = 1_100_000_000_000_999_999


def exported_rows(env: E2E, reply: dict) -> list[dict[str, str]]:
    [attachment] = reply["attachments"]
    assert attachment["filename"] == "feedback.csv"
    return list(csv.DictReader(io.StringIO(env.sandbox.file(attachment).decode("utf-8"))))


async def chat_reply(env: E2E, text: str, author: str = "owner") -> dict:
    """Ask the model in the chat channel; the first question also waits for the first training."""
    sent = await env.sandbox.send(text, author=author)
    reply = await env.sandbox.wait_for_bot_message(
        after=sent,
        channel_id=int(sent["channel_id"]),
        predicate=lambda m: not FIRST_TRAINING.fullmatch(m["content"]),
        timeout=TRAINING_TIMEOUT,
    )
    assert reply["message_reference"]["message_id"] == sent["id"]
    return reply


# ----- !feedback ---------------------------------------------------------------------------


async def test_feedback_is_thanked(e2e: E2E) -> None:
    assert await e2e.ask_text("!feedback The answers about the weather are great") == THANKS
    assert await e2e.ask_text("!feedback needs more jokes", author="member") == THANKS
    assert await e2e.ask_text("!feedback works in DMs too", dm=True) == THANKS


@pytest.mark.parametrize("text", ["", "   "], ids=["nothing", "spaces"])
async def test_empty_feedback_says_what_to_write(e2e: E2E, text: str) -> None:
    assert await e2e.ask_text(f"!feedback{text}") == (
        "Write your feedback after the command, like `!feedback The bot answers too slowly`."
    )
    assert await e2e.ask_text("!feedback list") == "There is no feedback yet."


async def test_oversized_feedback_is_refused(e2e: E2E) -> None:
    assert await e2e.ask_text("!feedback " + "a" * 1001) == (
        "Your feedback is too long (1001 characters; the limit is 1000). Please shorten it or "
        "send it in parts."
    )
    assert await e2e.ask_text("!feedback " + "b" * 1000) == THANKS
    rows = exported_rows(e2e, await e2e.ask("!feedback export"))
    assert [row["text"] for row in rows] == ["b" * 1000]


async def test_admins_list_and_export_feedback(e2e: E2E) -> None:
    await e2e.ask_text("!feedback first, from the owner")
    await e2e.ask_text("!feedback second, from a member", author="member")
    listing = (await e2e.ask_text("!feedback list")).splitlines()
    member, owner = e2e.sandbox.user("member").id, e2e.sandbox.user("owner").id
    assert listing[0] == "**Latest 2 feedback entries**"
    assert re.fullmatch(
        rf"#2 \d{{4}}-\d\d-\d\d.\d\d:\d\d <@{member}>: second, from a member", listing[1]
    )
    assert re.fullmatch(rf"#1 .* <@{owner}>: first, from the owner", listing[2])
    latest = (await e2e.ask_text("!feedback list 1", author="moderator")).splitlines()
    assert latest[0] == "**Latest 1 feedback entries**" and latest[1] == listing[1]

    reply = await e2e.ask("!feedback export")
    assert reply["content"] == "All feedback as CSV:"
    rows = exported_rows(e2e, reply)
    assert [(row["user_id"], row["text"]) for row in rows] == [
        (str(owner), "first, from the owner"),
        (str(member), "second, from a member"),
    ]
    assert all(row["created_at"] and row["channel_id"] for row in rows)


@pytest.mark.parametrize("action", ["list", "export"])
async def test_member_may_not_list_or_export_feedback(e2e: E2E, action: str) -> None:
    await e2e.ask_text("!feedback something private")
    reply = await e2e.ask(f"!feedback {action}", author="member")
    assert reply["content"] == NO_PERMISSION and reply["attachments"] == []


async def test_fifty_simultaneous_feedbacks_are_all_kept(e2e: E2E) -> None:
    authors = ("owner", "moderator", "member")
    sent = await asyncio.gather(
        *(e2e.sandbox.send(f"!feedback note {i}", author=authors[i % 3]) for i in range(50))
    )

    def all_thanked() -> bool:
        answered = {
            m["message_reference"]["message_id"]
            for m in e2e.sandbox.bot_messages()
            if m["content"] == THANKS and "message_reference" in m
        }
        return all(message["id"] in answered for message in sent)

    await eventually(all_thanked, timeout=60)
    rows = exported_rows(e2e, await e2e.ask("!feedback export", timeout=60))
    assert sorted(row["text"] for row in rows) == sorted(f"note {i}" for i in range(50))


# ----- !correct ----------------------------------------------------------------------------


async def test_correct_by_id_and_as_a_reply(e2e: E2E) -> None:
    hi = await e2e.ask("!hi")
    by_id = await e2e.ask_text(f"!correct {hi['id']} Hello there, owner!")
    assert by_id == (
        "Thanks, your correction is saved. That message wasn't a chat reply, so the training "
        "data is unchanged."
    )
    as_reply = await e2e.ask_text("!correct Good day!", reply_to=int(hi["id"]), author="member")
    assert as_reply == by_id


async def test_correct_an_unknown_message(e2e: E2E) -> None:
    assert (
        await e2e.ask_text(f"!correct {UNKNOWN_MESSAGE_ID} better answer") == "Message not found."
    )


async def test_correct_a_message_that_is_not_the_bots(e2e: E2E) -> None:
    mine = await e2e.sandbox.send("a message from a user", author="member")
    for text, extra in (
        (f"!correct {mine['id']} better", {}),
        ("!correct better", {"reply_to": int(mine["id"])}),
    ):
        assert await e2e.ask_text(text, **extra) == (
            "That message isn't one of mine; I can only correct my own replies."
        )


async def test_correct_without_text_shows_the_usage(e2e: E2E) -> None:
    hi = await e2e.ask("!hi")
    assert await e2e.ask_text("!correct") == USAGE
    assert await e2e.ask_text("!correct just words") == USAGE
    assert await e2e.ask_text(f"!correct {hi['id']}") == f"Write the corrected reply too. {USAGE}"
    assert await e2e.ask_text("!correct", reply_to=int(hi["id"])) == (
        f"Write the corrected reply too. {USAGE}"
    )


async def test_a_correction_changes_the_answer_after_the_next_training(e2e: E2E) -> None:
    await e2e.ask_text("!chat on")
    question = "what do you like to eat"
    before = await chat_reply(e2e, question, author="member")
    assert before["content"] != "I love pizza"

    confirmation = await e2e.ask_text(
        "!correct I love pizza", reply_to=int(before["id"]), author="member"
    )
    assert confirmation == (
        "Thanks, your correction is saved and added to the training data of dataset "
        "`smalltalk`: “what do you like to eat” → “I love pizza”. It takes effect after the "
        "next `!train smalltalk`."
    )
    assert "`smalltalk` (sample): 147 rows, 16 labels, 1 corrections" in await e2e.ask_text(
        "!datasets"
    )
    assert (await chat_reply(e2e, question))["content"] == before["content"]  # not trained yet

    await train(e2e, "!train")
    assert (await chat_reply(e2e, question))["content"] == "I love pizza"
    assert (await chat_reply(e2e, "What do you like to eat?"))["content"] == "I love pizza"
    assert (await chat_reply(e2e, "hello"))["content"].startswith("Hello! Nice to see you.")


# ----- !forgetme ---------------------------------------------------------------------------


async def test_forgetme_deletes_the_users_rows_and_only_theirs(e2e: E2E) -> None:
    await e2e.ask_text("!chat on")
    await e2e.ask_text("!feedback from the owner")
    await e2e.ask_text("!feedback from the member", author="member")
    answer = await chat_reply(e2e, "hello", author="member")
    await e2e.ask_text("!correct Hi member!", reply_to=int(answer["id"]), author="member")

    assert await e2e.ask_text("!forgetme", author="member") == (
        "Done: I deleted 3 row(s) about you (1 feedback, 1 corrections, 1 logged messages)."
    )
    assert await e2e.ask_text("!forgetme", author="member") == (
        "Done: I deleted 0 row(s) about you (0 feedback, 0 corrections, 0 logged messages)."
    )
    rows = exported_rows(e2e, await e2e.ask("!feedback export"))
    assert [row["text"] for row in rows] == ["from the owner"]
    # the lesson the member's correction added to the training data is gone too
    datasets = await e2e.ask_text("!datasets")
    assert "`smalltalk` (sample): 147 rows, 16 labels ← active here" in datasets, datasets


async def test_a_correction_teaches_the_dataset_that_made_the_reply(e2e: E2E) -> None:
    await e2e.ask_text("!chat on")
    answer = await chat_reply(e2e, "hello")
    await train(e2e, "!train other\nhi there | greet\nhello you | greet\nbye | leave\nciao | leave")
    assert (await e2e.ask_text("!select_dataset other")).startswith("Dataset `other` selected")
    confirmation = await e2e.ask_text("!correct Howdy!", reply_to=int(answer["id"]))
    assert "training data of dataset `smalltalk`" in confirmation
    datasets = await e2e.ask_text("!datasets")
    assert "`smalltalk` (sample): 147 rows, 16 labels, 1 corrections" in datasets
    assert "`other`: 4 rows, 2 labels ←" in datasets


async def test_forgetme_also_forgets_corrections_others_made_of_replies_to_you(e2e: E2E) -> None:
    await e2e.ask_text("!chat on")
    answer = await chat_reply(e2e, "hello", author="member")
    await e2e.ask_text("!correct Hi member!", reply_to=int(answer["id"]))  # by the owner
    assert "1 corrections" in await e2e.ask_text("!datasets")
    text = await e2e.ask_text("!forgetme", author="member")
    assert text == (
        "Done: I deleted 2 row(s) about you (0 feedback, 1 corrections, 1 logged messages)."
    )
    assert "corrections" not in await e2e.ask_text("!datasets")


async def test_feedback_list_takes_any_count(e2e: E2E) -> None:
    await e2e.ask_text("!feedback one")
    text = await e2e.ask_text("!feedback list 5000")
    assert text.startswith("**Latest 1 feedback entries**")
