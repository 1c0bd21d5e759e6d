"""The chat model's policies: which dataset answers a server's chat."""

from __future__ import annotations

from bot.services.storage import Storage


async def active_dataset(storage: Storage, default: str, guild_id: int | None) -> str:
    """The dataset whose model answers chat in this server (DMs use the default)."""
    if guild_id is None:
        return default
    return await storage.get_guild_setting(guild_id, "dataset", default)
