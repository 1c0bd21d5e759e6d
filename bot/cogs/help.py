"""`!help`: every command with a one-line description and an example."""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from bot.cogs._messages import send_chunks


def example(command: commands.Command[Any, ..., Any], prefix: str) -> str:
    """The command's example from `extras={"example": "..."}`, or its bare invocation."""
    sample = command.extras.get("example") or command.qualified_name
    return f"{prefix}{sample}"


class HelpCommand(commands.HelpCommand):
    def __init__(self) -> None:
        super().__init__(
            command_attrs={
                "brief": "Show the commands, or details of one.",
                "extras": {"example": "help train"},
            }
        )

    @property
    def prefix(self) -> str:
        return self.context.clean_prefix

    async def _send(self, text: str) -> None:
        await send_chunks(self.get_destination(), text)

    async def send_bot_help(self, mapping: Any) -> None:
        """One line a command, grouped by cog; a long list is split between groups or lines."""
        sections = ["**Commands**"]
        for cog, cmds in sorted(
            mapping.items(), key=lambda kv: kv[0].qualified_name if kv[0] else "~"
        ):
            visible = await self.filter_commands(cmds, sort=True)
            if not visible:
                continue
            lines = [f"__{cog.qualified_name if cog else 'Other'}__"]
            for command in visible:
                lines.append(
                    f"`{self.prefix}{command.qualified_name}` — {command.brief or ''} "
                    f"Example: `{example(command, self.prefix)}`"
                )
            sections.append("\n".join(lines))
        sections.append(f"Type `{self.prefix}help COMMAND` for details of one command.")
        await self._send("\n\n".join(sections))

    async def send_command_help(self, command: commands.Command[Any, ..., Any]) -> None:
        usage = f"{self.prefix}{command.qualified_name} {command.signature}".strip()
        text = [f"**{usage}**", command.help or command.brief or ""]
        text.append(f"Example: `{example(command, self.prefix)}`")
        if isinstance(command, commands.Group):
            for sub in await self.filter_commands(command.commands, sort=True):
                text.append(f"`{self.prefix}{sub.qualified_name}` — {sub.brief or ''}")
        await self._send("\n".join(t for t in text if t))

    send_group_help = send_command_help

    async def send_cog_help(self, cog: commands.Cog) -> None:
        await self.send_bot_help({cog: cog.get_commands()})

    def command_not_found(self, string: str) -> str:
        return f"There is no command called `{string}`. Type `{self.prefix}help` for the list."

    def subcommand_not_found(self, command: commands.Command[Any, ..., Any], string: str) -> str:
        return f"`{command.qualified_name}` has no subcommand `{string}`."
