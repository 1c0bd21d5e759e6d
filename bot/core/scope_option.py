"""Commands written once for `!` and `/`: the owners' scope and `/`-only text limits.

A command that works on one server's data takes `server: Scope = SERVER` (or `ONE_SERVER`
where every server at once makes no sense, like a folder) and is made with
`@scoped_command(...)`: one hybrid command, one definition.

- With `!`, an owner's `--all` / `--server ID` may stand anywhere in the text
  (`!getfile --server ID PATH`, `!job ID --all`). They are taken out before the other
  parameters read it, so `!help` and the usage hints show the command without them.
- With `/`, `server:` is a text option whose suggestions (`all` and the namespaces) only the
  owners see.

Either way the command receives the `Scope` from `checks.scope_for` / `checks.scope_from_option`,
the one place that decides whose data a command may touch, after the command's checks.

`SlashLimited` (`slash_text(...)`) is an option that Discord requires and limits with `/`,
while the `!` form passes it on as written (empty too), so the command's own check gives its
usual reply.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.checks import scope_for, scope_from_option
from bot.core.suggest import matching, owners_only, suggest
from bot.errors import UserFacingError
from bot.services.tenancy.namespaces import Scope

OPTION_NAME = "server"
SERVER_HELP = "Bot owners: all, or a server id (dm-USERID, legacy) to look at"
ONE_SERVER_HELP = "Bot owners: a server id (dm-USERID, legacy) whose folder to use"


class ServerOption(app_commands.Transformer):
    """The `/` side of the owners' scope: the raw `server:` text, with suggestions."""

    def __init__(self, description: str, *, everywhere: bool) -> None:
        super().__init__()
        self.description = description
        self.everywhere = everywhere

    async def transform(self, interaction: discord.Interaction[Any], value: Any, /) -> str:
        return str(value)

    @suggest
    @owners_only
    async def autocomplete(  # type: ignore[override]
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[str]:
        namespaces = interaction.client.services.tenants.namespaces()
        return matching(["all", *namespaces] if self.everywhere else namespaces, current)


def _server_parameter(description: str, *, everywhere: bool) -> Any:
    option = ServerOption(description, everywhere=everywhere)
    return commands.parameter(converter=option, default=None, description=description)


# The owners' scope of a listing (`all` lists every namespace) and of one server's folder.
SERVER: Scope = _server_parameter(SERVER_HELP, everywhere=True)
ONE_SERVER: Scope = _server_parameter(ONE_SERVER_HELP, everywhere=False)


class SlashLimited(app_commands.Transformer, commands.Converter[Any]):
    """An option Discord checks with `/` (required unless given a default, within limits),
    read as written with `!` (text, or a whole number), so the command's own checks and caps
    give their usual replies there."""

    def __init__(
        self, kind: type[str] | type[int], low: int | None = None, high: int | None = None
    ) -> None:
        super().__init__()
        self.kind, self.low, self.high = kind, low, high

    @property
    def type(self) -> discord.AppCommandOptionType:
        if self.kind is int:
            return discord.AppCommandOptionType.integer
        return discord.AppCommandOptionType.string

    @property
    def min_value(self) -> int | None:
        return self.low

    @property
    def max_value(self) -> int | None:
        return self.high

    async def transform(self, interaction: discord.Interaction[Any], value: Any, /) -> Any:
        return self.kind(value)

    async def convert(self, ctx: commands.Context[Any], argument: str) -> Any:
        if self.kind is int:
            return await commands.converter.run_converters(
                ctx, int, argument, ctx.current_parameter
            )
        return argument


def slash_text(max_length: int) -> Any:
    """Text of 1 to `max_length` characters, required with `/`; with `!` as written."""
    return SlashLimited(str, 1, max_length)


def _scope_parameter(func: Callable[..., Any]) -> tuple[str, ServerOption] | None:
    for name, parameter in inspect.signature(func).parameters.items():
        default = parameter.default
        if isinstance(default, commands.Parameter) and isinstance(default.converter, ServerOption):
            return name, default.converter
    return None


class ScopedCommand(commands.HybridCommand[Any, ..., Any]):
    """A hybrid command with a parameter for the owners' scope (see the module); its `/`
    option is called `server`."""

    def __init__(self, func: Any, /, **kwargs: Any) -> None:
        found = _scope_parameter(func)
        described = getattr(func, "__discord_app_commands_param_description__", {})
        if found is not None and found[0] not in described:
            app_commands.describe(**{found[0]: found[1].description})(func)
        if found is not None and found[0] != OPTION_NAME:
            app_commands.rename(**{found[0]: OPTION_NAME})(func)
        super().__init__(func, **kwargs)
        self.scope_name = found[0] if found else None
        if self.scope_name is not None:
            # `!` never reads it from the text: the flags are taken out (see _parse_arguments).
            del self.params[self.scope_name]

    async def transform(
        self, ctx: commands.Context[Any], param: commands.Parameter, attachments: Any, /
    ) -> Any:
        if isinstance(param.converter, SlashLimited) and param.required and ctx.view.eof:
            return ""  # `!` with nothing: the command's own check says what to write
        return await super().transform(ctx, param, attachments)

    async def _parse_arguments(self, ctx: commands.Context[Any]) -> None:
        if self.scope_name is None:
            await super()._parse_arguments(ctx)
            return
        if ctx.interaction is None:
            scope, rest = await _as_command_error(scope_for(ctx, ctx.view.read_rest()))
            ctx.view = commands.view.StringView(rest)
            await super()._parse_arguments(ctx)
        else:
            await super()._parse_arguments(ctx)
            server = ctx.kwargs.get(self.scope_name)
            scope = await _as_command_error(scope_from_option(ctx, server))
        ctx.kwargs[self.scope_name] = scope


async def _as_command_error(awaitable: Any) -> Any:
    """A refused scope, raised where discord.py expects a command's errors."""
    try:
        return await awaitable
    except UserFacingError as exc:
        raise commands.CommandInvokeError(exc) from exc


def scoped_command(
    *, group: commands.HybridGroup[Any, ..., Any] | None = None, **attrs: Any
) -> Callable[[Any], ScopedCommand]:
    """`@commands.hybrid_command(...)` (or `@group.command(...)`) for a `ScopedCommand`."""

    def decorator(func: Any) -> ScopedCommand:
        if group is not None:
            attrs.setdefault("parent", group)
        command = ScopedCommand(func, **attrs)
        if group is not None:
            group.add_command(command)
        return command

    return decorator
