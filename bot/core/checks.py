"""The one permission check (`@is_admin()` on every admin-only command) and the one place
that decides whose data a command may touch (`scope_for` for `!` text, `scope_from_option`
for the `server` option of `/` commands)."""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord
from discord.ext import commands

from bot.config import Settings
from bot.errors import UserFacingError
from bot.services.tenancy.namespaces import Scope, namespace_for, parse_namespace


class _Bot(Protocol):
    """What the checks need of the bot (`core.bot.VoiceChatBot`)."""

    settings: Settings

    async def is_owner(self, user: discord.abc.User, /) -> bool: ...


NO_PERMISSION = "You don't have permission to use this command."
OWNERS_ONLY = (
    "Only the bot's owners can use `--all` and `--server`; without them a command works on "
    "this server's own data."
)
OWNERS_ONLY_OPTION = (
    "Only the bot's owners can use the `server` option; without it a command works on this "
    "server's own data."
)
NOT_OWNER = "Only the bot's owners can use this command."
# Help text of the commands that take an owner's flags (README "Owners' bot-wide view").
OWNER_VIEW_HELP = " Bot owners: `--all` lists every server's, `--server ID` shows one server's."
# An owner's explicit bot-wide view: `--all`, or `--server ID` / `--server=ID`.
_OWNER_FLAG = re.compile(r"(?<!\S)--(?:(all)|server(?:(?:=|\s+)(?!--)(\S+))?)(?!\S)", re.IGNORECASE)


class NotAdmin(commands.CheckFailure):
    def __init__(self) -> None:
        super().__init__(NO_PERMISSION)


class NotOwner(commands.CheckFailure):
    def __init__(self) -> None:
        super().__init__(NOT_OWNER)


async def is_bot_owner(bot: _Bot, user: discord.abc.User) -> bool:
    """The application's owner(s) and BOT_OWNER_IDS: admins everywhere, with a bot-wide view."""
    return user.id in bot.settings.bot_owner_ids or await bot.is_owner(user)


async def user_is_admin(bot: _Bot, user: discord.abc.User) -> bool:
    """Admins: the bot's owners, and members holding ADMIN_ROLE in the server at hand."""
    if await is_bot_owner(bot, user):
        return True
    roles = getattr(user, "roles", [])
    return any(role.name == bot.settings.admin_role for role in roles)


def is_admin() -> commands.Check:  # type: ignore[type-arg]
    async def predicate(ctx: commands.Context) -> bool:  # type: ignore[type-arg]
        if await user_is_admin(ctx.bot, ctx.author):
            return True
        raise NotAdmin()

    return commands.check(predicate)


async def require_admin(ctx: commands.Context[Any]) -> None:
    """The admin check inside a command (a `/` twin that is not a hybrid command)."""
    if not await user_is_admin(ctx.bot, ctx.author):
        raise NotAdmin()


def is_owner() -> commands.Check:  # type: ignore[type-arg]
    """The bot's owners only (maintenance such as `!sync`)."""

    async def predicate(ctx: commands.Context) -> bool:  # type: ignore[type-arg]
        if await is_bot_owner(ctx.bot, ctx.author):
            return True
        raise NotOwner()

    return commands.check(predicate)


def namespace_of(guild: discord.Guild | None, user: discord.abc.User) -> str:
    """Whose data a message belongs to: its server's, or the author's DMs'."""
    return namespace_for(guild.id if guild is not None else None, user.id)


async def scope_for(ctx: commands.Context[Any], text: str = "") -> tuple[Scope, str]:
    """The scope of a command, and `text` with an owner's `--all` / `--server ID` taken out.

    Everyone works on their server's own data (or their own DM data). Only the bot's owners
    may widen that, and only by writing the flag: `--all` (every namespace, for listings) or
    `--server ID` (one server's data; `dm-USERID` or `legacy` also work).
    """
    own = Scope(namespace_of(ctx.guild, ctx.author))
    match = _OWNER_FLAG.search(text)
    if match is None:
        return own, text.strip()
    if not await is_bot_owner(ctx.bot, ctx.author):
        raise UserFacingError(OWNERS_ONLY)
    rest = (text[: match.start()] + " " + text[match.end() :]).strip()
    if _OWNER_FLAG.search(rest):
        raise UserFacingError("Give `--all` or `--server ID` once.")
    everywhere, value = match.group(1) is not None, match.group(2)
    if everywhere:
        return Scope(own.namespace, everywhere=True), rest
    if value is None:
        raise UserFacingError("Name the server after `--server`, like `--server 123456789`.")
    return Scope(parse_namespace(value)), rest


async def scope_from_option(ctx: commands.Context[Any], server: str | None) -> Scope:
    """The scope of a `/` command from its `server` option, the owners' twin of `--all` and
    `--server ID`: empty is this server's own data, `all` every namespace, else a server id,
    `dm-USERID` or `legacy`. Anyone but the owners who fills it in is refused."""
    own = Scope(namespace_of(ctx.guild, ctx.author))
    value = (server or "").strip()
    if not value:
        return own
    if not await is_bot_owner(ctx.bot, ctx.author):
        raise UserFacingError(OWNERS_ONLY_OPTION)
    if value.lower() == "all":
        return Scope(own.namespace, everywhere=True)
    return Scope(parse_namespace(value))
