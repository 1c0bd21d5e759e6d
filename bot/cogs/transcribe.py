"""Speech to text: audio attachments and voice messages become text.

Automatic for audio in a server with auto-transcription on (and in DMs); `!transcribe` on
an attachment or as a reply to a message with one; `/transcribe file:`; the **Transcribe**
context menu on any message with audio. All of them answer through one path, visible to the
channel; interactions are deferred at once, and the transcript follows. The transcript reply
is then answered like a chat message (the chat cog listens for `on_transcript`).

Each user's audio is handled one message at a time, in the order it arrived, so back-to-back
voice messages get their transcripts in order; other users never wait for it. A user who is
not an admin has a budget of audio time per window (TRANSCRIBE_BUDGET_SECONDS); a file is
charged its real length once decoded, and a file that fails costs nothing.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import parse_language
from bot.core.bot import VoiceChatBot
from bot.core.checks import NotAdmin, is_admin, user_is_admin
from bot.core.context import VoiceContext, context_of
from bot.core.messages import ON_OFF, Kind, audio_attachments, kind_of, parse_on_off
from bot.core.replies import error_text, reply_error
from bot.core.suggest import admins_only, suggest
from bot.errors import InvalidInputError, NotFoundError
from bot.services.common.languages import (
    AUTO,
    Verdict,
    english_name,
    matching_languages,
    own_name,
    verdict,
)
from bot.services.common.limits import FREE, InArrivalOrder, WindowBudget, format_span
from bot.services.speech.audio import STREAM_AFTER_SECONDS, format_clock
from bot.services.speech.errors import PartialTranscriptError
from bot.services.speech.service import SpeechService
from bot.services.speech.transcriber import Transcriber
from bot.services.speech.transcript import AudioSource, Hearing, Progress, Transcript
from bot.services.tenancy.language import ServerLanguages
from bot.services.tenancy.settings import AUTOTRANSCRIBE, ServerSettings
from bot.services.voice.synthesis import SynthesisService

log = logging.getLogger(__name__)

INLINE_LIMIT = 1900
PREVIEW_CHARS = 300
MAX_FILES_PER_MESSAGE = 3
TRANSLATE_CHOICES = [
    app_commands.Choice(name="on", value="translate"),
    app_commands.Choice(name="off", value="notranslate"),
]
# Audio longer than STREAM_AFTER_SECONDS is answered at once with a reply that fills in as its
# pieces are transcribed (the first piece is short, so the first words come early).
# Discord rate-limits message edits: a growing reply is edited at most this often.
EDIT_INTERVAL_SECONDS = 2.0


class LiveTranscript:
    """A reply that shows a long transcription as it grows: "2:10 of 9:48" and the text so
    far (its end, when it no longer fits one message), then replaced by the final transcript.

    The first text is shown as soon as it is ready; after it the reply is edited at most every
    EDIT_INTERVAL_SECONDS. An update that comes sooner is shown when the interval allows (the
    newest one, if more came meanwhile), unless the final transcript comes first."""

    def __init__(self, ctx: VoiceContext, total_seconds: float) -> None:
        self.ctx = ctx
        self.total = total_seconds
        self.message: discord.Message | None = None
        self._last_edit = 0.0
        self._shows_text = False
        self._editing = asyncio.Lock()
        self._waiting: Progress | None = None
        self._later: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.message = await self.ctx.answer(self._text(Progress("", 0.0, self.total)))
        self._last_edit = time.monotonic()

    async def update(self, progress: Progress) -> None:
        if self.message is None:
            return
        first_text = bool(progress.text) and not self._shows_text
        if first_text or (self._later is None and self._until_allowed() <= 0):
            self._waiting = None
            await self._edit(progress)
            return
        self._waiting = progress
        if self._later is None:
            self._later = asyncio.create_task(self._edit_when_allowed())

    async def finish(self, content: str, file: discord.File | None) -> discord.Message:
        assert self.message is not None
        self._waiting = None  # the final transcript replaces it
        if self._later is not None:
            await self._later
        await asyncio.sleep(max(0.0, self._until_allowed()))
        self.message = await self.message.edit(
            content=content, attachments=[file] if file is not None else []
        )
        return self.message

    async def _edit(self, progress: Progress) -> None:
        assert self.message is not None
        async with self._editing:  # one edit at a time, in the order they were made
            await self.message.edit(content=self._text(progress))
            self._last_edit = time.monotonic()
            self._shows_text = self._shows_text or bool(progress.text)

    async def _edit_when_allowed(self) -> None:
        """Show the newest waiting update once the interval since the last edit has passed."""
        try:
            while self._waiting is not None:
                wait = self._until_allowed()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                progress, self._waiting = self._waiting, None
                await self._edit(progress)
        except discord.HTTPException as exc:  # the final edit will tell if it persists
            log.warning("could not show a transcription's progress: %s", exc)
        finally:
            self._later = None

    def _until_allowed(self) -> float:
        return self._last_edit + EDIT_INTERVAL_SECONDS - time.monotonic()

    def _text(self, progress: Progress) -> str:
        done = f"{format_clock(progress.done_seconds)} of {format_clock(self.total)}"
        tail = progress.text
        if len(tail) > INLINE_LIMIT - 100:
            tail = "…" + tail[-(INLINE_LIMIT - 100) :].split(" ", 1)[-1]
        return f"**Transcript** ({done}, still transcribing…): {tail}".rstrip()


def _shown(
    text: str, where: str, note: str, translation: str | None = None
) -> tuple[str, discord.File | None]:
    """A transcript as a message: inline when it fits, else a preview and transcript.txt
    (which holds the English translation too, when there is one)."""
    label = f"**Transcript** ({where})" if where else "**Transcript**"
    english = f"\n**English:** {translation}" if translation else ""
    if len(text) + len(english) <= INLINE_LIMIT:
        inline = f"{label}: {text}" if where else f"**Transcript:** {text}"
        return f"{inline}{english}{note}", None
    preview = text[:PREVIEW_CHARS].rsplit(" ", 1)[0]
    whole = f"{text}\n\nEnglish translation:\n{translation}\n" if translation else text
    file = discord.File(io.BytesIO(whole.encode()), filename="transcript.txt")
    return f"{label} ({len(text)} characters, attached): {preview} …{note}", file


def _footer(transcript: Transcript, hearing: Hearing) -> str:
    """ "Recognized by the whisper engine · French": when a fallback engine answered, or the
    language was detected or is not the server's default kind (so the reader knows)."""
    if transcript.first_choice and hearing.language != AUTO:
        return ""
    detected = hearing.language == AUTO and transcript.language
    heard = f" · {english_name(transcript.language)}" if detected else ""
    return f"\n-# Recognized by the {transcript.engine} engine{heard}."


