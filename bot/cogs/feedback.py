"""`!feedback`, `!correct` and `!forgetme`."""

from __future__ import annotations

import io
import re

import discord
from discord.ext import commands

from bot.app import VoiceChatBot
from bot.cogs._checks import OWNER_VIEW_HELP, NotAdmin, namespace_of, scope_for, user_is_admin
from bot.cogs.model import active_dataset
from bot.errors import InvalidInputError, NotFoundError
from bot.services.namespaces import Scope
from bot.services.storage import Storage
from bot.services.tenancy import Tenants

MAX_FEEDBACK_CHARS = 1000
THANKS = "Thank you for your feedback. We will use it to improve the model."
# What `Storage.forget_user` counts (table names), in the user's words.
FORGOTTEN = {"feedback": "feedback", "corrections": "corrections", "reply_log": "logged messages"}
# `list [N]` / `export`, optionally with an owner's `--all` / `--server ID` (see scope_for).
ADMIN_ACTION = re.compile(r"(list)(?:\s+(\d+))?|(export)", re.IGNORECASE)
OWNER_FLAG_TAIL = re.compile(r"\s+--(?:all|server)\b.*$", re.IGNORECASE | re.DOTALL)
MAX_LISTED = 50


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Feedback(commands.Cog):
    def __init__(self, bot: VoiceChatBot, storage: Storage, tenants: Tenants) -> None:
        self.bot = bot
        self.storage = storage
        self.tenants = tenants

    @commands.command(
        brief="Tell the bot's admins what you think.",
        help="Stores your feedback for this server's admins. Admins: `!feedback list [N]` shows "
        "the latest entries and `!feedback export` sends them all as CSV." + OWNER_VIEW_HELP,
        extras={"example": "feedback The answers about the weather are wrong"},
    )
    async def feedback(self, ctx: commands.Context[VoiceChatBot], *, text: str = "") -> None:
        action = ADMIN_ACTION.fullmatch(OWNER_FLAG_TAIL.sub("", text.strip()))
        if action:
            if not await user_is_admin(self.bot, ctx.author):
                raise NotAdmin()
            scope, _ = await scope_for(ctx, text)
            if action.group(3):
                await self._export(ctx, scope)
            else:
                await self._list(ctx, scope, min(int(action.group(2) or 10), MAX_LISTED))
            return
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
        await ctx.reply(THANKS, mention_author=False)

    async def _list(self, ctx: commands.Context[VoiceChatBot], scope: Scope, count: int) -> None:
        namespace = None if scope.everywhere else scope.namespace
        entries = await self.storage.list_feedback(namespace, count)
        if not entries:
            await ctx.reply("There is no feedback yet.", mention_author=False)
            return
        lines = [f"**Latest {len(entries)} feedback entries**"]
        for entry in entries:
            where = f" [{entry.namespace}]" if scope.everywhere else ""
            lines.append(
                f"#{entry.id}{where} {entry.created_at[:16]} <@{entry.user_id}>: "
                f"{_quote(entry.text)}"
            )
        await ctx.reply(
            "\n".join(lines)[:2000],
            mention_author=False,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def _export(self, ctx: commands.Context[VoiceChatBot], scope: Scope) -> None:
        data = await self.storage.feedback_csv(None if scope.everywhere else scope.namespace)
        await ctx.reply(
            "All feedback as CSV:",
            file=discord.File(io.BytesIO(data), filename="feedback.csv"),
            mention_author=False,
        )

    @commands.command(
        brief="Correct one of the bot's replies; the next training learns it.",
        help="Reply to one of my messages with `!correct better answer`, or give its id: "
        "`!correct MESSAGE_ID better answer`. When the message was a chat reply, the pair "
        "(what was asked -> the corrected reply) is added to the training data of the dataset "
        "whose model made the reply.",
        extras={"example": "correct 1234567890 Hello! Nice to meet you."},
    )
    async def correct(self, ctx: commands.Context[VoiceChatBot], *, text: str = "") -> None:
        target_id, correction = self._target_and_text(ctx, text)
        try:
            target = await ctx.channel.fetch_message(target_id)
        except discord.NotFound:
            raise NotFoundError("Message not found.") from None
        if self.bot.user is None or target.author.id != self.bot.user.id:
            raise InvalidInputError(
                "That message isn't one of mine; I can only correct my own replies."
            )
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
            await ctx.reply(
                "Thanks, your correction is saved. That message wasn't a chat reply, so the "
                "training data is unchanged.",
                mention_author=False,
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
        await ctx.reply(
            f"Thanks, your correction is saved and added to the training data of dataset "
            f"`{dataset}`: “{_quote(logged.user_text)}” → “{_quote(correction)}”. "
            f"It takes effect after the next `{ctx.clean_prefix}train {dataset}`.",
            mention_author=False,
        )

    def _target_and_text(self, ctx: commands.Context[VoiceChatBot], text: str) -> tuple[int, str]:
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
        correction = correction.strip()
        if not correction:
            raise InvalidInputError(f"Write the corrected reply too. {usage}")
        if len(correction) > MAX_FEEDBACK_CHARS:
            raise InvalidInputError(
                f"That correction is too long ({len(correction)} characters; the limit is "
                f"{MAX_FEEDBACK_CHARS})."
            )
        return target_id, correction

    @commands.command(
        brief="Delete your feedback, corrections and logged messages.",
        extras={"example": "forgetme"},
    )
    async def forgetme(self, ctx: commands.Context[VoiceChatBot]) -> None:
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
        await ctx.reply(
            f"Done: I deleted {total} row(s) about you ({detail}).", mention_author=False
        )


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Feedback(bot, bot.services.storage, bot.services.tenants))
