"""The chat model's data: datasets, `!train` in the background, jobs, versions and `!test`.

Every command is one hybrid command, `!` and `/` alike. The ones that take the owners'
`--all` / `--server ID` (`!datasets`, `!jobs`, `!job`, `!models`; `/… server:`) get their
scope from `core.scope_option`. Chat itself is in `cogs/chat.py`.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.checks import OWNER_VIEW_HELP, is_admin, namespace_of
from bot.core.context import VoiceContext
from bot.core.jobs import describe_job
from bot.core.messages import send_chunks
from bot.core.scope_option import SERVER, scoped_command
from bot.core.suggest import admins_only, matching, namespace_asked, suggest
from bot.errors import NotFoundError
from bot.services.common.text import split_message
from bot.services.model.datasets.parse import check_size, name_from_filename, parse_inline
from bot.services.model.evaluation import TestItem, parse_test_data, parse_test_file
from bot.services.model.policy import active_dataset
from bot.services.model.predictions import Evaluation
from bot.services.model.service import NoModelError
from bot.services.tasks.job import Job
from bot.services.tasks.jobstore import JobStore
from bot.services.tenancy.namespaces import Scope
from bot.services.tenancy.settings import DATASET, ServerSettings
from bot.services.tenancy.tenants import Tenant, Tenants

log = logging.getLogger(__name__)

INLINE_DATASET = "custom"
SHOWN_PREDICTIONS = 20
RECENT_JOBS_PER_USER = 25


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


class RecentJobs:
    """The jobs each user started lately, newest first (for `/job` suggestions)."""

    def __init__(self, per_user: int = RECENT_JOBS_PER_USER) -> None:
        self.per_user = per_user
        self._by_user: dict[int, deque[str]] = {}

    def add(self, user_id: int, job_id: str) -> None:
        self._by_user.setdefault(user_id, deque(maxlen=self.per_user)).appendleft(job_id)

    def of(self, user_id: int) -> list[str]:
        return list(self._by_user.get(user_id, ()))


class Model(commands.Cog):
    """Each server (and each user's DMs) has its own datasets, models and jobs: every data
    access goes through `self.tenants.get(namespace)`."""

    def __init__(
        self,
        bot: VoiceChatBot,
        tenants: Tenants,
        server_settings: ServerSettings,
        jobstore: JobStore,
    ) -> None:
        self.bot = bot
        self.jobstore = jobstore
        self.tenants = tenants
        self.server_settings = server_settings
        self.recent_jobs = RecentJobs()

    def tenant_of(self, ctx: commands.Context[VoiceChatBot]) -> Tenant:
        return self.tenants.get(ctx.namespace)

    async def dataset_for(self, guild: discord.Guild | None) -> str:
        return await active_dataset(self.server_settings, guild and guild.id)

    # ----- datasets ----------------------------------------------------------------------

    @scoped_command(
        brief="List this server's datasets.",
        help="Lists this server's datasets and the shared samples with their row and label "
        "counts." + OWNER_VIEW_HELP,
        extras={"example": "datasets"},
    )
    async def datasets(self, ctx: VoiceContext, scope: Scope = SERVER) -> None:
        namespaces = self.tenants.namespaces() if scope.everywhere else [scope.namespace]
        active = await self.dataset_for(ctx.guild)
        own = ctx.namespace
        lines = []
        # A bot-wide look does not make every server "recently used" in the tenants' cache.
        services_of = self.tenants.peek if scope.everywhere else self.tenants.get
        for namespace in namespaces:
            tenant = services_of(namespace)
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
            await ctx.answer("There are no datasets yet. Add one with `!train`.")
            return
        await send_chunks(ctx, "\n".join(lines))

    @commands.hybrid_command(
        brief="Choose the dataset whose model answers chat here (admins).",
        extras={"example": "select_dataset smalltalk"},
    )
    @app_commands.describe(name="The dataset's name (see /datasets)")
    @app_commands.default_permissions(manage_guild=True)
    @commands.guild_only()
    @is_admin()
    async def select_dataset(self, ctx: VoiceContext, name: str) -> None:
        assert ctx.guild is not None
        tenant = self.tenant_of(ctx)
        if not await tenant.datasets.exists_async(name):
            raise NotFoundError(f"Dataset `{name}` not found. `!datasets` lists them.")
        info = await tenant.datasets.info_async(name)
        await self.server_settings.set(ctx.guild.id, DATASET, info.name)
        text = f"Dataset `{info.name}` selected ({info.rows} rows, {info.labels} labels)."
        if await tenant.models.active_version(info.name) is None:
            text += f" It has no model yet: train it with `!train {info.name}`."
        await ctx.answer(text)

    # ----- training ----------------------------------------------------------------------

    @commands.hybrid_command(
        brief="Train the model on a dataset (admins). Replies with a job ID.",
        help="`!train` retrains the active dataset. `!train NAME` trains dataset NAME. Attach a "
        "CSV (text,label[,reply]) or JSON file to save it as a dataset first (named after the "
        "file unless NAME is given), or write examples on the lines after the command as "
        "`text | label` or `text | label | reply` (saved as NAME, default `custom`). "
        "`/train name: file:` does the same but for the example lines.",
        extras={"example": "train smalltalk"},
    )
    @app_commands.describe(
        file="A CSV (text,label[,reply]) or JSON file to save as a dataset first",
        name="The dataset to train (default: the active one); an attached file is saved as it",
    )
    @app_commands.default_permissions(manage_guild=True)
    @is_admin()
    async def train(
        self, ctx: VoiceContext, file: discord.Attachment | None = None, *, name: str = ""
    ) -> None:
        # No rate limit: only admins train, and trainings of one dataset run one at a time.
        await ctx.defer()
        saved, job = await self._save_and_start(ctx, name, file)
        queued = (
            " It is queued behind another training of this dataset."
            if self.tenant_of(ctx).models.queued_behind(job)
            else ""
        )
        await ctx.answer(f"{saved}Model training started. Job ID: {job.id}{queued}")

    async def _save_and_start(
        self, ctx: VoiceContext, args: str, file: discord.Attachment | None
    ) -> tuple[str, Job]:
        """Save the attached or inline dataset, if any, and queue its training."""
        name, inline = _split_train_args(args)
        store = self.tenant_of(ctx).datasets
        saved = ""
        if file is not None:
            check_size(file.size, store.max_bytes)
            data = await file.read()
            dataset = name or name_from_filename(file.filename)
            info = await store.save_async(dataset, data, file.filename)
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
            name or await self.dataset_for(ctx.guild), on_done=self._announcer(ctx.channel)
        )
        self.recent_jobs.add(ctx.author.id, job.id)
        return saved, job

    def _announcer(self, channel: discord.abc.Messageable) -> Callable[[Job], Awaitable[None]]:
        async def announce(job: Job) -> None:
            await channel.send(describe_job(job))

        return announce

    # ----- jobs --------------------------------------------------------------------------

    @scoped_command(
        brief="Show a job's status.",
        help="Shows one of this server's jobs. Bot owners: `--all` finds any server's job.",
        extras={"example": "job a1b2c3"},
    )
    @app_commands.describe(id="The job's ID (your latest are suggested)")
    async def job(
        self,
        ctx: VoiceContext,
        *,
        id: str,  # noqa: A002 - the option's name as users see it
        scope: Scope = SERVER,
    ) -> None:
        job_id = id.strip()
        found = await self.jobstore.get(job_id) if job_id else None
        if found is None or not (scope.everywhere or found.namespace == scope.namespace):
            raise NotFoundError(f"Job `{job_id[:20]}` not found. `!jobs` lists the latest.")
        await ctx.answer(describe_job(found, show_namespace=scope.everywhere))

    @job.autocomplete("id")
    @suggest
    async def _job_ids(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[tuple[str, str]]:
        """The caller's latest jobs first, then the others of the namespace."""
        namespace = await namespace_asked(interaction)
        mine = [await self.jobstore.get(i) for i in self.recent_jobs.of(interaction.user.id)]
        others = await self.jobstore.list(RECENT_JOBS_PER_USER, namespace=namespace)
        jobs = [j for j in mine if j is not None and j.namespace == namespace]
        jobs += [j for j in others if j not in jobs]
        ids = set(matching([j.id for j in jobs], current))
        return [(f"{j.id}: {j.kind} {j.subject}, {j.status}", j.id) for j in jobs if j.id in ids]

    @scoped_command(
        brief="List this server's latest jobs.",
        help="Lists this server's latest jobs." + OWNER_VIEW_HELP,
        extras={"example": "jobs"},
    )
    async def jobs(self, ctx: VoiceContext, scope: Scope = SERVER) -> None:
        namespace = None if scope.everywhere else scope.namespace
        latest = await self.jobstore.list(10, namespace=namespace)
        if not latest:
            await ctx.answer("No jobs yet.")
            return
        lines = [
            describe_job(job, show_namespace=scope.everywhere).split("\n", 1)[0] for job in latest
        ]
        await ctx.answer("\n".join(lines))

    # ----- models ------------------------------------------------------------------------

    @scoped_command(
        brief="List a dataset's model versions.",
        help="Lists the model versions of NAME (default: the active dataset) in this server. "
        "Bot owners: `--server ID` shows another server's.",
        extras={"example": "models"},
    )
    @app_commands.describe(name="The dataset (default: the active one)")
    async def models(
        self, ctx: VoiceContext, *, name: str | None = None, scope: Scope = SERVER
    ) -> None:
        name = (name or "").strip() or await self.dataset_for(ctx.guild)
        versions = await self.tenants.get(scope.namespace).models.list_versions(name)
        if not versions:
            await ctx.answer(
                f"Dataset `{name}` has no trained model yet. Train it with `!train {name}`."
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

    @commands.hybrid_command(
        brief="Switch a dataset to another model version (admins).",
        extras={"example": "use_model v1"},
    )
    @app_commands.describe(
        version="The version to use, like v1 (see /models)",
        dataset="The dataset (default: the active one)",
    )
    @app_commands.default_permissions(manage_guild=True)
    @is_admin()
    async def use_model(self, ctx: VoiceContext, version: str, dataset: str = "") -> None:
        name = dataset or await self.dataset_for(ctx.guild)
        chosen = await self.tenant_of(ctx).models.use_version(name, version)
        await ctx.answer(f"Dataset `{name}` now uses model `{chosen.version}`.")

    @use_model.autocomplete("version")
    @suggest
    @admins_only
    async def _versions(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[tuple[str, str]]:
        chosen = str(getattr(interaction.namespace, "dataset", None) or "").strip()
        name = chosen or await self.dataset_for(interaction.guild)
        tenant = self.tenants.get(namespace_of(interaction.guild, interaction.user))
        versions = await tenant.models.list_versions(name)
        wanted = set(matching([v.version for v in versions], current))
        listed = []
        for v in reversed(versions):
            if v.version in wanted:
                active = " (active)" if v.active else ""
                label = f"{v.version}{active}: {v.rows} rows, {v.created_at:%Y-%m-%d}"
                listed.append((label, v.version))
        return listed

    # ----- dataset names, wherever a command takes one -----------------------------------

    async def _dataset_names(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        tenant = self.tenants.get(await namespace_asked(interaction))
        return matching(await tenant.datasets.names_async(), current)

    @select_dataset.autocomplete("name")
    @suggest
    @admins_only
    async def _select_names(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        return await self._dataset_names(interaction, current)

    @train.autocomplete("name")
    @suggest
    @admins_only
    async def _train_names(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        return await self._dataset_names(interaction, current)

    @use_model.autocomplete("dataset")
    @suggest
    @admins_only
    async def _use_model_names(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        return await self._dataset_names(interaction, current)

    @models.autocomplete("name")
    @suggest
    async def _models_names(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        return await self._dataset_names(interaction, current)

    # ----- testing -----------------------------------------------------------------------

    @commands.hybrid_command(
        brief="Show what the model answers, and how sure it is.",
        help='DATA is JSON: a string, a list of strings, or a list of objects with "text" and '
        'optional "label" (then accuracy, a per-label report and a confusion matrix follow). '
        "Or attach a CSV (text[,label]) or JSON file.",
        extras={"example": 'test [{"text": "hi there", "label": "greeting"}]'},
    )
    @app_commands.describe(
        file="A CSV (text[,label]) or JSON file of test items",
        data='JSON: "a text", ["a", "b"] or [{"text": ..., "label": ...}]',
    )
    async def test(
        self, ctx: VoiceContext, file: discord.Attachment | None = None, *, data: str = ""
    ) -> None:
        if file is not None:
            await ctx.defer()
            check_size(file.size, self.tenant_of(ctx).datasets.max_bytes)
            content = await file.read()
            items = await asyncio.to_thread(parse_test_file, content, file.filename)
        else:
            items = parse_test_data(data)
        dataset = await self.dataset_for(ctx.guild)
        try:
            evaluation = await self.tenant_of(ctx).models.evaluate(
                dataset, items, as_task=file is not None
            )
        except NoModelError as exc:
            raise NoModelError(f"{exc.message} Then try `!test` again.") from None
        chunks = split_message(format_evaluation(items, evaluation))
        for chunk in chunks[:-1]:
            await ctx.send(chunk)
        png = evaluation.confusion_png
        files = [discord.File(io.BytesIO(png), filename="confusion_matrix.png")] if png else []
        await ctx.answer(chunks[-1], files=files)


async def setup(bot: VoiceChatBot) -> None:
    services = bot.services
    await bot.add_cog(Model(bot, services.tenants, services.server_settings, services.jobstore))
