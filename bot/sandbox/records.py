"""What an interaction is in the sandbox: its types, the callback types and message flags,
and `InteractionRecord`, which collects everything the bot answered to one interaction (for
tests and the console). Shared by `interactions.py` (what users do) and `responses.py` (the
bot's side)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.world import SandboxUser

APPLICATION_COMMAND, COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
MESSAGE_REPLY, DEFERRED, DEFERRED_UPDATE, UPDATE, CHOICES, MODAL = 4, 5, 6, 7, 8, 9
EPHEMERAL = 1 << 6
LOADING = 1 << 7
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 51) - 1
# Message types of responses: to a slash command, to a context menu, anything else.
CHAT_INPUT_COMMAND_MESSAGE, CONTEXT_MENU_COMMAND_MESSAGE, DEFAULT_MESSAGE = 20, 23, 0


def is_ephemeral(message: dict[str, Any]) -> bool:
    return bool(message.get("flags", 0) & EPHEMERAL)


def is_loading(message: dict[str, Any]) -> bool:
    return bool(message.get("flags", 0) & LOADING)


@dataclass
class InteractionRecord:
    """One interaction and everything the bot answered to it, for tests and the console."""

    id: int
    token: str
    type: int
    name: str  # "train", "voice engine", "Transcribe", or a modal's custom_id
    user: SandboxUser
    channel_id: int
    guild_id: int | None
    payload: dict[str, Any]
    message_type: int
    created: float  # monotonic
    changed: asyncio.Condition
    callback: int | None = None  # the callback type of the first response
    callback_after: float | None = None  # seconds from creation to the first response
    original: dict[str, Any] | None = None
    original_deleted: bool = False
    followups: list[dict[str, Any]] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None
    modal: dict[str, Any] | None = None
    refused: list[tuple[int, str, float]] = field(default_factory=list)  # code, what, after

    @property
    def deferred(self) -> bool:
        return self.callback == DEFERRED

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The original response (unless deleted) and the followups, in order."""
        first = [self.original] if self.original is not None and not self.original_deleted else []
        return first + self.followups

    def finished_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if not is_loading(m)]

    async def wait(self, check: Callable[[InteractionRecord], bool], timeout: float = 15.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: check(self)), timeout)

    async def responded(self, timeout: float = 15.0) -> InteractionRecord:
        """Wait for the first response (any callback type)."""
        await self.wait(lambda r: r.callback is not None, timeout)
        return self

    async def reply(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """The first finished message of this interaction (original or followup) matching."""

        def find() -> dict[str, Any] | None:
            return next(
                (m for m in self.finished_messages() if predicate is None or predicate(m)), None
            )

        await self.wait(lambda _r: find() is not None, timeout)
        return find()  # type: ignore[return-value]

    async def replies(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        await self.wait(lambda r: len(r.finished_messages()) >= count, timeout)
        return self.finished_messages()[:count]
