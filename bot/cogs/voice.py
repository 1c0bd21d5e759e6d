"""Voice: `!join`, `!leave`, `!say`, `!skip`, `!stop`, `!voice` (with `read`, `me` and
`nickname`), spoken replies and auto-leave.

Each command works as `/` too; the **Speak** context menu reads a message aloud the way
`!say` does (same cleanup and limits).

Everything is spoken through the bot's one `Speaker` (`bot.speaker`). A reply is spoken when
the bot dispatches `bot_reply` for a user who is in a voice channel of that server. `!say`
allows a per-user burst (admins exempt) and refuses to queue past SAY_QUEUE_MAX items; a
refused or failed `!say` costs the user nothing. Reading a channel aloud is the reading cog's;
its settings are the `!voice read`, `!voice me` and `!voice nickname` commands here.
"""

from __future__ import annotations

import asyncio
import logging
import time

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.config import TTS_ENGINE_NAMES
from bot.core.bot import VoiceChatBot
from bot.core.checks import is_admin, require_admin, user_is_admin
from bot.core.context import VoiceContext, context_of
from bot.core.messages import ON_OFF, parse_on_off
from bot.core.replies import reply_error
from bot.core.speaker import voice_channel_of
from bot.core.suggest import admins_only, matching, suggest
from bot.errors import InvalidInputError, UserFacingError
from bot.services.common.languages import own_name
from bot.services.common.limits import TokenBucket
from bot.services.tenancy.language import ServerLanguages
from bot.services.tenancy.settings import AUTOSPEAK, TTS_ENGINE, TTS_VOICE, ServerSettings
from bot.services.voice.reading import OPTION_KEYS, SILENCE_PREFIX, ReadAloud
from bot.services.voice.synthesis import SynthesisService

log = logging.getLogger(__name__)

NOT_IN_VOICE = "You are not in a voice channel."
BOT_NOT_IN_VOICE = "I am not in a voice channel."
ENGINE_CHOICES = [app_commands.Choice(name=n, value=n) for n in ("auto", *TTS_ENGINE_NAMES)]
READ_CHOICES = [app_commands.Choice(name=n, value=n) for n in ("on", "off", *OPTION_KEYS)]
ME_CHOICES = [app_commands.Choice(name=n, value=n) for n in ("voice", "speed", "read")]


