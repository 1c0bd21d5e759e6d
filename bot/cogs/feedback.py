"""`!feedback`, `!correct` and `!forgetme`, their `/` forms and the **Correct this reply** menu.

`/feedback send|list|export` and `/correct message: answer:` are twins of the `!` commands
(whose free text can't be typed options) and call the same methods. The menu opens a modal
for the right answer, then does what `!correct` does. The thank-you for feedback and
`!forgetme`'s count are private when asked with `/`.
"""

from __future__ import annotations

import io
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import VoiceChatBot
from bot.cogs._checks import (
    OWNER_VIEW_HELP,
    namespace_of,
    require_admin,
    scope_for,
    scope_from_option,
)
from bot.cogs._context import VoiceContext, context_of
from bot.cogs._suggest import matching, owners_only, suggest
from bot.cogs.model import active_dataset
from bot.errors import InvalidInputError, NotFoundError
from bot.services.hearing.listening.service import ListeningService
from bot.services.storage import Storage
from bot.services.tenancy.namespaces import Scope
from bot.services.tenancy.tenants import Tenants
from bot.services.voice.reading import ReadAloud

MAX_FEEDBACK_CHARS = 1000
THANKS = "Thank you for your feedback. We will use it to improve the model."
# What `Storage.forget_user` counts (table names), in the user's words.
FORGOTTEN = {"feedback": "feedback", "corrections": "corrections", "reply_log": "logged messages"}
# `list [N]` / `export`, optionally with an owner's `--all` / `--server ID` (see scope_for).
ADMIN_ACTION = re.compile(r"(list)(?:\s+(\d+))?|(export)", re.IGNORECASE)
OWNER_FLAG_TAIL = re.compile(r"\s+--(?:all|server)\b.*$", re.IGNORECASE | re.DOTALL)
MAX_LISTED = 50
MESSAGE_ID = re.compile(r"(\d{15,22})\s*/?\s*$")  # an id, or the end of a message link
FEEDBACK_BRIEF = "Tell the bot's admins what you think."
CORRECT_BRIEF = "Correct one of the bot's replies; the next training learns it."
SERVER_OPTION = "Bot owners: all, or a server id (dm-USERID, legacy) to look at"


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CorrectionModal(discord.ui.Modal, title="Correct this reply"):
    """Asks for the right answer to one of the bot's replies, then corrects it."""

    answer: discord.ui.TextInput[CorrectionModal] = discord.ui.TextInput(
        label="The right answer",
        style=discord.TextStyle.paragraph,
        max_length=MAX_FEEDBACK_CHARS,
    )

    def __init__(self, cog: Feedback, ctx: VoiceContext, target: discord.Message) -> None:
        super().__init__()
        self.cog, self.ctx, self.target = cog, ctx, target
        self.answer.placeholder = _quote(target.content, 100) or None

    async def on_submit(self, interaction: discord.Interaction[VoiceChatBot]) -> None:  # type: ignore[override]
        ctx = self.ctx.continued(interaction)
        await self.cog.correct_message(ctx, self.target.id, self.answer.value.strip())

    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction[VoiceChatBot], error: Exception
    ) -> None:
        await interaction.client.tree.on_error(interaction, error)  # type: ignore[arg-type]


