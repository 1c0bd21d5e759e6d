"""The chat model's policies: which dataset answers a server's chat."""

from __future__ import annotations

from bot.services.tenancy.settings import DATASET, ServerSettings


async def active_dataset(settings: ServerSettings, guild_id: int | None) -> str:
    """The dataset whose model answers chat in this server (DMs use the default)."""
    if guild_id is None:
        return settings.default(DATASET)
    return await settings.get(guild_id, DATASET)
