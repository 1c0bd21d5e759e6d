"""The one way to answer a request: `VoiceContext`.

Every request gets one: `!` commands and `/` commands (hybrid commands build it), context menus
and modals (`context_of(bot, interaction)`), and the messages the listeners handle
(`bot.get_context(message)`). Cogs answer with `ctx.answer(...)`, mark slow work with
`await ctx.defer()` and confirm quiet actions with `ctx.acknowledge(...)`; none of them looks
at whether the request came as a message or an interaction.

- For a message, an answer is a reply to it (without a ping); `defer` does nothing and
  `typing()` shows the typing indicator.
- For an interaction, the first answer is the interaction's response and later ones are
  followups. `private=True` makes an answer ephemeral. A public "thinking…" message (after a
  defer) can't become private, so a private answer deletes it first and follows up privately.
- Discord refuses a first response later than 3 seconds after the interaction. Slow commands
  defer at once; any other interaction that has not answered AUTO_DEFER_SECONDS after it was
  created is deferred then, so a busy bot never misses the window. Responses are serialized
  per interaction, so the automatic defer never races an answer.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from types import TracebackType
from typing import Any

import discord
from discord.ext import commands

from bot.errors import UserFacingError
from bot.services.tenancy.namespaces import namespace_for

log = logging.getLogger(__name__)

AUTO_DEFER_SECONDS = 1.5


class VoiceContext(commands.Context[Any]):  # the bot: core.bot.VoiceChatBot
    @property
    def namespace(self) -> str:
        """Whose data this request touches: its server's, or the author's DMs' (built here
        once; every data call of the request is given it)."""
        return namespace_for(self.guild.id if self.guild is not None else None, self.author.id)

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._respond_lock = asyncio.Lock()
        self._auto_defer: asyncio.TimerHandle | None = None
        self._auto_task: asyncio.Task[None] | None = None
        self._loading = False  # a public defer waits for its first followup
        # For the metrics (cogs/_metrics.py): a failure this request answered itself
        # (`reply_error`), and whether its command has been counted.
        self.outcome: str | None = None
        self.counted = False

    # ----- building ---------------------------------------------------------------------

    @classmethod
    async def from_interaction(cls, interaction: discord.Interaction[Any], /) -> VoiceContext:
        ctx = await super().from_interaction(interaction)
        ctx._watch(interaction)
        return ctx

    def continued(self, interaction: discord.Interaction[Any]) -> VoiceContext:
        """This request continued by a new interaction of the same user (a modal submit):
        same author, channel and server; answers go to the new interaction."""
        ctx = copy.copy(self)
        ctx.interaction = interaction
        ctx._respond_lock = asyncio.Lock()
        ctx._auto_defer = ctx._auto_task = None
        ctx._loading = False
        ctx._watch(interaction)
        return ctx

    def _watch(self, interaction: discord.Interaction[Any]) -> None:
        interaction.extras["context"] = self
        elapsed = (discord.utils.utcnow() - interaction.created_at).total_seconds()
        delay = max(0.0, min(AUTO_DEFER_SECONDS, AUTO_DEFER_SECONDS - elapsed))
        self._auto_defer = asyncio.get_running_loop().call_later(delay, self._start_auto_defer)

    def _start_auto_defer(self) -> None:
        self._auto_task = asyncio.create_task(self._defer_if_silent(), name="auto-defer")

    async def _defer_if_silent(self) -> None:
        try:
            async with self._respond_lock:
                if self.interaction is not None and not self.interaction.response.is_done():
                    log.debug("deferring %s automatically", self.command and self.command.name)
                    await self._defer(ephemeral=False)
        except discord.HTTPException as exc:
            log.warning("could not defer interaction %s: %s", self.interaction, exc)

    def _stop_auto_defer(self) -> None:
        if self._auto_defer is not None:
            self._auto_defer.cancel()
            self._auto_defer = None

    @property
    def shown_prefix(self) -> str:
        """The prefix to show in hints: `/` for interactions (menus included), else `!`."""
        return "/" if self.interaction is not None else self.clean_prefix

    # ----- answering --------------------------------------------------------------------

    async def answer(
        self,
        content: str | None = None,
        *,
        private: bool = False,
        file: discord.File | None = None,
        files: list[discord.File] | None = None,
        allowed_mentions: discord.AllowedMentions | None = None,
    ) -> discord.Message:
        """Answer the request. `private`: only its author sees it (interactions only)."""
        return await self.reply(
            content,
            mention_author=False,
            ephemeral=private,
            file=file,
            files=files,
            allowed_mentions=allowed_mentions,
        )

    async def acknowledge(self, emoji: str, text: str) -> None:
        """Confirm an action whose result is not a message (a queued `!say`): a reaction on
        the command's message, or a private answer to an interaction."""
        if self.interaction is None:
            await self.message.add_reaction(emoji)
        else:
            await self.answer(f"{emoji} {text}", private=True)

    async def send(self, content: str | None = None, **kwargs: Any) -> discord.Message:
        if self.interaction is None:
            return await super().send(content, **kwargs)
        async with self._respond_lock:
            self._stop_auto_defer()
            if kwargs.get("ephemeral") and self._loading:
                # The public "thinking…" message can't turn private: remove it first.
                await self.interaction.delete_original_response()
            self._loading = False
            return await super().send(content, **kwargs)

    async def defer(self, *, ephemeral: bool = False) -> None:
        """Acknowledge an interaction now and answer later; nothing for a message."""
        if self.interaction is None:
            return
        async with self._respond_lock:
            await self._defer(ephemeral=ephemeral)

    async def _defer(self, *, ephemeral: bool) -> None:
        self._stop_auto_defer()
        assert self.interaction is not None
        if not self.interaction.response.is_done():
            await self.interaction.response.defer(ephemeral=ephemeral, thinking=True)
            self._loading = not ephemeral

    async def show_modal(self, modal: discord.ui.Modal) -> None:
        """Answer an interaction with a form (it must be the first response)."""
        assert self.interaction is not None
        async with self._respond_lock:
            self._stop_auto_defer()
            if self.interaction.response.is_done():  # deferred: a form can only come first
                raise UserFacingError("I was too slow to open the form; please try again.")
            await self.interaction.response.send_modal(modal)

    def typing(self, *, ephemeral: bool = False) -> Any:
        """The typing indicator for a message; a defer (through the lock) for an interaction."""
        if self.interaction is None:
            return super().typing()
        return _Deferring(self, ephemeral)


class _Deferring:
    def __init__(self, ctx: VoiceContext, ephemeral: bool) -> None:
        self.ctx = ctx
        self.ephemeral = ephemeral

    async def __aenter__(self) -> None:
        await self.ctx.defer(ephemeral=self.ephemeral)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


async def context_of(bot: commands.Bot, interaction: discord.Interaction[Any]) -> VoiceContext:
    """The request's context for an app command or context menu (made once, then reused)."""
    found = interaction.extras.get("context")
    if isinstance(found, VoiceContext):
        return found
    return await bot.get_context(interaction, cls=VoiceContext)
