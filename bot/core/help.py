"""`!help`: every command in both forms with an example, or the details of one (the bot's
help command; the `/help` twin is the help cog's)."""

from __future__ import annotations

from typing import Any

from discord import app_commands
from discord.ext import commands

from bot.core.context import VoiceContext
from bot.core.messages import send_chunks

HELP_BRIEF = "Show the commands, or details of one."
HEADER = "**Commands** (type them with `!`, or pick them from `/`)"
MENUS = (
    "On a message, **Apps → Transcribe**, **Speak** and **Correct this reply** "
    "do the same as `!transcribe`, `!say` and `!correct`."
)


def example(command: commands.Command[Any, ..., Any], prefix: str) -> str:
    """The command's example from `extras={"example": "..."}`, or its bare invocation."""
    sample = command.extras.get("example") or command.qualified_name
    return f"{prefix}{sample}"


def slash_names(tree: app_commands.CommandTree[Any]) -> set[str]:
    """Qualified names of every `/` command, groups and subcommands included."""
    return {c.qualified_name for c in tree.walk_commands()}


def both_forms(command: commands.Command[Any, ..., Any], prefix: str, slash: set[str]) -> str:
    """`!name` and, when it has a twin, `/name`: how help shows a command."""
    name = command.qualified_name
    return f"`{prefix}{name}`" + (f" · `/{name}`" if name in slash else "")


class HelpCommand(commands.HelpCommand):
    def __init__(self) -> None:
        super().__init__(command_attrs={"brief": HELP_BRIEF, "extras": {"example": "help train"}})

    @property
    def prefix(self) -> str:
        if self.context.interaction is None:
            return self.context.clean_prefix
        prefix = self.context.bot.command_prefix
        return prefix if isinstance(prefix, str) else "!"

    def get_destination(self) -> VoiceContext:  # type: ignore[override]
        # The context answers an interaction too; the channel would leave it unanswered.
        return self.context  # type: ignore[return-value]

    async def _send(self, text: str) -> None:
        await send_chunks(self.get_destination(), text)

    def _forms(self, command: commands.Command[Any, ..., Any]) -> str:
        return both_forms(command, self.prefix, slash_names(self.context.bot.tree))

    async def send_bot_help(self, mapping: Any) -> None:
        """One line a command, grouped by cog; a long list is split between groups or lines."""
        sections = [HEADER]
        for cog, cmds in sorted(
            mapping.items(), key=lambda kv: kv[0].qualified_name if kv[0] else "~"
        ):
            visible = await self.filter_commands(cmds, sort=True)
            if not visible:
                continue
            lines = [f"__{cog.qualified_name if cog else 'Other'}__"]
            for command in visible:
                lines.append(
                    f"{self._forms(command)} — {command.brief or ''} "
                    f"Example: `{example(command, self.prefix)}`"
                )
            sections.append("\n".join(lines))
        sections.append(MENUS)
        sections.append(f"Type `{self.prefix}help COMMAND` for details of one command.")
        await self._send("\n\n".join(sections))

    async def send_command_help(self, command: commands.Command[Any, ..., Any]) -> None:
        usage = f"{self.prefix}{command.qualified_name} {command.signature}".strip()
        text = [f"**{usage}**", command.help or command.brief or ""]
        if command.qualified_name in slash_names(self.context.bot.tree):
            text.append(f"As a `/` command: `/{command.qualified_name}`")
        text.append(f"Example: `{example(command, self.prefix)}`")
        if isinstance(command, commands.Group):
            for sub in await self.filter_commands(command.commands, sort=True):
                text.append(f"{self._forms(sub)} — {sub.brief or ''}")
        await self._send("\n".join(t for t in text if t))

    send_group_help = send_command_help

    async def send_cog_help(self, cog: commands.Cog) -> None:
        await self.send_bot_help({cog: cog.get_commands()})

    def command_not_found(self, string: str) -> str:
        return f"There is no command called `{string}`. Type `{self.prefix}help` for the list."

    def subcommand_not_found(self, command: commands.Command[Any, ..., Any], string: str) -> str:
        return f"`{command.qualified_name}` has no subcommand `{string}`."
