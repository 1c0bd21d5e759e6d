"""The growing reply of a long transcription (`LiveTranscript`), with a stand-in channel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.cogs import transcribe
from bot.cogs.transcribe import LiveTranscript
from bot.services.speech.transcript import Progress
from tests.e2e.conftest import eventually

FIRST = "The birch canoe slid on the smooth planks."
SECOND = FIRST + " Glue the sheet to the dark blue background."
THIRD = SECOND + " It's easy to tell the depth of a well."


class Reply:
    """A message the bot posted: what the channel shows now, and each version it showed."""

    def __init__(self, content: str) -> None:
        self.content = content
        self.versions = [content]

    async def edit(self, *, content: str, attachments: list[Any] | None = None) -> Reply:
        self.content = content
        self.versions.append(content)
        return self


class Channel:
    """Stands in for the request's context: `answer` posts a reply."""

    def __init__(self) -> None:
        self.reply: Reply | None = None

    async def answer(self, content: str) -> Reply:
        self.reply = Reply(content)
        return self.reply


async def started(channel: Channel) -> tuple[LiveTranscript, Reply]:
    live = LiveTranscript(channel, 600.0)  # type: ignore[arg-type]
    await live.start()
    assert channel.reply is not None
    return live, channel.reply


@pytest.fixture
def short_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcribe, "EDIT_INTERVAL_SECONDS", 0.2)


async def test_the_first_text_is_shown_as_soon_as_it_is_ready() -> None:
    live, reply = await started(Channel())
    assert reply.content == "**Transcript** (0:00 of 10:00, still transcribing…):"
    await live.update(Progress(FIRST, 6.4, 600.0))
    assert reply.content == f"**Transcript** (0:06 of 10:00, still transcribing…): {FIRST}"


async def test_an_update_that_comes_too_soon_is_shown_later_not_lost(short_interval) -> None:
    live, reply = await started(Channel())
    await live.update(Progress(FIRST, 6.4, 600.0))
    await live.update(Progress(SECOND, 55.3, 600.0))  # too soon after the first text
    await live.update(Progress(THIRD, 88.1, 600.0))  # the newest is the one to show
    await eventually(lambda: "depth of a well" in reply.content, timeout=5)
    assert reply.content == f"**Transcript** (1:28 of 10:00, still transcribing…): {THIRD}"
    await live.finish(f"**Transcript:** {THIRD}", None)
    assert reply.versions[-1] == f"**Transcript:** {THIRD}"


async def test_the_final_transcript_replaces_an_update_still_waiting(short_interval) -> None:
    live, reply = await started(Channel())
    await live.update(Progress(FIRST, 6.4, 600.0))
    await live.update(Progress(SECOND, 55.3, 600.0))
    await live.finish(f"**Transcript:** {THIRD}", None)
    await asyncio.sleep(0.5)  # past the interval: nothing waiting shows after the final
    assert reply.versions[-1] == f"**Transcript:** {THIRD}"
