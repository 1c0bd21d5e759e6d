"""Every extension loads, and no two commands share a name or alias."""

from __future__ import annotations

import importlib

from bot.config import load_settings
from bot.core.bot import EXTENSIONS, VoiceChatBot
from bot.wiring import build_services


async def test_extensions_load_and_command_names_do_not_clash(tmp_path) -> None:
    for name in EXTENSIONS:
        assert hasattr(importlib.import_module(name), "setup"), name
    settings = load_settings({"DATA_DIR": str(tmp_path)}, env_file=None)
    bot = VoiceChatBot(settings, await build_services(settings))
    for name in EXTENSIONS:
        await bot.load_extension(name)  # raises CommandRegistrationError on a clash
    names = [n for c in bot.walk_commands() for n in (c.qualified_name, *c.aliases)]
    assert len(names) == len(set(names))
    assert {"hi", "instruction", "help"} <= set(names)
    await bot.close()


async def test_readme_documents_every_command_and_setting(tmp_path) -> None:
    from pathlib import Path

    from bot.config import setting_docs

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    settings = load_settings({"DATA_DIR": str(tmp_path)}, env_file=None)
    bot = VoiceChatBot(settings, await build_services(settings))
    for name in EXTENSIONS:
        await bot.load_extension(name)
    for command in bot.walk_commands():
        assert f"`!{command.qualified_name}" in readme, command.qualified_name
    for name, _default, _doc in setting_docs():
        assert f"| `{name}` |" in readme, name
    await bot.close()
