"""Autocomplete for `/` options: one wrapper for every suggestion list.

A suggester is a cog method `(self, interaction, current) -> list of str or (label, value)`.
`@suggest` turns it into what discord.py wants: at most 25 choices of at most 100 characters,
within SUGGEST_SECONDS (Discord drops a late answer), and no choices rather than an error
when something fails. `@admins_only` and `@owners_only` show nothing to people who may not
use what is suggested, so a member never sees an admin-only dataset, path or version.
Suggesters read the caller's own namespace (or, for owners, the one their `server` option
names) exactly as the command will.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.core.checks import is_bot_owner, namespace_of, user_is_admin
from bot.services.tenancy.namespaces import parse_namespace

log = logging.getLogger(__name__)

SUGGEST_SECONDS = 2.0
MAX_CHOICES = 25
MAX_CHOICE_CHARS = 100

Suggestion = str | tuple[str, str]
Suggester = Callable[[Any, discord.Interaction[Any], str], Awaitable[Sequence[Suggestion]]]
Autocomplete = Callable[
    [Any, discord.Interaction[Any], str], Awaitable[list[app_commands.Choice[str]]]
]


def _choice(suggestion: Suggestion) -> app_commands.Choice[str]:
    label, value = (suggestion, suggestion) if isinstance(suggestion, str) else suggestion
    return app_commands.Choice(name=label[:MAX_CHOICE_CHARS], value=value[:MAX_CHOICE_CHARS])


def suggest(suggester: Suggester) -> Autocomplete:
    @functools.wraps(suggester)
    async def autocomplete(
        cog: Any, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        try:
            found = await asyncio.wait_for(suggester(cog, interaction, current), SUGGEST_SECONDS)
        except Exception:  # noqa: BLE001 - suggestions are a convenience: show none
            log.warning("suggestions for %s failed", suggester.__name__, exc_info=True)
            return []
        return [_choice(s) for s in found if s][:MAX_CHOICES]

    return autocomplete


def admins_only(suggester: Suggester) -> Suggester:
    @functools.wraps(suggester)
    async def only(cog: Any, interaction: discord.Interaction[Any], current: str) -> Any:
        if not await user_is_admin(interaction.client, interaction.user):  # type: ignore[arg-type]
            return []
        return await suggester(cog, interaction, current)

    return only


def owners_only(suggester: Suggester) -> Suggester:
    @functools.wraps(suggester)
    async def only(cog: Any, interaction: discord.Interaction[Any], current: str) -> Any:
        if not await is_bot_owner(interaction.client, interaction.user):  # type: ignore[arg-type]
            return []
        return await suggester(cog, interaction, current)

    return only


async def namespace_asked(interaction: discord.Interaction[Any]) -> str:
    """The namespace a command will work on: the caller's own, or for the bot's owners the
    one the `server` option names (never `all`, which lists rather than names)."""
    own = namespace_of(interaction.guild, interaction.user)
    server = str(getattr(interaction.namespace, "server", None) or "").strip()
    if not server or server.lower() == "all":
        return own
    if not await is_bot_owner(interaction.client, interaction.user):  # type: ignore[arg-type]
        return own
    return parse_namespace(server)


def matching(items: Iterable[str], current: str) -> list[str]:
    """Items that start with `current` (ignoring case) first, then those that contain it."""
    needle = current.strip().lower()
    items = list(items)
    starts = [i for i in items if i.lower().startswith(needle)]
    contains = [i for i in items if needle in i.lower() and i not in starts]
    return starts + contains
