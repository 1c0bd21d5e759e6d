"""Counting commands for the metrics (bot/metrics.py): their kind, how they ended, how long.

Each command is counted once, when it ends: as ok by the completion events (cogs/observe.py),
or by the one error handler (cogs/errors.py) with the outcome it chose from what the user was
told. A command that answered a failure itself through `reply_error` (transcribing, speaking)
ends as completed but counts the outcome that reply noted on its context. The cost is a few
microseconds per command.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import discord
from discord import app_commands

from bot.core.context import VoiceContext
from bot.metrics import COMMAND_SECONDS, COMMANDS, OK

PREFIX, SLASH, MENU = "prefix", "slash", "menu"


def kind_of(command: Any, interaction: discord.Interaction[Any] | None) -> str:
    if interaction is None:
        return PREFIX
    return MENU if isinstance(command, app_commands.ContextMenu) else SLASH


def _record(name: str, kind: str, outcome: str, created_at: datetime) -> None:
    COMMANDS.labels(name, kind, outcome).inc()
    waited = (discord.utils.utcnow() - created_at).total_seconds()
    COMMAND_SECONDS.labels(name).observe(max(0.0, waited))


def _first_count(ctx: VoiceContext | None, interaction: discord.Interaction[Any] | None) -> bool:
    """True the first time a request is counted; an interaction may have several contexts
    (a modal continues its command), so it keeps the mark itself."""
    if interaction is not None:
        if interaction.extras.get("counted"):
            return False
        interaction.extras["counted"] = True
    if ctx is not None:
        if ctx.counted:
            return False
        ctx.counted = True
    return True


def count_command(ctx: VoiceContext, outcome: str | None = None) -> None:
    """Count the command of `ctx` (`!` or hybrid) once: `outcome`, else what `ctx` noted,
    else ok. A message that is no command (unknown, or a listener's) is not counted."""
    command = ctx.command
    if command is None or not _first_count(ctx, ctx.interaction):
        return
    interaction = ctx.interaction
    created = interaction.created_at if interaction is not None else ctx.message.created_at
    _record(command.qualified_name, kind_of(command, interaction), outcome or ctx.outcome or OK,
            created)  # fmt: skip


def count_interaction(interaction: discord.Interaction[Any], outcome: str | None = None) -> None:
    """Count an app command (slash or menu) once, like `count_command`."""
    command = interaction.command
    ctx = interaction.extras.get("context")
    ctx = ctx if isinstance(ctx, VoiceContext) else None
    if command is None or not _first_count(ctx, interaction):
        return
    noted = ctx.outcome if ctx is not None else None
    _record(command.qualified_name, kind_of(command, interaction), outcome or noted or OK,
            interaction.created_at)  # fmt: skip


def note_outcome(ctx: VoiceContext, outcome: str) -> None:
    """A failure the request answered itself; its command counts it when it completes."""
    if ctx.outcome is None:
        ctx.outcome = outcome
