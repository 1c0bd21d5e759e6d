"""The `/` side of the bot as Discord gets it.

Every `!` command has a `/` twin (owner-only maintenance commands are listed below); every
option is described; the definitions pass Discord's rules (the sandbox's validator); admin
commands are hidden from members by default; and the synced payload equals the committed
snapshot `tests/app_commands.json`, so a change to it shows in review. After a deliberate
change: `UPDATE_APP_COMMANDS=1 pytest tests/test_app_commands.py`, then commit the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import discord

from bot.cogs.sync import command_payload
from bot.config import load_settings
from bot.core.bot import EXTENSIONS, VoiceChatBot
from bot.sandbox.commands import ATTACHMENT, CHAT_INPUT, validate_commands
from bot.wiring import build_services

SNAPSHOT = Path(__file__).resolve().parent / "app_commands.json"
# Owner-only maintenance: `!` only, on purpose.
PREFIX_ONLY = {"sync"}
MANAGE_GUILD = str(discord.Permissions(manage_guild=True).value)


@contextlib.asynccontextmanager
async def loaded_bot(tmp_path: Path) -> AsyncIterator[VoiceChatBot]:
    """The bot with every extension loaded, not connected.

    A context manager rather than a fixture: with an async generator fixture, the
    hypothesis pytest plugin's summary then fails to compile (a CPython 3.11 AST bug)."""
    settings = load_settings({"DATA_DIR": str(tmp_path)}, env_file=None)
    bot = VoiceChatBot(settings, await build_services(settings))
    for name in EXTENSIONS:
        await bot.load_extension(name)
    yield bot
    await bot.close()


def walk(options: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for option in options:
        yield option
        yield from walk(option.get("options") or [])


def is_admin_only(command: Any) -> bool:
    return any(check.__qualname__.startswith("is_admin.") for check in command.checks)


async def test_every_prefix_command_has_a_slash_twin(tmp_path: Path) -> None:
    async with loaded_bot(tmp_path) as bot:
        check_twins(bot)


def check_twins(bot: VoiceChatBot) -> None:
    slash = {c.qualified_name for c in bot.tree.walk_commands()}
    prefix = {c.qualified_name for c in bot.walk_commands()}
    missing = prefix - slash - PREFIX_ONLY
    assert not missing, f"no / twin for: {sorted(missing)}"
    assert PREFIX_ONLY <= prefix  # the list names real commands
    for name in PREFIX_ONLY:
        assert all(c.__qualname__.startswith("is_owner.") for c in bot.get_command(name).checks)
    menus = {c.name for c in bot.tree.get_commands(type=discord.AppCommandType.message)}
    assert menus == {"Transcribe", "Speak", "Correct this reply"}


async def test_definitions_pass_discords_rules_and_describe_every_option(tmp_path: Path) -> None:
    async with loaded_bot(tmp_path) as bot:
        payload = command_payload(bot.tree)
    validate_commands(payload)  # raises InvalidFormBody as Discord would answer 50035
    for command in payload:
        if command["type"] != CHAT_INPUT:
            continue
        assert 1 <= len(command["description"]) <= 100, command["name"]
        for option in walk(command.get("options") or []):
            where = f"/{command['name']} {option['name']}"
            assert option["description"] and option["description"] != "…", where
            assert len(option["description"]) <= 100, where
    files = {
        c["name"] for c in payload for o in walk(c.get("options") or []) if o["type"] == ATTACHMENT
    }
    assert {"transcribe", "train", "test"} <= files


async def test_admin_commands_are_hidden_from_members_by_default(tmp_path: Path) -> None:
    async with loaded_bot(tmp_path) as bot:
        payload = {c["name"]: c for c in command_payload(bot.tree) if c["type"] == CHAT_INPUT}
        admin = {c.qualified_name for c in bot.commands if is_admin_only(c)}
    admin |= {"getfile", "archive"}  # `/` twins that check inside
    assert admin >= {"train", "select_dataset", "use_model", "chat", "autotranscribe"}
    for name in admin:
        assert str(payload[name]["default_member_permissions"]) == MANAGE_GUILD, name
    everyone = set(payload) - admin
    assert all(payload[n]["default_member_permissions"] is None for n in everyone), everyone


async def test_the_synced_payload_equals_the_snapshot(tmp_path: Path) -> None:
    async with loaded_bot(tmp_path) as bot:
        payload = command_payload(bot.tree)
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_APP_COMMANDS"):
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert SNAPSHOT.read_text(encoding="utf-8") == text, (
        "The / commands changed. If that is intended, run "
        "`UPDATE_APP_COMMANDS=1 pytest tests/test_app_commands.py` and commit "
        "tests/app_commands.json."
    )
