"""Hostile input through the sandbox (issue #14): every input that once escaped as an
unexpected exception now gets exactly one clear reply, and the bot still answers `!hi`.

The rows of the issue that a user can reach from Discord: `!test` typed in chat (deep
nesting, a 4,301-digit number, a lone surrogate escape in a label, a math-text label for the
confusion matrix), a `!test` CSV file with a field over the csv module's limit, and `!train`
files (deep nesting, a 4,301-digit number, a lone surrogate escape). The `.env` row and the
service-level rows are covered in tests/services/test_hostile_input.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.config import Settings
from bot.core.replies import APOLOGY
from bot.sandbox.runner import sandboxed_bot
from tests.e2e.conftest import E2E
from tests.e2e.test_model import train

GREETING = "Hi owner! Type `!help` to see what I can do."
SHAPES = (
    'Send a JSON string, a list of strings, or a list of objects with "text" and an optional '
    '"label".'
)
# How long to watch for a second reply after the first one.
QUIET_SECONDS = 1.0
TIMEOUT = 60.0


@pytest.fixture
async def env(make_settings: Callable[..., Settings]) -> AsyncIterator[E2E]:
    async with sandboxed_bot(make_settings(TRAIN_COOLDOWN_SECONDS="0")) as (sandbox, bot):
        yield E2E(sandbox, bot)


async def one_reply(env: E2E, text: str, **send: Any) -> dict[str, Any]:
    """Send a message; return the bot's only reply (fail if it sends two, or apologises)."""
    sent = await env.sandbox.send(text, **send)
    channel = int(sent["channel_id"])
    reply = await env.sandbox.wait_for_bot_message(after=sent, channel_id=channel, timeout=TIMEOUT)
    await asyncio.sleep(QUIET_SECONDS)
    later = [m for m in env.sandbox.bot_messages(channel) if int(m["id"]) > int(sent["id"])]
    assert [m["id"] for m in later] == [reply["id"]], [m["content"] for m in later]
    assert reply["content"] != APOLOGY
    return reply


async def still_answers(env: E2E) -> None:
    assert await env.ask_text("!hi") == GREETING


def invalid_data(problem: str) -> str:
    return f"Invalid test data format: {problem}. {SHAPES}"


async def test_hostile_test_data_gets_one_clear_reply(env: E2E) -> None:
    cases = {
        "[" * 1000: invalid_data("nested deeper than 32 levels at line 1, column 33"),
        "9" * 4301: invalid_data("a number is longer than 1000 digits at line 1, column 1"),
        r'[{"text":"hi","label":"\ud83d"}]': invalid_data(
            r"the label of item 1 holds \ud83d, half of a character (a lone surrogate); "
            "remove it or write the whole character"
        ),
    }
    for data, expected in cases.items():
        reply = await one_reply(env, f"!test {data}")
        assert reply["content"] == expected
        await still_answers(env)


async def test_a_test_file_with_a_field_over_the_csv_limit(env: E2E) -> None:
    data = b"text,label\n" + b"a" * 140_000 + b",x\n"
    reply = await one_reply(env, "!test", files=[("check.csv", data)])
    assert reply["content"] == invalid_data("line 2: a value is longer than 131,072 characters")
    await still_answers(env)


def rows_json(last_text: str) -> bytes:
    rows = [("hi", "x"), ("hello", "x"), ("bye", "y"), (last_text, "y")]
    return json.dumps([{"text": t, "label": label} for t, label in rows]).encode()


async def test_hostile_training_files_get_one_clear_reply(env: E2E) -> None:
    cases = {
        b"[" * 1000: "Line 1, column 33: invalid JSON (nested deeper than 32 levels).",
        b'[{"text": "hi", "label": ' + b"9" * 4301 + b"}]": (
            "Line 1, column 26: invalid JSON (a number is longer than 1000 digits)."
        ),
        rows_json("\ud800"): (
            r"Line 1: the text holds \ud800, half of a character (a lone surrogate); "
            "remove it or write the whole character."
        ),
    }
    for data, expected in cases.items():
        reply = await one_reply(env, "!train", files=[("hostile.json", data)])
        assert reply["content"] == expected
        await still_answers(env)
    assert "hostile" not in await env.ask_text("!datasets")


async def test_labels_that_look_like_math_make_a_confusion_matrix(env: E2E) -> None:
    await train(env, "!train smalltalk")
    data = '[{"text": "hello", "label": "$x^$"}, {"text": "bye", "label": "$\\\\frac{$"}]'
    reply = await one_reply(env, f"!test {data}")
    assert "**Accuracy: 0.0%** on 2 labelled items" in reply["content"]
    assert "✗ expected $x^$" in reply["content"]
    [attachment] = reply["attachments"]
    assert attachment["filename"] == "confusion_matrix.png"
    assert env.sandbox.file(attachment).startswith(b"\x89PNG\r\n\x1a\n")
    await still_answers(env)


async def test_a_message_holding_half_a_character_is_still_answered(env: E2E) -> None:
    """Discord's JSON can carry a lone surrogate; feedback and chat with one are stored."""
    reply = await one_reply(env, "!feedback broken \ud800 text")
    assert reply["content"].startswith("Thank you for your feedback")
    listing = await env.ask_text("!feedback list")
    assert "broken \ufffd text" in listing
    await still_answers(env)
