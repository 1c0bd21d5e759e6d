"""The owners' `--all` / `--server ID` and `server:`, parsed once (`core.scope_option`) for
every command that takes them: the same replies with `!` and `/`, wherever the flag stands."""

from __future__ import annotations

import pytest

from bot.core.checks import NO_PERMISSION, OWNERS_ONLY, OWNERS_ONLY_OPTION
from tests.e2e.conftest import E2E
from tests.e2e.test_slash import private

NOT_A_SERVER = "`nowhere` is not a server."
SCOPED = [
    "datasets",
    "jobs",
    "job abc123",
    "models",
    "getfile datasets/x.csv",
    "archive x",
    "feedback list",
    "feedback export",
]


@pytest.mark.parametrize("command", SCOPED)
async def test_a_bad_server_gets_one_clear_reply(e2e: E2E, command: str) -> None:
    text = await e2e.ask_text(f"!{command} --server nowhere")
    assert text.startswith(NOT_A_SERVER) and "Usage" not in text, text


@pytest.mark.parametrize("command", SCOPED)
async def test_members_may_not_widen_the_scope(e2e: E2E, command: str) -> None:
    text = await e2e.ask_text(f"!{command} --all", author="moderator")
    assert text == OWNERS_ONLY
    admins_only = command.startswith(("getfile", "archive", "feedback"))
    expected = NO_PERMISSION if admins_only else OWNERS_ONLY
    assert await e2e.ask_text(f"!{command} --all", author="member") == expected


async def test_the_flag_may_stand_anywhere(e2e: E2E) -> None:
    guild = e2e.sandbox.GUILD_ID
    for text in (f"!models --server {guild} smalltalk", f"!models smalltalk --server={guild}"):
        reply = await e2e.ask_text(text)
        assert "smalltalk" in reply and "Usage" not in reply, reply
    assert await e2e.ask_text("!datasets --all --server 1") == "Give `--all` or `--server ID` once."
    assert await e2e.ask_text("!jobs --server") == (
        "Name the server after `--server`, like `--server 123456789`."
    )


async def test_the_slash_option_is_refused_to_members(e2e: E2E) -> None:
    for command in ("datasets", "jobs", "feedback list"):
        refused = await private(e2e, command, {"server": "all"}, author="moderator")
        assert refused == OWNERS_ONLY_OPTION
    bad = await private(e2e, "jobs", {"server": "nowhere"})
    assert bad.startswith(NOT_A_SERVER)


async def test_the_usage_hides_the_scope(e2e: E2E) -> None:
    for name, usage in {"getfile": "<path>", "job": "<id>", "models": "[name]", "jobs": ""}.items():
        command = e2e.bot.get_command(name)
        assert command is not None and command.signature == usage, name
    listing = e2e.bot.get_command("feedback list")
    assert listing is not None and listing.signature == "[count=10]"