class Feedback(commands.Cog):
    feedback_group = app_commands.Group(name="feedback", description=FEEDBACK_BRIEF)

    def __init__(
        self,
        bot: VoiceChatBot,
        storage: Storage,
        tenants: Tenants,
        listening: ListeningService,
        reading: ReadAloud,
    ) -> None:
        self.bot = bot
        self.storage = storage
        self.tenants = tenants
        self.listening = listening
        self.reading = reading
        self.menu = app_commands.ContextMenu(name="Correct this reply", callback=self.correct_menu)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # ----- feedback ----------------------------------------------------------------------

    @commands.command(
        brief=FEEDBACK_BRIEF,
        help="Stores your feedback for this server's admins. Admins: `!feedback list [N]` shows "
        "the latest entries and `!feedback export` sends them all as CSV."
        + OWNER_VIEW_HELP
        + " With `/`: `/feedback send`, `/feedback list`, `/feedback export`.",
        extras={"example": "feedback The answers about the weather are wrong"},
    )
    async def feedback(self, ctx: VoiceContext, *, text: str = "") -> None:
        action = ADMIN_ACTION.fullmatch(OWNER_FLAG_TAIL.sub("", text.strip()))
        if action:
            await require_admin(ctx)
            scope, _ = await scope_for(ctx, text)
            if action.group(3):
                await self.export_feedback(ctx, scope)
            else:
                await self.list_feedback(ctx, scope, int(action.group(2) or 10))
            return
        await self.send_feedback(ctx, text)

    @feedback_group.command(name="send", description=FEEDBACK_BRIEF)
    @app_commands.describe(text="What you think: what works, what doesn't, what you miss")
    async def feedback_send(
        self,
        interaction: discord.Interaction[VoiceChatBot],
        text: app_commands.Range[str, 1, MAX_FEEDBACK_CHARS],
    ) -> None:
        await self.send_feedback(await context_of(self.bot, interaction), text)

    @feedback_group.command(name="list", description="Show this server's latest feedback (admins).")
    @app_commands.describe(count="How many entries (default 10, at most 50)", server=SERVER_OPTION)
    async def feedback_list(
        self,
        interaction: discord.Interaction[VoiceChatBot],
        count: app_commands.Range[int, 1, MAX_LISTED] = 10,
        server: str | None = None,
    ) -> None:
        ctx = await context_of(self.bot, interaction)
        await require_admin(ctx)
        await self.list_feedback(ctx, await scope_from_option(ctx, server), count)

    @feedback_group.command(
        name="export", description="All of this server's feedback as CSV (admins)."
    )
    @app_commands.describe(server=SERVER_OPTION)
    async def feedback_export(
        self, interaction: discord.Interaction[VoiceChatBot], server: str | None = None
    ) -> None:
        ctx = await context_of(self.bot, interaction)
        await require_admin(ctx)
        await self.export_feedback(ctx, await scope_from_option(ctx, server))

    @feedback_list.autocomplete("server")
    @feedback_export.autocomplete("server")
    @suggest
    @owners_only
    async def _servers(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        return matching(["all", *self.tenants.namespaces()], current)

    async def send_feedback(self, ctx: VoiceContext, text: str) -> None:
        text = text.strip()
        if not text:
            raise InvalidInputError(
                f"Write your feedback after the command, like `{ctx.clean_prefix}feedback "
                "The bot answers too slowly`."
            )
        if len(text) > MAX_FEEDBACK_CHARS:
            raise InvalidInputError(
                f"Your feedback is too long ({len(text)} characters; the limit is "
                f"{MAX_FEEDBACK_CHARS}). Please shorten it or send it in parts."
            )
        guild_id = ctx.guild.id if ctx.guild else None
        await self.storage.add_feedback(ctx.author.id, guild_id, ctx.channel.id, text)
        await ctx.answer(THANKS, private=True)

    async def list_feedback(self, ctx: VoiceContext, scope: Scope, count: int) -> None:
        namespace = None if scope.everywhere else scope.namespace
        entries = await self.storage.list_feedback(namespace, min(count, MAX_LISTED))
        if not entries:
            await ctx.answer("There is no feedback yet.")
            return
        lines = [f"**Latest {len(entries)} feedback entries**"]
        for entry in entries:
            where = f" [{entry.namespace}]" if scope.everywhere else ""
            lines.append(
                f"#{entry.id}{where} {entry.created_at[:16]} <@{entry.user_id}>: "
                f"{_quote(entry.text)}"
            )
        await ctx.answer("\n".join(lines)[:2000], allowed_mentions=discord.AllowedMentions.none())

    async def export_feedback(self, ctx: VoiceContext, scope: Scope) -> None:
        data = await self.storage.feedback_csv(None if scope.everywhere else scope.namespace)
        await ctx.answer(
            "All feedback as CSV:", file=discord.File(io.BytesIO(data), filename="feedback.csv")
        )

    # ----- corrections -------------------------------------------------------------------

    @commands.command(
        brief=CORRECT_BRIEF,
        help="Reply to one of my messages with `!correct better answer`, or give its id: "
        "`!correct MESSAGE_ID better answer`. When the message was a chat reply, the pair "
        "(what was asked -> the corrected reply) is added to the training data of the dataset "
        "whose model made the reply. With `/`: `/correct message: answer:`, or "
        "**Apps → Correct this reply** on the message.",
        extras={"example": "correct 1234567890 Hello! Nice to meet you."},
    )
    async def correct(self, ctx: VoiceContext, *, text: str = "") -> None:
        target_id, correction = self._target_and_text(ctx, text)
        await self.correct_message(ctx, target_id, correction)

    @app_commands.command(name="correct", description=CORRECT_BRIEF)
    @app_commands.describe(
        message="The id or link of my reply (or use Apps → Correct this reply on it)",
        answer="The reply I should have given",
    )
    async def correct_slash(
        self,
        interaction: discord.Interaction[VoiceChatBot],
        message: str,
        answer: app_commands.Range[str, 1, MAX_FEEDBACK_CHARS],
    ) -> None:
        ctx = await context_of(self.bot, interaction)
        found = MESSAGE_ID.search(message.strip())
        if found is None:
            raise InvalidInputError(
                "Give the id of one of my messages, or its link (Copy Message Link)."
            )
        await self.correct_message(ctx, int(found.group(1)), self._checked(answer, ""))

    async def correct_menu(
        self, interaction: discord.Interaction[VoiceChatBot], message: discord.Message
    ) -> None:
        """The **Correct this reply** menu: a modal asks for the right answer."""
        ctx = await context_of(self.bot, interaction)
        self._check_mine(message)
        await ctx.show_modal(CorrectionModal(self, ctx, message))

    def _check_mine(self, target: discord.Message) -> None:
        if self.bot.user is None or target.author.id != self.bot.user.id:
            raise InvalidInputError(
                "That message isn't one of mine; I can only correct my own replies."
            )

    async def correct_message(self, ctx: VoiceContext, target_id: int, correction: str) -> None:
        """Save a correction of the bot's message `target_id` in this channel; a chat reply's
        correction also becomes training data of the dataset that made it."""
        try:
            target = await ctx.channel.fetch_message(target_id)
        except discord.NotFound:
            raise NotFoundError("Message not found.") from None
        self._check_mine(target)
        correction = self._checked(correction, "")
        guild_id = ctx.guild.id if ctx.guild else None
        namespace = namespace_of(ctx.guild, ctx.author)
        logged = await self.storage.get_reply(target.id)
        if (
            logged is None
            or logged.kind != "chat"
            or not logged.user_text
            or logged.namespace != namespace
        ):
            await self.storage.add_correction(
                target.id, ctx.author.id, guild_id, target.content, correction
            )
            await ctx.answer(
                "Thanks, your correction is saved. That message wasn't a chat reply, so the "
                "training data is unchanged."
            )
            return
        # Teach the dataset whose model made the reply, even if another one is active now.
        dataset = logged.dataset or await active_dataset(self.storage, self.bot.settings, guild_id)
        # The record first: a crash in between leaves a record !forgetme can still act on.
        await self.storage.add_correction(
            target.id,
            ctx.author.id,
            guild_id,
            target.content,
            correction,
            dataset=dataset,
            user_text=logged.user_text,
        )
        datasets = self.tenants.get(namespace).datasets
        await datasets.add_correction_async(dataset, logged.user_text, correction)
        await ctx.answer(
            f"Thanks, your correction is saved and added to the training data of dataset "
            f"`{dataset}`: “{_quote(logged.user_text)}” → “{_quote(correction)}”. "
            f"It takes effect after the next `{ctx.shown_prefix}train {dataset}`."
        )

    def _target_and_text(self, ctx: VoiceContext, text: str) -> tuple[int, str]:
        usage = (
            f"Reply to one of my messages with `{ctx.clean_prefix}correct better answer`, or "
            f"give its id: `{ctx.clean_prefix}correct MESSAGE_ID better answer`."
        )
        reference = ctx.message.reference
        words = text.split(maxsplit=1)
        if words and words[0].isdigit() and len(words[0]) >= 15:
            target_id, correction = int(words[0]), (words[1] if len(words) > 1 else "")
        elif reference is not None and reference.message_id:
            target_id, correction = reference.message_id, text
        else:
            raise InvalidInputError(usage)
        return target_id, self._checked(correction, usage)

    @staticmethod
    def _checked(correction: str, usage: str) -> str:
        correction = correction.strip()
        if not correction:
            raise InvalidInputError(f"Write the corrected reply too. {usage}".strip())
        if len(correction) > MAX_FEEDBACK_CHARS:
            raise InvalidInputError(
                f"That correction is too long ({len(correction)} characters; the limit is "
                f"{MAX_FEEDBACK_CHARS})."
            )
        return correction

    # ----- forgetting --------------------------------------------------------------------

    @commands.hybrid_command(
        brief="Delete your feedback, corrections, logged messages, listening and reading choices.",
        extras={"example": "forgetme"},
    )
    async def forgetme(self, ctx: VoiceContext) -> None:
        # Training data first, then the records: a crash in between can be redone.
        for lesson in await self.storage.user_corrections(ctx.author.id):
            if lesson.dataset and lesson.dataset_namespace:
                datasets = self.tenants.get(lesson.dataset_namespace).datasets
                await datasets.remove_correction_async(
                    lesson.dataset, lesson.user_text or "", lesson.correction
                )
        counts = await self.storage.forget_user(ctx.author.id)
        total = sum(counts.values())
        detail = ", ".join(f"{n} {FORGOTTEN.get(name, name)}" for name, n in counts.items())
        text = f"Done: I deleted {total} row(s) about you ({detail})."
        if servers := await self.reading.forget(ctx.author.id):
            text += (
                f" Your reading-aloud voice, speed and nickname ({servers} server(s)) are gone too."
            )
        if await self.listening.forget(ctx.author.id):
            text += (
                " Your listening choice is gone too: where listening is on, I hear you again "
                f"(`{ctx.shown_prefix}listen optout` to opt out again)."
            )
        await ctx.answer(text, private=True)


async def setup(bot: VoiceChatBot) -> None:
    services = bot.services
    await bot.add_cog(
        Feedback(bot, services.storage, services.tenants, services.listening, services.reading)
    )
