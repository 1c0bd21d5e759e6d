"""`!feedback`, `!correct` and `!forgetme`, their `/` forms and the **Correct this reply** menu.

Each command is defined once, for `!` and `/`: `!feedback TEXT` is `/feedback send`, `list` and
`export` take the owners' scope from `core.scope_option`, and `!correct [MESSAGE_ID] TEXT` (or
as a reply) is `/correct message: answer:`. The menu, a second definition because a context
menu can't be a hybrid command, opens a modal for the right answer, then does what `!correct`
does. The thank-you for feedback and
`!forgetme`'s count are private when asked with `/`.
"""

from __future__ import annotations

import io
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.checks import OWNER_VIEW_HELP, is_admin
from bot.core.context import VoiceContext, context_of
from bot.core.scope_option import SERVER, SlashLimited, scoped_command, slash_text
from bot.errors import InvalidInputError, NotFoundError
from bot.services.hearing.listening.service import ListeningService
from bot.services.model.corrections import Corrections
from bot.services.storage import Storage
from bot.services.tenancy.namespaces import Scope
from bot.services.voice.reading import ReadAloud

MAX_FEEDBACK_CHARS = 1000
THANKS = "Thank you for your feedback. We will use it to improve the model."
# What `Storage.forget_user` counts (table names), in the user's words.
FORGOTTEN = {"feedback": "feedback", "corrections": "corrections", "reply_log": "logged messages"}
MAX_LISTED = 50
FEEDBACK_TEXT = slash_text(MAX_FEEDBACK_CHARS)
# `/feedback list count:` stays within 1..50; `!feedback list 5000` lists the most there are.
LISTED_COUNT = SlashLimited(int, 1, MAX_LISTED)
MESSAGE_TEXT = SlashLimited(str)
MESSAGE_ID = re.compile(r"(\d{15,22})\s*/?\s*$")  # an id, or the end of a message link
FEEDBACK_BRIEF = "Tell the bot's admins what you think."
CORRECT_BRIEF = "Correct one of the bot's replies; the next training learns it."


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
    def __init__(
        self,
        bot: VoiceChatBot,
        storage: Storage,
        corrections: Corrections,
        listening: ListeningService,
        reading: ReadAloud,
    ) -> None:
        self.bot = bot
        self.storage = storage
        self.corrections = corrections
        self.listening = listening
        self.reading = reading
        self.menu = app_commands.ContextMenu(name="Correct this reply", callback=self.correct_menu)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # ----- feedback ----------------------------------------------------------------------

    @commands.hybrid_group(
        fallback="send",
        case_insensitive=True,
        rest_is_raw=True,  # `!feedback` alone gets send_feedback's hint, not a usage error
        brief=FEEDBACK_BRIEF,
        description=FEEDBACK_BRIEF,
        help="Stores your feedback for this server's admins. Admins: `!feedback list [N]` shows "
        "the latest entries and `!feedback export` sends them all as CSV."
        + OWNER_VIEW_HELP
        + " With `/`: `/feedback send`, `/feedback list`, `/feedback export`.",
        extras={"example": "feedback The answers about the weather are great"},
    )
    @app_commands.describe(text="What you think: what works, what doesn't, what you miss")
    async def feedback(
        self, ctx: VoiceContext, *, text: str = commands.parameter(converter=FEEDBACK_TEXT)
    ) -> None:
        await self.send_feedback(ctx, text)

    @scoped_command(
        group=feedback,
        name="list",
        brief="Show this server's latest feedback (admins).",
        extras={"example": "feedback list 5"},
    )
    @app_commands.describe(count="How many entries (default 10, at most 50)")
    @is_admin()
    async def feedback_list(
        self,
        ctx: VoiceContext,
        count: int = commands.parameter(converter=LISTED_COUNT, default=10),
        scope: Scope = SERVER,
    ) -> None:
        await self.list_feedback(ctx, scope, count)

    @scoped_command(
        group=feedback,
        name="export",
        brief="All of this server's feedback as CSV (admins).",
        extras={"example": "feedback export"},
    )
    @is_admin()
    async def feedback_export(self, ctx: VoiceContext, scope: Scope = SERVER) -> None:
        await self.export_feedback(ctx, scope)

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
        await self.storage.add_feedback(
            ctx.author.id, guild_id, ctx.channel.id, text, namespace=ctx.namespace
        )
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

    @scoped_command(
        brief=CORRECT_BRIEF,
        help="Reply to one of my messages with `!correct better answer`, or give its id: "
        "`!correct MESSAGE_ID better answer`. When the message was a chat reply, the pair "
        "(what was asked -> the corrected reply) is added to the training data of the dataset "
        "whose model made the reply. With `/`: `/correct message: answer:`, or "
        "**Apps → Correct this reply** on the message.",
        usage="[MESSAGE_ID] TEXT",
        rest_is_raw=True,  # as a reply, `!correct TEXT` is all correction: see _target_and_text
        extras={"example": "correct 1234567890 Hello! Nice to meet you."},
    )
    @app_commands.describe(
        message="The id or link of my reply (or use Apps → Correct this reply on it)",
        answer="The reply I should have given",
    )
    async def correct(
        self,
        ctx: VoiceContext,
        message: str = commands.parameter(converter=MESSAGE_TEXT),
        *,
        answer: str = commands.parameter(converter=FEEDBACK_TEXT),
    ) -> None:
        target_id, correction = self._target_and_text(ctx, message, answer)
        await self.correct_message(ctx, target_id, correction)

    # A context menu can't be a hybrid command, and only a modal can ask it for the text.
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
        taught = await self.corrections.correct(
            message_id=target.id,
            author_id=ctx.author.id,
            guild_id=ctx.guild.id if ctx.guild else None,
            namespace=ctx.namespace,
            original=target.content,
            correction=correction,
        )
        dataset = taught.dataset
        if dataset is None:
            await ctx.answer(
                "Thanks, your correction is saved. That message wasn't a chat reply, so the "
                "training data is unchanged."
            )
            return
        await ctx.answer(
            f"Thanks, your correction is saved and added to the training data of dataset "
            f"`{dataset}`: “{_quote(taught.user_text or '')}” → “{_quote(correction)}”. "
            f"It takes effect after the next `{ctx.shown_prefix}train {dataset}`."
        )

    def _target_and_text(self, ctx: VoiceContext, first: str, rest: str) -> tuple[int, str]:
        """The message to correct and the correction: `first` is its id or link, else (a `!`
        reply) the correction's first word, and `rest` what follows as written."""
        prefix = ctx.shown_prefix
        usage = (
            f"Reply to one of my messages with `{prefix}correct better answer`, or "
            f"give its id: `{prefix}correct MESSAGE_ID better answer`."
            if prefix != "/"
            else "Give the id of one of my messages, or its link (Copy Message Link)."
        )
        reference = ctx.message.reference
        found = MESSAGE_ID.search(first.strip())
        if found is not None:
            target_id, correction = int(found.group(1)), rest
        elif reference is not None and reference.message_id:
            target_id, correction = reference.message_id, first + rest
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
        counts = await self.corrections.forget(ctx.author.id)
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
        Feedback(
            bot,
            services.storage,
            services.corrections,
            services.listening,
            services.reading,
        )
    )
