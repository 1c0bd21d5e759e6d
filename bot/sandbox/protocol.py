"""What the interaction modules need from the sandbox, so that they depend on this, not on
`Sandbox` (which composes them: `server.py` imports them, never the other way round)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from bot.sandbox.messages import MessageStore
from bot.sandbox.world import World

Listener = Callable[[str, dict[str, Any]], None]  # (event, data)


class Host(Protocol):
    """The sandbox as `interactions.py` and `responses.py` see it (`Sandbox` is one)."""

    @property
    def APPLICATION_ID(self) -> int: ...  # Sandbox's class constant

    @property
    def world(self) -> World: ...

    @property
    def store(self) -> MessageStore:
        """Messages, files and DM channels, and the ids of new things."""
        ...

    @property
    def listeners(self) -> list[Listener]:
        """Told every event, the ones only a user sees (ephemeral) too: the console."""
        ...

    async def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send `event` to the bot through the gateway (and tell the listeners)."""
        ...
