"""The one permission check: `@is_admin()` on every admin-only command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.app import VoiceChatBot

NO_PERMISSION = "You don't have permission to use this command."


class NotAdmin(commands.CheckFailure):
    def __init__(self) -> None:
        super().__init__(NO_PERMISSION)


async def user_is_admin(bot: VoiceChatBot, user: discord.abc.User) -> bool:
    """Admins: the application's owner(s), BOT_OWNER_IDS, and members holding ADMIN_ROLE."""
    if user.id in bot.settings.bot_owner_ids or await bot.is_owner(user):
        return True
    roles = getattr(user, "roles", [])
    return any(role.name == bot.settings.admin_role for role in roles)


def is_admin() -> commands.Check:  # type: ignore[type-arg]
    async def predicate(ctx: commands.Context) -> bool:  # type: ignore[type-arg]
        if await user_is_admin(ctx.bot, ctx.author):
            return True
        raise NotAdmin()

    return commands.check(predicate)
