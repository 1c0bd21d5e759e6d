"""The console's commands for trying read aloud without a token: what the user types, what
they see, and what the sandbox then holds. The console runs on a sandbox with no bot here
(tests/e2e/test_console.py drives the whole `python -m bot`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sandbox.console import Console
from bot.sandbox.server import Sandbox


class Seen(Console):
    """The console with what it prints kept as lines."""

    def __init__(self, sandbox: Sandbox, out_dir: Path) -> None:
        super().__init__(sandbox, None, out_dir)
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        self.lines.append(text)

    async def type(self, line: str) -> str:
        """Handle `line` as typed; what the console printed for it."""
        before = len(self.lines)
        await self.handle(line)
        return "\n".join(self.lines[before:])


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Seen]:
    async with Sandbox() as sandbox:
        yield Seen(sandbox, tmp_path)


def id_of(printed: str) -> int:
    """The id a printed message starts with: `[123] owner: hi`."""
    return int(printed.split("]")[0].lstrip("["))


async def test_edit_and_delete_your_own_message(console: Seen) -> None:
    sandbox = console.sandbox
    printed = await console.type("hello there")
    message_id = id_of(printed)
    assert printed == f"[{message_id}] owner: hello there"
    assert await console.type(f"/edit {message_id} hello again") == (
        f"[{message_id}] owner: (edited) hello again"
    )
    assert sandbox.messages[message_id]["content"] == "hello again"
    assert sandbox.messages[message_id]["edited_timestamp"] is not None
    assert await console.type(f"/edit {message_id}") == "  usage: /edit ID text"
    assert await console.type(f"/delete {message_id}") == f"  owner deleted message {message_id}"
    assert message_id not in sandbox.messages
    assert await console.type(f"/delete {message_id}") == f"  there is no message {message_id}"
    assert await console.type("/edit 42 text") == "  there is no message 42"
    assert await console.type("/edit last text") == "  unknown console command; /help lists them"


async def test_someone_elses_message_is_not_yours_to_change(console: Seen) -> None:
    message_id = id_of(await console.type("mine"))
    await console.type("/as member")
    assert await console.type(f"/edit {message_id} theirs") == (
        f"  message {message_id} is not yours, member"
    )
    assert await console.type(f"/delete {message_id}") == (
        f"  message {message_id} is not yours, member"
    )
    assert console.sandbox.messages[message_id]["content"] == "mine"


async def test_nick_sets_and_removes_your_nickname_in_this_server(console: Seen) -> None:
    sandbox = console.sandbox
    events: list[tuple[str, dict]] = []
    sandbox.listeners.append(lambda event, data: events.append((event, data)))
    assert await console.type("/nick Boss") == "  owner is now called Boss in Sandbox"
    assert events[-1][0] == "GUILD_MEMBER_UPDATE" and events[-1][1]["nick"] == "Boss"
    sent = await sandbox.send("hi")
    assert sent["member"]["nick"] == "Boss"
    assert await console.type("/nick off") == "  owner has no nickname in Sandbox now"
    assert events[-1][1]["nick"] is None
    await console.type("/server second")
    assert await console.type("/nick Al") == "  alice is now called Al in Second"
    assert sandbox.world.nicks == {(sandbox.SECOND_GUILD_ID, sandbox.user("alice").id): "Al"}


async def test_vc_types_into_the_voice_channels_text_chat(console: Seen) -> None:
    sandbox = console.sandbox
    printed = await console.type("/vc read this aloud")
    message_id = id_of(printed)
    assert printed == f"[{message_id}] (voice chat) owner: read this aloud"
    message = sandbox.messages[message_id]
    assert int(message["channel_id"]) == sandbox.VOICE_CHANNEL_ID
    assert message["author"]["username"] == "owner"


async def test_someone_in_voice_types_a_plain_line(console: Seen) -> None:
    sandbox = console.sandbox
    await console.type("/as member")
    assert await console.type("/voice join") == "  member joined the voice channel"
    assert sandbox.voice_channel_of("member") == sandbox.VOICE_CHANNEL_ID
    message_id = id_of(await console.type("hi from voice"))
    assert sandbox.messages[message_id]["author"]["username"] == "member"


async def test_the_bots_answer_in_voice_chat_is_marked(console: Seen) -> None:
    sandbox = console.sandbox
    bot_message = sandbox.store.message(sandbox.bot_user, sandbox.VOICE_CHANNEL_ID, "spoken")
    await sandbox.publish("MESSAGE_CREATE", bot_message)
    assert console.lines[-1] == f"[{bot_message['id']}] (voice chat) bot: spoken"


async def test_webhook_posts_in_general(console: Seen) -> None:
    sandbox = console.sandbox
    printed = await console.type("/webhook the feed says hi")
    message_id = id_of(printed)
    assert printed == f"[{message_id}] webhook: the feed says hi"
    message = sandbox.messages[message_id]
    assert message["webhook_id"] and message["author"]["bot"] and "member" not in message
    assert int(message["channel_id"]) == sandbox.TEXT_CHANNEL_ID


async def test_help_lists_the_new_commands(console: Seen) -> None:
    shown = await console.type("/help")
    for command in ("/edit ID text", "/delete ID", "/nick NAME|off", "/vc text", "/webhook"):
        assert command in shown