class Voice(commands.Cog):
    def __init__(
        self,
        bot: VoiceChatBot,
        synthesis: SynthesisService,
        server_settings: ServerSettings,
        languages: ServerLanguages,
        reading: ReadAloud,
    ) -> None:
        self.bot = bot
        self.synthesis = synthesis
        self.server_settings = server_settings
        self.languages = languages
        self.reading = reading
        self.speaker = bot.speaker
        self.queue = bot.speaker.queue
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

    # ----- spoken replies and auto-leave ------------------------------------------------

    @commands.Cog.listener()
    async def on_bot_reply(self, ctx: VoiceContext, text: str) -> None:
        """Speak a reply to a request when its author is in a voice channel of that server."""
        channel = voice_channel_of(ctx.author)
        if ctx.guild is None or channel is None:
            return
        if not await self.server_settings.get(ctx.guild.id, AUTOSPEAK):
            return
        client = ctx.guild.voice_client
        if (
            isinstance(client, discord.VoiceClient)
            and client.channel not in (None, channel)
            and any(not m.bot for m in client.channel.members)
        ):
            return  # don't leave people who are listening elsewhere for an automatic reply
        try:
            await self.speaker.speak(ctx.guild, channel, text)
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
                self.reading.clear(guild.id)
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
        channel = voice_channel_of(ctx.author)
        if channel is None:
            raise UserFacingError(NOT_IN_VOICE)
        await self.speaker.connect_to(channel)
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
        self.reading.clear(ctx.guild.id)
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
        channel = voice_channel_of(ctx.author)
        if channel is None:
            raise UserFacingError(NOT_IN_VOICE)
        max_queue = self.bot.settings.say_queue_max
        self.speaker.check_queue_room(ctx.guild.id, max_queue)  # checked again at enqueue
        exempt = await user_is_admin(self.bot, ctx.author)
        with self.say_limit.spending(ctx.author.id, exempt=exempt):  # refused or failed: free
            if not await self.speaker.speak(ctx.guild, channel, text, max_queue=max_queue):
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
        self.reading.clear(ctx.guild.id)
        await ctx.answer(f"Stopped; {removed} item(s) removed.")

    @commands.hybrid_group(
        fallback="show",
        invoke_without_command=True,
        brief="Show this server's voice settings; admins change them.",
        help="`!voice` (`/voice show`) shows the settings and the voices that speak the "
        "server's language. Admins: `!voice engine NAME|auto`, `!voice voice NAME|default` "
        "(one of those voices), `!voice autospeak on|off`. The language is set with "
        "`!language`.\n\nReading aloud: `!voice read` shows which channels are read to the "
        "people in my voice channel; admins: `!voice read on|off` (this channel, or a voice "
        "channel's own chat), `!voice read names|bots|autojoin on|off`. A message starting "
        f"with `{SILENCE_PREFIX}` is never read. Everyone: `!voice me` (your voice and speed: "
        "`!voice me voice NAME|default`, `!voice me speed 0.5-2`, `!voice me read on|off`), "
        "`!voice nickname NAME|off` (the name said before your messages).",
        extras={"example": "voice"},
    )
    @commands.guild_only()
    async def voice(self, ctx: VoiceContext) -> None:
        assert ctx.guild is not None
        engine, voice, autospeak = await self.server_settings.many(
            ctx.guild.id, TTS_ENGINE, TTS_VOICE, AUTOSPEAK
        )
        language = await self.languages.speaking(ctx.guild.id)
        order = ", ".join(self.synthesis.engine_names)
        lines = [
            "**Voice settings**",
            f"Language: `{language}` ({own_name(language)})",
            f"Engine: `{engine or 'auto'}` (order: {order})",
            f"Voice: `{voice or 'default'}`",
            f"Spoken replies: {_on(autospeak)}",
            f"Reading aloud: {await self._read_summary(ctx.guild.id)}",
            f"Voices for `{language}`: {await self.synthesis.voices_line(language)}",
        ]
        await ctx.answer("\n".join(lines))

    async def _engine_for(self, guild_id: int, language: str) -> str | None:
        """The engine that speaks for the server: its choice if it speaks the language, else
        the first one in the order that does (None: none does)."""
        chosen = await self.server_settings.get(guild_id, TTS_ENGINE)
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
        await self.server_settings.set(
            ctx.guild.id, TTS_ENGINE, None if choice == "auto" else choice
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
                    f"{await self.synthesis.voices_line(language)}."
                )
        value = None if name.lower() == "default" else name
        await self.server_settings.set(ctx.guild.id, TTS_VOICE, value)
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
        await self.server_settings.set(ctx.guild.id, AUTOSPEAK, enabled)
        await ctx.answer(f"Spoken replies are now {'on' if enabled else 'off'}.")

    # ----- reading aloud ---------------------------------------------------------------

    async def _read_summary(self, guild_id: int) -> str:
        settings = await self.reading.settings(guild_id)
        channels = ", ".join(f"<#{c}>" for c in sorted(settings.channels)) or "no channel"
        return (
            f"{channels} · names {_on(settings.names)} · bots and webhooks "
            f"{_on(settings.bots)} · auto-join {_on(settings.autojoin)}"
        )

    @voice.command(name="read", brief="Read this channel aloud to people in voice (admins).")
    @app_commands.describe(
        what="on/off: read this channel; names, bots, autojoin: switch that option",
        state="on or off, for names, bots and autojoin",
    )
    @app_commands.choices(what=READ_CHOICES, state=ON_OFF)
    @commands.guild_only()
    async def voice_read(
        self, ctx: VoiceContext, what: str | None = None, state: str | None = None
    ) -> None:
        assert ctx.guild is not None
        prefix = ctx.shown_prefix
        if what is None:
            await ctx.answer(
                f"**Reading aloud**: {await self._read_summary(ctx.guild.id)}.\n"
                "I read messages typed in those channels by people in my voice channel; "
                f"a message starting with `{SILENCE_PREFIX}` stays silent. "
                f"Admins: `{prefix}voice read on|off` in a channel."
            )
            return
        await require_admin(ctx)
        option = what.lower()
        if option in OPTION_KEYS:
            if state is None:
                raise InvalidInputError(f"Say `{prefix}voice read {option} on` or `off`.")
            settings = await self.reading.set_option(ctx.guild.id, option, parse_on_off(state))
            await ctx.answer(f"Reading aloud: {await self._read_summary(ctx.guild.id)}.")
            return
        on = parse_on_off(what)
        settings = await self.reading.set_channel(ctx.guild.id, ctx.channel.id, on)
        if not on:
            await ctx.answer(f"I no longer read <#{ctx.channel.id}> aloud.")
            return
        here = self.speaker.channel(ctx.guild)
        where = (
            f"the people in **{here.name}**"
            if here is not None
            else f"people in voice once I'm there (`{prefix}join`"
            + (", or auto-join when someone joins)" if settings.autojoin else ")")
        )
        await ctx.answer(
            f"I'll read <#{ctx.channel.id}> aloud for {where}. Start a message with "
            f"`{SILENCE_PREFIX}` to keep it silent."
        )

    @voice.command(name="me", brief="Your own voice, speed and reading choice.")
    @app_commands.describe(
        what="voice, speed or read", value="a voice or default; a speed 0.5-2; on or off"
    )
    @app_commands.choices(what=ME_CHOICES)
    @commands.guild_only()
    async def voice_me(
        self, ctx: VoiceContext, what: str | None = None, *, value: str | None = None
    ) -> None:
        assert ctx.guild is not None
        guild_id, user_id = ctx.guild.id, ctx.author.id
        option = (what or "").lower()
        if what is not None and value is None:
            raise InvalidInputError(f"Say `{ctx.shown_prefix}voice me {option} VALUE`.")
        if option == "voice" and value is not None:
            reader = await self.reading.set_voice(guild_id, user_id, value)
        elif option == "speed" and value is not None:
            reader = await self.reading.set_speed(guild_id, user_id, value)
        elif option == "read" and value is not None:
            reader = await self.reading.set_read(guild_id, user_id, parse_on_off(value))
        elif what is not None:
            raise InvalidInputError(f"Choose `voice`, `speed` or `read`, not `{what}`.")
        else:
            reader = await self.reading.reader(guild_id, user_id)
        language = await self.languages.speaking(guild_id)
        server_engine = await self._engine_for(guild_id, language)
        voice = f"{reader.engine}: {reader.voice or 'its own'}" if reader.engine else "default"
        lines = [
            f"**Your voice here**: `{voice}` · speed {reader.speed:g} · your messages are "
            f"{'read' if reader.read else 'not read'} · said as "
            f"**{reader.nickname or ctx.author.display_name}**",
        ]
        if note := self.reading.speed_note(reader, server_engine):
            lines.append(note)
        if what is None or option == "voice":
            lines.append(f"Voices for `{language}`: {await self.synthesis.voices_line(language)}")
        await ctx.answer("\n".join(lines), private=True)

    @voice_me.autocomplete("value")
    @suggest
    async def _me_values(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        if interaction.guild is None:
            return []
        what = str(getattr(interaction.namespace, "what", "") or "")
        if what == "speed":
            return matching(["0.75", "1", "1.25", "1.5", "2"], current)
        if what == "read":
            return matching(["on", "off"], current)
        language = await self.languages.speaking(interaction.guild.id)
        names = ["default"]
        for fit in self.synthesis.speaking(language):
            names += [fit.name, *await self.synthesis.voices(fit.name, language)]
        return matching(names, current)

    @voice.command(name="nickname", brief="The name said before your messages when read.")
    @app_commands.describe(name="Your name for speech, or off for your display name")
    @commands.guild_only()
    async def voice_nickname(self, ctx: VoiceContext, *, name: str | None = None) -> None:
        assert ctx.guild is not None
        if name is None:
            reader = await self.reading.reader(ctx.guild.id, ctx.author.id)
            shown = reader.nickname or f"{ctx.author.display_name} (your display name)"
            await ctx.answer(f"I say your name as **{shown}**.", private=True)
            return
        reader = await self.reading.set_nickname(ctx.guild.id, ctx.author.id, name)
        shown = reader.nickname or ctx.author.display_name
        await ctx.answer(f"I'll say your name as **{shown}**.", private=True)


def _on(value: bool) -> str:
    return "on" if value else "off"


async def setup(bot: VoiceChatBot) -> None:
    services = bot.services
    await bot.add_cog(
        Voice(
            bot,
            services.synthesis,
            services.server_settings,
            services.languages,
            services.reading,
        )
    )
