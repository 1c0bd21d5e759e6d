"""Chat: the model answers plain messages (where chat is on, in DMs, when mentioned) and
transcripts; `!chat on|off` (`/chat state:`) turns it on per channel.

A dataset with no model yet is trained once on first use, and the question answered when the
training is done. Every reply is logged for `!correct`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.checks import is_admin
from bot.core.context import VoiceContext
from bot.core.jobs import describe_job
from bot.core.messages import ON_OFF, Kind, kind_of, parse_on_off
from bot.core.replies import reply_error
from bot.services.model.policy import FirstTrainings, active_dataset
from bot.services.model.service import NoModelError
from bot.services.tasks.job import Job
from bot.services.tenancy.settings import CHAT, ServerSettings
from bot.services.tenancy.tenants import Tenant, Tenants

log = logging.getLogger(__name__)

NOT_SURE = (
    "I'm not sure what you mean. You can teach me: reply to this message with "
    "`!correct` and the answer you expected."
)


class Chat(commands.Cog):
    def __init__(
        self,
        bot: VoiceChatBot,
        tenants: Tenants,
        server_settings: ServerSettings,
        first_trainings: FirstTrainings,
    ) -> None:
        self.bot = bot
        self.tenants = tenants
        self.server_settings = server_settings
        self.first_trainings = first_trainings

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if kind_of(message, self.bot.settings.command_prefix) is not Kind.CHAT:
            return
        if await self.chat_enabled(message):
            ctx = await self.bot.get_context(message)
            await self.answer(ctx, self._without_mention(message.content))

    @commands.Cog.listener()
    async def on_transcript(self, ctx: VoiceContext, text: str) -> None:
        if await self.chat_enabled(ctx.message):
            await self.answer(ctx, text)

    @commands.Cog.listener()
    async def on_spoken_request(self, ctx: VoiceContext, text: str) -> None:
        """A request said in voice (a wake word, or conversation mode): always answered."""
        await self.answer(ctx, text)

    async def chat_enabled(self, message: discord.Message) -> bool:
        if message.guild is None or self.bot.user in message.mentions:
            return True
        return await self.server_settings.channel(message.channel.id, CHAT)

    def _without_mention(self, content: str) -> str:
        if self.bot.user is None:
            return content
        for mention in (f"<@{self.bot.user.id}>", f"<@!{self.bot.user.id}>"):
            content = content.replace(mention, "")
        return content.strip()

    async def answer(self, ctx: VoiceContext, text: str) -> None:
        """Answer `text` (a message or a transcript) with the model; log it for !correct."""
        if not text.strip():
            return
        try:
            tenant = self.tenants.get(ctx.namespace)
            dataset = await active_dataset(self.server_settings, ctx.guild and ctx.guild.id)
            try:
                prediction = await tenant.models.predict(dataset, text)
            except NoModelError:
                if await self._train_first(tenant, dataset, ctx, text):
                    return
                raise
            reply = prediction.reply if prediction.sure else NOT_SURE
            # Replies come from user-made data: they never ping anyone.
            sent = await ctx.answer(reply, allowed_mentions=discord.AllowedMentions.none())
            await self.bot.record_reply(ctx, sent, text, reply, "chat", dataset)
        except Exception as exc:  # noqa: BLE001 - the one handler decides what the user sees
            await reply_error(ctx, exc)

    async def _train_first(
        self, tenant: Tenant, dataset: str, ctx: VoiceContext, text: str
    ) -> bool:
        """No model yet: train the dataset once, then answer. False if there is no data."""
        first = await self.first_trainings.start(
            tenant.namespace,
            tenant.models,
            tenant.datasets,
            dataset,
            on_done=self._answer_when_trained(ctx, text),
        )
        if first is None:
            return False
        job, started = first
        if not started or job is None:
            await ctx.answer(f"I'm still learning dataset `{dataset}`; ask me again in a moment.")
            return True
        await ctx.answer(
            f"One moment: I'm learning dataset `{dataset}` for the first time "
            f"(job `{job.id}`). I'll answer as soon as it's done."
        )
        return True

    def _answer_when_trained(
        self, ctx: VoiceContext, text: str
    ) -> Callable[[Job], Awaitable[None]]:
        async def answer(done: Job) -> None:
            if done.status == "done":
                await self.answer(ctx, text)
            else:
                await ctx.answer(describe_job(done))

        return answer

    @commands.hybrid_command(
        brief="Turn chat replies on or off in this channel (admins).",
        help="With chat on, I answer every plain message in this channel. I always answer in "
        "DMs and when mentioned.",
        extras={"example": "chat on"},
    )
    @app_commands.describe(state="on: answer every plain message here; off: only mentions")
    @app_commands.choices(state=ON_OFF)
    @app_commands.default_permissions(manage_guild=True)
    @commands.guild_only()
    @is_admin()
    async def chat(self, ctx: VoiceContext, state: str) -> None:
        enabled = parse_on_off(state)
        await self.server_settings.set_channel(ctx.channel.id, CHAT, enabled)
        text = (
            "Chat is on here: I answer plain messages in this channel."
            if enabled
            else "Chat is off here: I answer only when mentioned."
        )
        await ctx.answer(text)


async def setup(bot: VoiceChatBot) -> None:
    services = bot.services
    await bot.add_cog(
        Chat(bot, services.tenants, services.server_settings, services.first_trainings)
    )
