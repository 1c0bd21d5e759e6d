"""Voice: `!join`, `!leave`, `!say`, `!skip`, `!stop`, `!voice`, spoken replies and auto-leave.

Each command works as `/` too; the **Speak** context menu reads a message aloud the way
`!say` does (same cleanup and limits).

Synthesis and the per-server queue are services; this cog connects them to discord.py's
voice client. A reply is spoken when the bot dispatches `bot_reply` for a user who is in a
voice channel of that server. `!say` allows a per-user burst (admins exempt) and refuses to
queue past SAY_QUEUE_MAX items; a refused or failed `!say` costs the user nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.app import VoiceChatBot
from bot.cogs._checks import is_admin, user_is_admin
from bot.cogs._context import VoiceContext, context_of
from bot.cogs._messages import ON_OFF, parse_on_off
from bot.cogs._receiver import ListeningVoiceClient
from bot.cogs._suggest import admins_only, matching, suggest
from bot.cogs.errors import reply_error
from bot.config import TTS_ENGINE_NAMES
from bot.errors import InvalidInputError, LimitReachedError, UserFacingError
from bot.services.audio import ffmpeg_exe
from bot.services.languages import own_name
from bot.services.limits import TokenBucket
from bot.services.server_language import ServerLanguages
from bot.services.storage import Storage
from bot.services.voice.player import PlaybackQueue
from bot.services.voice.spoken_text import clean_for_speech
from bot.services.voice.synthesis import SynthesisService

log = logging.getLogger(__name__)

NOT_IN_VOICE = "You are not in a voice channel."
BOT_NOT_IN_VOICE = "I am not in a voice channel."
CONNECT_TIMEOUT = 15.0
MENTION = re.compile(r"<(@!?|@&|#)(\d+)>")
ENGINE_CHOICES = [app_commands.Choice(name=n, value=n) for n in ("auto", *TTS_ENGINE_NAMES)]


class NotConnected(Exception):
    """The bot has no working voice connection in that server."""


def _voice_channel(user: discord.abc.User) -> discord.VoiceChannel | discord.StageChannel | None:
    state = getattr(user, "voice", None)
    return state.channel if state is not None else None


class Voice(commands.Cog):
    def __init__(
        self,
        bot: VoiceChatBot,
        synthesis: SynthesisService,
        storage: Storage,
        languages: ServerLanguages,
    ) -> None:
        self.bot = bot
        self.synthesis = synthesis
        self.storage = storage
        self.languages = languages
        self.queue = PlaybackQueue(self._play, on_error=self._playback_failed)
        self._connect_locks: dict[int, asyncio.Lock] = {}
        self.say_limit = TokenBucket(
            bot.settings.say_burst,
            bot.settings.say_refill_seconds,
            refusal=f"You're sending `{bot.settings.command_prefix}say` very quickly",
        )
        idle = bot.settings.voice_idle_seconds
        self.idle_watch.change_interval(seconds=max(1.0, min(10.0, idle / 5)))
        self.menu = app_commands.ContextMenu(name="Speak", callback=self.speak_menu)
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.idle_watch.start()
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.idle_watch.cancel()
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        await self.queue.close()

    # ----- playback ---------------------------------------------------------------------

    async def _play(self, guild_id: int, path: Path) -> None:
        """Play one clip; return when it has finished. Cancelled: stop playing."""
        guild = self.bot.get_guild(guild_id)
        client = guild.voice_client if guild else None
        if not isinstance(client, discord.VoiceClient) or not client.is_connected():
            raise NotConnected(f"no voice connection in guild {guild_id}")
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Exception | None] = loop.create_future()

        def after(error: Exception | None) -> None:
            loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(error))

        source = discord.FFmpegOpusAudio(
            str(path), executable=ffmpeg_exe(), options="-loglevel error"
        )
        client.play(source, after=after)
        try:
            error = await finished
        except asyncio.CancelledError:
            client.stop()
            raise
        if error is not None:
            raise error

    async def _playback_failed(self, guild_id: int, error: Exception) -> None:
        log.warning("speaking in guild %s failed: %s", guild_id, error)

    async def connect_to(self, channel: discord.VoiceChannel | discord.StageChannel) -> None:
        """Join `channel`, or move there; one attempt at a time per server."""
        lock = self._connect_locks.setdefault(channel.guild.id, asyncio.Lock())
        async with lock:
            client = channel.guild.voice_client
            if isinstance(client, discord.VoiceClient) and client.is_connected():
                if client.channel != channel:
                    await client.move_to(channel)
                return
            if client is not None:
                await client.disconnect(force=True)
            try:
                await channel.connect(
                    timeout=CONNECT_TIMEOUT, self_deaf=True, cls=ListeningVoiceClient
                )
            except (TimeoutError, discord.ClientException) as exc:
                reason = str(exc) or "Discord did not answer (check my Connect permission)"
                raise UserFacingError(f"I couldn't join **{channel.name}**: {reason}") from exc
            self.queue.touch(channel.guild.id)

    async def speak(
        self,
        guild: discord.Guild,
        channel: discord.VoiceChannel | discord.StageChannel,
        text: str,
        *,
        max_queue: int | None = None,
    ) -> bool:
        """Queue `text` for speech in `channel`; False when there is nothing to speak.

        With `max_queue`, raise LimitReachedError rather than queue behind that many items.
        """
        language = await self.languages.speaking(guild.id)
        cleaned = clean_for_speech(
            text,
            prefix=self.bot.settings.command_prefix,
            max_chars=self.bot.settings.max_spoken_chars,
            language=language,
            **self._names(guild, text),
        )
        if cleaned is None:
            return False
        settings = await self.storage.guild_settings(guild.id)
        await self.connect_to(channel)
        if max_queue is not None:
            self.check_queue_room(guild.id, max_queue)  # no await from here to enqueue
        stream = self.synthesis.synthesize_stream(
            cleaned,
            language,
            voice=settings.get("tts_voice"),
            engine=settings.get("tts_engine"),
        )
        self.queue.enqueue(guild.id, stream)
        return True

    def check_queue_room(self, guild_id: int, max_queue: int) -> None:
        if self.queue.size(guild_id) >= max_queue:
            prefix = self.bot.settings.command_prefix
            raise LimitReachedError(
                f"The voice queue is full ({max_queue} items); try again when it has played, "
                f"or `{prefix}stop` it."
            )

    def _names(self, guild: discord.Guild, text: str) -> dict[str, dict[int, str]]:
        """Names for the mentions in `text`, so they are spoken as names."""
        users: dict[int, str] = {}
        roles: dict[int, str] = {}
        channels: dict[int, str] = {}
        for kind, raw_id in MENTION.findall(text):
            found_id = int(raw_id)
            if kind == "@&" and (role := guild.get_role(found_id)):
                roles[found_id] = role.name
            elif kind == "#" and (chan := guild.get_channel(found_id)):
                channels[found_id] = chan.name
            elif kind.startswith("@") and kind != "@&":
                user = guild.get_member(found_id) or self.bot.get_user(found_id)
                if user is not None:
                    users[found_id] = user.display_name
        return {"users": users, "roles": roles, "channels": channels}

    # ----- spoken replies and auto-leave ------------------------------------------------

    @commands.Cog.listener()
    async def on_bot_reply(self, ctx: VoiceContext, text: str) -> None:
        """Speak a reply to a request when its author is in a voice channel of that server."""
        channel = _voice_channel(ctx.author)
        if ctx.guild is None or channel is None:
            return
        if not await self.storage.get_guild_setting(ctx.guild.id, "autospeak", True):
            return
        client = ctx.guild.voice_client
        if (
            isinstance(client, discord.VoiceClient)
            and client.channel not in (None, channel)
            and any(not m.bot for m in client.channel.members)
        ):
            return  # don't leave people who are listening elsewhere for an automatic reply
        try:
            await self.speak(ctx.guild, channel, text)
        except Exception as exc:  # noqa: BLE001 - the text reply stands; say why no voice
            await reply_error(ctx, exc)

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        guild = member.guild
        if self.bot.user is not None and member.id == self.bot.user.id:
            if after.channel is None:  # left, kicked, or the connection dropped for good
                await self.queue.clear(guild.id)
            return
        client = guild.voice_client
        if isinstance(client, discord.VoiceClient) and client.channel is not None:
            if all(m.bot for m in client.channel.members):
                log.info("leaving voice in guild %s: only bots remain", guild.id)
                await client.disconnect()

    @tasks.loop(seconds=5)
    async def idle_watch(self) -> None:
        idle = self.bot.settings.voice_idle_seconds
        for client in list(self.bot.voice_clients):
            guild_id = client.guild.id  # type: ignore[attr-defined]
            if self.queue.is_playing(guild_id) or self.queue.pending(guild_id):
                continue
            if getattr(client, "receiving", False):
                continue  # listening (!listen on) is not idleness
            if time.monotonic() - self.queue.last_activity(guild_id) >= idle:
                log.info("leaving voice in guild %s after %s s of silence", guild_id, idle)
                await client.disconnect(force=False)

    @idle_watch.before_loop
    async def _before_idle_watch(self) -> None:
        try:
            await self.bot.wait_until_ready()
        except RuntimeError:  # a bot that never logs in (built to load its extensions)
            raise asyncio.CancelledError from None

    # ----- commands ---------------------------------------------------------------------

    @commands.hybrid_command(brief="Join your voice channel.", extras={"example": "join"})
    @commands.guild_only()
    async def join(self, ctx: VoiceContext) -> None:
        channel = _voice_channel(ctx.author)
        if channel is None:
            raise UserFacingError(NOT_IN_VOICE)
        await self.connect_to(channel)
        await ctx.answer(f"Joined **{channel.name}**.")

    @commands.hybrid_command(brief="Leave the voice channel.", extras={"example": "leave"})
    @commands.guild_only()
    async def leave(self, ctx: VoiceContext) -> None:
        assert ctx.guild is not None
        client = ctx.guild.voice_client
        if client is None:
            raise UserFacingError(BOT_NOT_IN_VOICE)
        name = getattr(client.channel, "name", "the voice channel")
        await client.disconnect(force=True)
        await self.queue.clear(ctx.guild.id)
        await ctx.answer(f"Left **{name}**.")

    @commands.hybrid_command(
        brief="Speak a text in your voice channel.", extras={"example": "say hello"}
    )
    @app_commands.describe(text="What to say; mentions are read as names")
    @commands.guild_only()
    async def say(self, ctx: VoiceContext, *, text: str) -> None:
        await self.say_text(ctx, text)

    async def speak_menu(
        self, interaction: discord.Interaction[VoiceChatBot], message: discord.Message
    ) -> None:
        """The **Speak** context menu: `!say` with the message's text."""
        await self.say_text(await context_of(self.bot, interaction), message.content)

    async def say_text(self, ctx: VoiceContext, text: str) -> None:
        """Queue `text` in the caller's voice channel, within the `!say` limits."""
        assert ctx.guild is not None
        channel = _voice_channel(ctx.author)
        if channel is None:
            raise UserFacingError(NOT_IN_VOICE)
        max_queue = self.bot.settings.say_queue_max
        self.check_queue_room(ctx.guild.id, max_queue)  # before joining; checked again at enqueue
        exempt = await user_is_admin(self.bot, ctx.author)
        with self.say_limit.spending(ctx.author.id, exempt=exempt):  # refused or failed: free
            if not await self.speak(ctx.guild, channel, text, max_queue=max_queue):
                raise InvalidInputError("There is nothing to say in that text.")
        await ctx.acknowledge("🔊", f"Speaking in **{channel.name}**.")

    @commands.hybrid_command(brief="Skip what the bot is saying now.", extras={"example": "skip"})
    @commands.guild_only()
    async def skip(self, ctx: VoiceContext) -> None:
        assert ctx.guild is not None
        skipped = self.queue.skip(ctx.guild.id)
        await ctx.answer("Skipped." if skipped else "Nothing is playing.")

    @commands.hybrid_command(brief="Stop speaking and clear the queue.", extras={"example": "stop"})
    @commands.guild_only()
    async def stop(self, ctx: VoiceContext) -> None:
        assert ctx.guild is not None
        removed = await self.queue.stop(ctx.guild.id)
        await ctx.answer(f"Stopped; {removed} item(s) removed.")

    @commands.hybrid_group(
        fallback="show",
        invoke_without_command=True,
        brief="Show this server's voice settings; admins change them.",
        help="`!voice` (`/voice show`) shows the settings and the voices that speak the "
        "server's language. Admins: `!voice engine NAME|auto`, `!voice voice NAME|default` "
        "(one of those voices), `!voice autospeak on|off`. The language is set with "
        "`!language`.",
        extras={"example": "voice"},
    )
    @commands.guild_only()
    async def voice(self, ctx: VoiceContext) -> None:
        assert ctx.guild is not None
        settings = await self.storage.guild_settings(ctx.guild.id)
        language = await self.languages.speaking(ctx.guild.id)
        order = ", ".join(self.synthesis.engine_names)
        lines = [
            "**Voice settings**",
            f"Language: `{language}` ({own_name(language)})",
            f"Engine: `{settings.get('tts_engine') or 'auto'}` (order: {order})",
            f"Voice: `{settings.get('tts_voice') or 'default'}`",
            f"Spoken replies: {'on' if settings.get('autospeak', True) else 'off'}",
            f"Voices for `{language}`: {await self._voices_line(language)}",
        ]
        await ctx.answer("\n".join(lines))

    async def _voices_line(self, language: str) -> str:
        """ "piper: en_US-joe-medium; espeak: en-gb, en-us, …; gtts (online)"."""
        parts = []
        for fit in self.synthesis.speaking(language):
            voices = await self.synthesis.voices(fit.name, language)
            shown = ", ".join(voices[:12]) + (", …" if len(voices) > 12 else "")
            online = " (online)" if fit.online else ""
            parts.append(f"{fit.name}{online}: {shown}" if shown else f"{fit.name}{online}")
        return "; ".join(parts) or "none installed"

    async def _engine_for(self, guild_id: int, language: str) -> str | None:
        """The engine that speaks for the server: its choice if it speaks the language, else
        the first one in the order that does (None: none does)."""
        chosen = await self.storage.get_guild_setting(guild_id, "tts_engine")
        speaking = [fit.name for fit in self.synthesis.speaking(language)]
        if chosen in speaking:
            return str(chosen)
        return speaking[0] if speaking else None

    @voice.command(name="engine", brief="Choose the speech engine (admins).")
    @app_commands.describe(name="The engine to use, or auto for the order of TTS_ENGINES")
    @app_commands.choices(name=ENGINE_CHOICES)
    @commands.guild_only()
    @is_admin()
    async def voice_engine(self, ctx: VoiceContext, name: str) -> None:
        assert ctx.guild is not None
        choice = name.lower()
        if choice != "auto" and choice not in self.synthesis.engine_names:
            names = ", ".join(self.synthesis.engine_names)
            raise InvalidInputError(f"Unknown engine `{name}`. Choose one of: {names}, or auto.")
        await self.storage.set_guild_setting(
            ctx.guild.id, "tts_engine", None if choice == "auto" else choice
        )
        language = await self.languages.speaking(ctx.guild.id)
        speaking = [fit.name for fit in self.synthesis.speaking(language)]
        note = ""
        if choice != "auto" and choice not in speaking:
            instead = f"; {speaking[0]} speaks instead" if speaking else ""
            note = f"\n{choice} has no voice for `{language}`{instead}."
        await ctx.answer(f"Speech engine set to `{choice}`.{note}")

    @voice.command(name="voice", brief="Choose the voice (admins).")
    @app_commands.describe(name="A voice of the server's engine, or default")
    @commands.guild_only()
    @is_admin()
    async def voice_voice(self, ctx: VoiceContext, name: str) -> None:
        assert ctx.guild is not None
        language = await self.languages.speaking(ctx.guild.id)
        engine = await self._engine_for(ctx.guild.id, language)
        if name.lower() != "default":
            voices = await self.synthesis.voices(engine, language) if engine else []
            if name not in voices:
                raise InvalidInputError(
                    f"`{name}` is not a voice for `{language}`. Voices for it: "
                    f"{await self._voices_line(language)}."
                )
        value = None if name.lower() == "default" else name
        await self.storage.set_guild_setting(ctx.guild.id, "tts_voice", value)
        await ctx.answer(f"Voice set to `{name}`.")

    @voice_voice.autocomplete("name")
    @suggest
    @admins_only
    async def _voice_names(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        if interaction.guild is None:
            return []
        language = await self.languages.speaking(interaction.guild.id)
        engine = await self._engine_for(interaction.guild.id, language)
        voices = await self.synthesis.voices(engine, language) if engine else []
        return matching(["default", *voices], current)

    @voice.command(name="autospeak", brief="Turn spoken replies on or off (admins).")
    @app_commands.describe(state="on: speak replies to people in a voice channel; off: text only")
    @app_commands.choices(state=ON_OFF)
    @commands.guild_only()
    @is_admin()
    async def voice_autospeak(self, ctx: VoiceContext, state: str) -> None:
        assert ctx.guild is not None
        enabled = parse_on_off(state)
        await self.storage.set_guild_setting(ctx.guild.id, "autospeak", enabled)
        await ctx.answer(f"Spoken replies are now {'on' if enabled else 'off'}.")


async def setup(bot: VoiceChatBot) -> None:
    services = bot.services
    await bot.add_cog(Voice(bot, services.synthesis, services.storage, services.languages))