class Transcribe(commands.Cog):
    def __init__(
        self,
        bot: VoiceChatBot,
        speech: SpeechService,
        transcriber: Transcriber,
        synthesis: SynthesisService,
        server_settings: ServerSettings,
        languages: ServerLanguages,
    ) -> None:
        self.bot = bot
        self.speech = speech
        self.transcriber = transcriber
        self.synthesis = synthesis
        self.server_settings = server_settings
        self.languages = languages
        budget = bot.settings.transcribe_budget_seconds
        window = bot.settings.transcribe_window_seconds
        self.budget = WindowBudget(
            budget,
            window,
            refusal=f"That would go over your transcription allowance of {format_span(budget)} "
            f"of audio per {format_span(window)}",
        )
        self.in_order = InArrivalOrder()  # per user
        self.menu = app_commands.ContextMenu(name="Transcribe", callback=self.transcribe_menu)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if kind_of(message, self.bot.settings.command_prefix) is not Kind.AUDIO:
            return
        # The place in line is taken before anything else is awaited: arrival order holds.
        async with self.in_order.turn(message.author.id):
            guild = message.guild
            if guild is not None and not await self.server_settings.get(guild.id, AUTOTRANSCRIBE):
                return
            await self._transcribe_message(message, await self.bot.get_context(message))

    async def transcribe_message(self, source: discord.Message, ctx: VoiceContext) -> None:
        """Transcribe the audio of `source`, answering the request `ctx`; every failure gets
        one answer. Runs in the line of the requester, after their earlier audio."""
        async with self.in_order.turn(ctx.author.id):
            await self._transcribe_message(source, ctx)

    async def _transcribe_message(self, source: discord.Message, ctx: VoiceContext) -> None:
        try:
            attachments = audio_attachments(source)
            if not attachments:
                raise InvalidInputError(
                    "I don't see an audio file there. Attach one (mp3, ogg, wav, m4a, ...) or "
                    "reply to a message that has one."
                )
            exempt = await user_is_admin(self.bot, ctx.author)
            for attachment in attachments[:MAX_FILES_PER_MESSAGE]:
                await self._transcribe_one(attachment, source, ctx, exempt=exempt)
        except Exception as exc:  # noqa: BLE001 - the one handler decides what the user sees
            await reply_error(ctx, exc)

    async def _transcribe_one(
        self,
        attachment: discord.Attachment,
        source: discord.Message,
        ctx: VoiceContext,
        *,
        exempt: bool,
    ) -> None:
        user = ctx.author.id
        self.speech.check_size(attachment.size)  # before downloading
        if not exempt:  # a voice message declares its length; other files are checked for any
            self.budget.check(user, attachment.duration or 0.0)
        live: LiveTranscript | None = None
        charge = FREE

        async def on_length(seconds: float) -> None:
            """The real length, known once decoded: charged before recognition (given back
            if it fails); long audio gets a reply that grows as it is transcribed."""
            nonlocal charge, live
            charge = FREE if exempt else self.budget.take(user, seconds)
            if seconds > STREAM_AFTER_SECONDS:
                live = LiveTranscript(ctx, seconds)
                await live.start()

        async def on_progress(progress: Progress) -> None:
            if live is not None:
                await live.update(progress)

        guild_id = source.guild.id if source.guild is not None else None
        async with ctx.typing():
            hearing = await self.languages.hearing(guild_id)
            try:
                transcript = await self.transcriber.transcribe_source(
                    AudioSource(attachment.url, attachment.filename),
                    hearing,
                    on_length=on_length,
                    on_progress=on_progress,
                    namespace=ctx.namespace,
                )
            except PartialTranscriptError as exc:  # keep what was transcribed
                charge.give_back()
                stopped = f"up to {format_clock(exc.stopped_at)} of {format_clock(exc.total)}"
                await self._send(ctx, live, *_shown(exc.text, stopped, f"\n-# {exc.message}"))
                return
            except BaseException as exc:
                charge.give_back()
                if live is None or not isinstance(exc, Exception):
                    raise
                # The growing reply becomes the one answer: it never stays "transcribing".
                await live.finish(error_text(exc, ctx.message.id), None)
                return
        await self.languages.heard(guild_id, transcript.language)
        note = _footer(transcript, hearing)
        sent = await self._send(
            ctx, live, *_shown(transcript.text, "", note, transcript.translation)
        )
        await self.bot.record_reply(ctx, sent, "", transcript.text, "transcript")
        self.bot.dispatch("transcript", ctx, transcript.text)

    @staticmethod
    async def _send(
        ctx: VoiceContext,
        live: LiveTranscript | None,
        content: str,
        file: discord.File | None,
    ) -> discord.Message:
        """The final transcript: the growing reply becomes it, or it is a new reply."""
        if live is not None:
            return await live.finish(content, file)
        return await ctx.answer(content, file=file)

    async def transcribe_menu(
        self, interaction: discord.Interaction[VoiceChatBot], message: discord.Message
    ) -> None:
        """The **Transcribe** context menu: like `!transcribe` as a reply to that message."""
        ctx = await context_of(self.bot, interaction)
        await ctx.defer()
        await self.transcribe_message(message, ctx)

    @commands.hybrid_command(
        brief="Transcribe an attached audio file, or the one in the message you reply to.",
        help="`!transcribe` with an audio file attached, or as a reply to a message that has "
        "one; `/transcribe file:`. To transcribe a message's audio with `/`, use its "
        "**Apps → Transcribe** menu.",
        extras={"example": "transcribe (with a file attached, or as a reply)"},
    )
    @app_commands.describe(file="The audio or video file to transcribe (mp3, ogg, wav, m4a, ...)")
    async def transcribe(self, ctx: VoiceContext, file: discord.Attachment | None = None) -> None:
        await ctx.defer()
        source = ctx.message  # its attachments include `file`
        reference = ctx.message.reference
        if not audio_attachments(source) and reference is not None and reference.message_id:
            resolved = reference.resolved
            # Only a message of this channel (of this server): never another server's audio.
            if not isinstance(resolved, discord.Message) or resolved.channel.id != ctx.channel.id:
                try:
                    resolved = await ctx.channel.fetch_message(reference.message_id)
                except discord.NotFound:
                    raise NotFoundError("I can't find the message you replied to.") from None
            source = resolved
        await self.transcribe_message(source, ctx)

    @commands.hybrid_command(
        brief="Turn automatic transcription on or off for this server (admins).",
        extras={"example": "autotranscribe off"},
    )
    @app_commands.describe(
        state="on: transcribe every audio file and voice message; off: only on request"
    )
    @app_commands.choices(state=ON_OFF)
    @app_commands.default_permissions(manage_guild=True)
    @commands.guild_only()
    @is_admin()
    async def autotranscribe(self, ctx: VoiceContext, state: str) -> None:
        enabled = parse_on_off(state)
        assert ctx.guild is not None
        await self.server_settings.set(ctx.guild.id, AUTOTRANSCRIBE, enabled)
        what = (
            "on: I transcribe audio files and voice messages"
            if enabled
            else (f"off: use `{ctx.clean_prefix}transcribe` to transcribe a file")
        )
        await ctx.answer(f"Automatic transcription is now {what}.")

    @commands.hybrid_command(
        brief="Show or set the speech language of this server (setting it: admins).",
        help="`!language` shows it. Admins: `!language fr-FR` (any code both directions can "
        "serve), `!language auto` (recognize each recording in the language spoken), and "
        "`translate` or `notranslate` after the code to post an English translation beside "
        "each transcript (`!language fr-FR translate`).",
        extras={"example": "language fr-FR"},
    )
    @app_commands.describe(
        code="A language code like en-US, fr-FR or de, or auto (empty: show the current one)",
        translate="on: post an English translation beside each transcript",
    )
    @app_commands.choices(translate=TRANSLATE_CHOICES)
    @commands.guild_only()
    async def language(self, ctx: VoiceContext, code: str = "", translate: str = "") -> None:
        assert ctx.guild is not None
        if not code:
            await ctx.answer(await self._describe(ctx.guild.id))
            return
        if not await user_is_admin(self.bot, ctx.author):
            raise NotAdmin()
        try:
            value = parse_language(code)
        except ValueError:
            raise InvalidInputError(
                f"`{code}` is not a language code. Use a code like `en-US`, `fr-FR` or `de`, "
                "or `auto`."
            ) from None
        switch = _translate_switch(translate)
        decision = self.verdict(value)
        if not decision.accepted:
            raise InvalidInputError(decision.message)
        await self.languages.choose(ctx.guild.id, value, switch)
        note = ""
        if await self.languages.translates(ctx.guild.id):
            note = "\nTranscripts come with an English translation."
        await ctx.answer(decision.message + note)

    def verdict(self, code: str) -> Verdict:
        return verdict(code, self.speech.hearing(code), self.synthesis.speaking(code))

    async def _describe(self, guild_id: int) -> str:
        current = await self.languages.setting(guild_id)
        text = f"The speech language here is `{current}` ({own_name(current)})."
        if current == AUTO:
            text += f" I answer aloud in `{await self.languages.speaking(guild_id)}`."
        if await self.languages.translates(guild_id):
            text += " Transcripts come with an English translation."
        return text

    @language.autocomplete("code")
    @suggest
    @admins_only
    async def _language_codes(self, ctx: VoiceContext, current: str) -> list[tuple[str, str]]:
        return matching_languages(current, usable=lambda code: self.verdict(code).accepted)


def _translate_switch(value: str) -> bool | None:
    """`translate`/`on` -> True, `notranslate`/`off` -> False, "" -> None (unchanged)."""
    lowered = value.strip().lower()
    if not lowered:
        return None
    if lowered in ("translate", "notranslate"):
        return lowered == "translate"
    try:
        return parse_on_off(lowered)
    except InvalidInputError:
        raise InvalidInputError(
            f"`{value}` after the language code: use `translate` or `notranslate`."
        ) from None


async def setup(bot: VoiceChatBot) -> None:
    services = bot.services
    await bot.add_cog(
        Transcribe(
            bot,
            services.speech,
            services.transcriber,
            services.synthesis,
            services.server_settings,
            services.languages,
        )
    )
