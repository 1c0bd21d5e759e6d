"""The chat model: datasets, `!train` in the background, `!test`, versions and chat replies."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable

import discord
from discord.ext import commands

from bot.app import VoiceChatBot
from bot.cogs._checks import OWNER_VIEW_HELP, is_admin, namespace_of, scope_for
from bot.cogs._messages import Kind, kind_of, parse_on_off, send_chunks
from bot.cogs.errors import reply_error
from bot.config import Settings
from bot.errors import NotFoundError
from bot.services.datasets import check_size, name_from_filename, parse_inline
from bot.services.jobs import Job
from bot.services.models import (
    Evaluation,
    NoModelError,
    TestItem,
    parse_test_data,
    parse_test_file,
)
from bot.services.storage import Storage
from bot.services.tenancy import Tenant, Tenants
from bot.services.text import split_message

log = logging.getLogger(__name__)

NOT_SURE = (
    "I'm not sure what you mean. You can teach me: reply to this message with "
    "`!correct` and the answer you expected."
)
INLINE_DATASET = "custom"
SHOWN_PREDICTIONS = 20


async def active_dataset(storage: Storage, settings: Settings, guild_id: int | None) -> str:
    """The dataset whose model answers chat in this server (DMs use the default)."""
    if guild_id is None:
        return settings.default_dataset
    return await storage.get_guild_setting(guild_id, "dataset", settings.default_dataset)


def describe_job(job: Job, *, show_owner: bool = False) -> str:
    where = f" in `{job.owner}`" if show_owner and job.owner else ""
    text = f"Job `{job.id}` ({job.kind} `{job.subject}`{where}): **{job.status}**"
    if job.waited and job.waited >= 0.1:
        text += f", waited {job.waited:.1f} s"
    if job.duration is not None:
        verb = "ran" if job.finished else "running for"
        text += f", {verb} {job.duration:.1f} s"
    if job.status == "done" and hasattr(job.result, "summary"):
        text += f"\n{job.result.summary()}"
    if job.status == "failed":
        text += f"\nReason: {job.error}. The previous model stays in use."
    return text


def _split_train_args(args: str) -> tuple[str | None, str]:
    """`!train [NAME]` then optional inline lines: (name or None, inline text)."""
    first, _, rest = args.strip().partition("\n")
    if "|" in first:
        return None, args.strip()
    return (first.strip() or None), rest.strip()


def format_evaluation(items: list[TestItem], evaluation: Evaluation) -> str:
    lines = []
    for item, prediction in list(zip(items, evaluation.predictions, strict=True))[
        :SHOWN_PREDICTIONS
    ]:
        sure = "" if prediction.sure else ", not sure"
        line = f"`{item.text[:60]}` → **{prediction.label}** ({prediction.confidence:.0%}{sure})"
        if item.label is not None:
            line += " ✓" if item.label == prediction.label else f" ✗ expected {item.label}"
        lines.append(line)
    if len(items) > SHOWN_PREDICTIONS:
        lines.append(f"… and {len(items) - SHOWN_PREDICTIONS} more.")
    if evaluation.accuracy is not None:
        lines.append(
            f"**Accuracy: {evaluation.accuracy:.1%}** on {evaluation.labeled} labelled items"
        )
    if evaluation.report:
        lines.append(f"```\n{evaluation.report}\n```")
    return "\n".join(lines)


class Model(commands.Cog):
    """Each server (and each user's DMs) has its own datasets, models and jobs: every data
    access goes through `self.tenants.get(namespace)`."""

    def __init__(self, bot: VoiceChatBot, tenants: Tenants, storage: Storage) -> None:
        self.bot = bot
        self.tenants = tenants
        self.storage = storage
        # (namespace, dataset) -> the first training started by a chat message
        self._first_training: dict[tuple[str, str], Job] = {}
        self._starting: set[tuple[str, str]] = set()

    def tenant_of(self, ctx: commands.Context[VoiceChatBot]) -> Tenant:
        return self.tenants.get(namespace_of(ctx.guild, ctx.author))

    async def dataset_for(self, guild: discord.Guild | None) -> str:
        return await active_dataset(self.storage, self.bot.settings, guild and guild.id)

    # ----- chat --------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if kind_of(message, self.bot.settings.command_prefix) is not Kind.CHAT:
            return
        if await self.chat_enabled(message):
            await self.answer(message, self._without_mention(message.content))

    @commands.Cog.listener()
    async def on_transcript(self, message: discord.Message, text: str) -> None:
        if await self.chat_enabled(message):
            await self.answer(message, text)

    async def chat_enabled(self, message: discord.Message) -> bool:
        if message.guild is None or self.bot.user in message.mentions:
            return True
        return bool(await self.storage.get_channel_setting(message.channel.id, "chat", False))

    def _without_mention(self, content: str) -> str:
        if self.bot.user is None:
            return content
        for mention in (f"<@{self.bot.user.id}>", f"<@!{self.bot.user.id}>"):
            content = content.replace(mention, "")
        return content.strip()

    async def answer(self, message: discord.Message, text: str) -> None:
        """Reply to `text` (a message or a transcript) with the model; log it for !correct."""
        if not text.strip():
            return
        try:
            tenant = self.tenants.get(namespace_of(message.guild, message.author))
            dataset = await self.dataset_for(message.guild)
            try:
                prediction = await tenant.models.predict(dataset, text)
            except NoModelError:
                if await self._train_first(tenant, dataset, message, text):
                    return
                raise
            reply = prediction.reply if prediction.sure else NOT_SURE
            # Replies come from user-made data: they never ping anyone.
            sent = await message.reply(
                reply, mention_author=False, allowed_mentions=discord.AllowedMentions.none()
            )
            await self.bot.record_reply(message, sent, text, reply, "chat", dataset)
        except Exception as exc:  # noqa: BLE001 - the one handler decides what the user sees
            await reply_error(message, exc)

    async def _train_first(
        self, tenant: Tenant, dataset: str, message: discord.Message, text: str
    ) -> bool:
        """No model yet: train the dataset once, then answer. False if there is no data."""
        key = (tenant.namespace, dataset)
        running = self._first_training.get(key)
        if (running is not None and not running.finished) or key in self._starting:
            await message.reply(
                f"I'm still learning dataset `{dataset}`; ask me again in a moment.",
                mention_author=False,
            )
            return True
        self._starting.add(key)  # set before any await: two messages start one training
        try:
            if not await tenant.datasets.exists_async(dataset):
                return False
            job = await tenant.models.start_training(
                dataset, on_done=self._answer_when_trained(key, message, text)
            )
            self._first_training[key] = job
        finally:
            self._starting.discard(key)
        await message.reply(
            f"One moment: I'm learning dataset `{dataset}` for the first time "
            f"(job `{job.id}`). I'll answer as soon as it's done.",
            mention_author=False,
        )
        return True

    def _answer_when_trained(
        self, key: tuple[str, str], message: discord.Message, text: str
    ) -> Callable[[Job], Awaitable[None]]:
        async def answer(done: Job) -> None:
            self._first_training.pop(key, None)
            if done.status == "done":
                await self.answer(message, text)
            else:
                await message.reply(describe_job(done), mention_author=False)

        return answer

    @commands.command(
        brief="Turn chat replies on or off in this channel (admins).",
        help="With chat on, I answer every plain message in this channel. I always answer in "
        "DMs and when mentioned.",
        extras={"example": "chat on"},
    )
    @commands.guild_only()
    @is_admin()
    async def chat(self, ctx: commands.Context[VoiceChatBot], state: str) -> None:
        enabled = parse_on_off(state)
        await self.storage.set_channel_setting(ctx.channel.id, "chat", enabled)
        text = (
            "Chat is on here: I answer plain messages in this channel."
            if enabled
            else "Chat is off here: I answer only when mentioned."
        )
        await ctx.reply(text, mention_author=False)

    # ----- datasets ----------------------------------------------------------------------

    @commands.command(
        brief="List this server's datasets.",
        help="Lists this server's datasets and the shared samples with their row and label "
        "counts." + OWNER_VIEW_HELP,
        extras={"example": "datasets"},
    )
    async def datasets(self, ctx: commands.Context[VoiceChatBot], *, args: str = "") -> None:
        scope, _ = await scope_for(ctx, args)
        namespaces = self.tenants.namespaces() if scope.everywhere else [scope.namespace]
        active = await self.dataset_for(ctx.guild)
        own = namespace_of(ctx.guild, ctx.author)
        lines = []
        for namespace in namespaces:
            tenant = self.tenants.get(namespace)
            infos = await tenant.datasets.list_async()
            if scope.everywhere or namespace != own:
                lines.append(f"**Datasets of `{namespace}`**")
            elif infos:
                lines.append("**Datasets**")
            for info in infos:
                here = namespace == own and info.name == active
                mark = " ← active here" if here else ""
                sample = " (sample)" if info.sample else ""
                extra = f", {info.corrections} corrections" if info.corrections else ""
                lines.append(
                    f"`{info.name}`{sample}: {info.rows} rows, {info.labels} labels{extra}{mark}"
                )
        if not lines:
            await ctx.reply(
                "There are no datasets yet. Add one with `!train`.", mention_author=False
            )
            return
        await send_chunks(ctx, "\n".join(lines))

    @commands.command(
        brief="Choose the dataset whose model answers chat here (admins).",
        extras={"example": "select_dataset smalltalk"},
    )
    @commands.guild_only()
    @is_admin()
    async def select_dataset(self, ctx: commands.Context[VoiceChatBot], name: str) -> None:
        assert ctx.guild is not None
        tenant = self.tenant_of(ctx)
        if not await tenant.datasets.exists_async(name):
            raise NotFoundError(f"Dataset `{name}` not found. `!datasets` lists them.")
        info = await tenant.datasets.info_async(name)
        await self.storage.set_guild_setting(ctx.guild.id, "dataset", info.name)
        text = f"Dataset `{info.name}` selected ({info.rows} rows, {info.labels} labels)."
        if await tenant.models.active_version(info.name) is None:
            text += f" It has no model yet: train it with `!train {info.name}`."
        await ctx.reply(text, mention_author=False)

    # ----- training ----------------------------------------------------------------------

    @commands.command(
        brief="Train the model on a dataset (admins). Replies with a job ID.",
        help="`!train` retrains the active dataset. `!train NAME` trains dataset NAME. Attach a "
        "CSV (text,label[,reply]) or JSON file to save it as a dataset first (named after the "
        "file unless NAME is given), or write examples on the lines after the command as "
        "`text | label` or `text | label | reply` (saved as NAME, default `custom`).",
        extras={"example": "train smalltalk"},
    )
    @is_admin()
    async def train(self, ctx: commands.Context[VoiceChatBot], *, args: str = "") -> None:
        # No rate limit: only admins train, and trainings of one dataset queue (JobRunner keys).
        saved, job = await self._save_and_start(ctx, args)
        queued = (
            " It is queued behind another training of this dataset."
            if job.status == "queued"
            else ""
        )
        await ctx.reply(
            f"{saved}Model training started. Job ID: {job.id}{queued}", mention_author=False
        )

    async def _save_and_start(
        self, ctx: commands.Context[VoiceChatBot], args: str
    ) -> tuple[str, Job]:
        """Save the attached or inline dataset, if any, and queue its training."""
        name, inline = _split_train_args(args)
        store = self.tenant_of(ctx).datasets
        saved = ""
        if ctx.message.attachments:
            attachment = ctx.message.attachments[0]
            check_size(attachment.size, store.max_bytes)
            data = await attachment.read()
            dataset = name or name_from_filename(attachment.filename)
            info = await store.save_async(dataset, data, attachment.filename)
            saved = f"Saved {info.rows} rows with {info.labels} labels as dataset `{info.name}`. "
            name = info.name
        elif inline:
            rows = parse_inline(inline, max_rows=self.bot.settings.train_max_rows)
            info = await store.save_async(name or INLINE_DATASET, rows)
            saved = f"Saved {info.rows} rows with {info.labels} labels as dataset `{info.name}`. "
            name = info.name
        # An existing dataset is not read here: the worker reads it (a big one would stall
        # the bot), and a dataset that can't be trained fails the job with the reason.
        job = await self.tenant_of(ctx).models.start_training(
            name or await self.dataset_for(ctx.guild), on_done=self._announcer(ctx.message)
        )
        return saved, job

    def _announcer(self, message: discord.Message) -> Callable[[Job], Awaitable[None]]:
        async def announce(job: Job) -> None:
            await message.channel.send(describe_job(job))

        return announce

    @commands.command(
        brief="Show a job's status.",
        help="Shows one of this server's jobs. Bot owners: `--all` finds any server's job.",
        extras={"example": "job a1b2c3"},
    )
    async def job(self, ctx: commands.Context[VoiceChatBot], *, args: str) -> None:
        scope, job_id = await scope_for(ctx, args)
        found = self.tenants.jobs.get(job_id) if job_id else None
        if found is None or not (scope.everywhere or found.owner == scope.namespace):
            raise NotFoundError(f"Job `{job_id[:20]}` not found. `!jobs` lists the latest.")
        await ctx.reply(describe_job(found, show_owner=scope.everywhere), mention_author=False)

    @commands.command(
        brief="List this server's latest jobs.",
        help="Lists this server's latest jobs." + OWNER_VIEW_HELP,
        extras={"example": "jobs"},
    )
    async def jobs(self, ctx: commands.Context[VoiceChatBot], *, args: str = "") -> None:
        scope, _ = await scope_for(ctx, args)
        owner = None if scope.everywhere else scope.namespace
        latest = self.tenants.jobs.list(10, owner=owner)
        if not latest:
            await ctx.reply("No jobs yet.", mention_author=False)
            return
        lines = [describe_job(job, show_owner=scope.everywhere).split("\n", 1)[0] for job in latest]
        await ctx.reply("\n".join(lines), mention_author=False)

    # ----- models ------------------------------------------------------------------------

    @commands.command(
        brief="List a dataset's model versions.",
        help="Lists the model versions of NAME (default: the active dataset) in this server. "
        "Bot owners: `--server ID` shows another server's.",
        extras={"example": "models"},
    )
    async def models(self, ctx: commands.Context[VoiceChatBot], *, args: str = "") -> None:
        scope, dataset = await scope_for(ctx, args)
        name = dataset or await self.dataset_for(ctx.guild)
        versions = await self.tenants.get(scope.namespace).models.list_versions(name)
        if not versions:
            await ctx.reply(
                f"Dataset `{name}` has no trained model yet. Train it with `!train {name}`.",
                mention_author=False,
            )
            return
        lines = [f"**Models of `{name}`**"]
        for v in versions:
            metrics = (
                f"accuracy {v.accuracy:.1%}, macro-F1 {v.macro_f1:.2f}"
                if v.accuracy is not None and v.macro_f1 is not None
                else "no cross-validation"
            )
            mark = " ← active" if v.active else ""
            lines.append(
                f"`{v.version}` {v.created_at:%Y-%m-%d %H:%M} UTC: {v.rows} rows, "
                f"{v.labels} labels, {metrics}{mark}"
            )
        await send_chunks(ctx, "\n".join(lines))

    @commands.command(
        brief="Switch a dataset to another model version (admins).",
        extras={"example": "use_model v1"},
    )
    @is_admin()
    async def use_model(
        self, ctx: commands.Context[VoiceChatBot], version: str, dataset: str = ""
    ) -> None:
        name = dataset or await self.dataset_for(ctx.guild)
        chosen = await self.tenant_of(ctx).models.use_version(name, version)
        await ctx.reply(
            f"Dataset `{name}` now uses model `{chosen.version}`.", mention_author=False
        )

    # ----- testing -----------------------------------------------------------------------

    @commands.command(
        brief="Show what the model answers, and how sure it is.",
        help='DATA is JSON: a string, a list of strings, or a list of objects with "text" and '
        'optional "label" (then accuracy, a per-label report and a confusion matrix follow). '
        "Or attach a CSV (text[,label]) or JSON file.",
        extras={"example": 'test [{"text": "hi there", "label": "greeting"}]'},
    )
    async def test(self, ctx: commands.Context[VoiceChatBot], *, data: str = "") -> None:
        if ctx.message.attachments:
            attachment = ctx.message.attachments[0]
            check_size(attachment.size, self.tenant_of(ctx).datasets.max_bytes)
            data = await attachment.read()
            items = await asyncio.to_thread(parse_test_file, data, attachment.filename)
        else:
            items = parse_test_data(data)
        dataset = await self.dataset_for(ctx.guild)
        try:
            evaluation = await self.tenant_of(ctx).models.evaluate(dataset, items)
        except NoModelError as exc:
            raise NoModelError(f"{exc.message} Then try `!test` again.") from None
        chunks = split_message(format_evaluation(items, evaluation))
        for chunk in chunks[:-1]:
            await ctx.send(chunk)
        png = evaluation.confusion_png
        files = [discord.File(io.BytesIO(png), filename="confusion_matrix.png")] if png else []
        await ctx.reply(chunks[-1], files=files, mention_author=False)


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Model(bot, bot.services.tenants, bot.services.storage))
