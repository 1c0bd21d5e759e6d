"""Listening in voice, by consent: `!listen on|off|optout|optin|conversation|channel|wake`.

An admin turns listening on for their voice channel; the bot says so in the text channel and
shows it in voice (undeafened while listening, self-deafened otherwise). What people say
becomes captions (`**name:** text`) in the caption channel; an utterance that starts with a
wake word (or any, in conversation mode) is answered like a chat message and spoken.

The work is `ListeningService`'s; this cog connects it to the voice connection (a
`ListeningVoiceClient` with `start_receiving(sink)` / `stop_receiving()` / `receiving`), to the
chat cog (answers) and to the voice cog (joining, speaking, stopping speech on barge-in).
Listening resumes after a restart, or whenever the bot rejoins the channel it listened in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.checks import is_admin, require_admin
from bot.core.context import VoiceContext
from bot.core.messages import ON_OFF, parse_on_off
from bot.errors import InvalidInputError, UserFacingError
from bot.services.common.text import split_message
from bot.services.hearing.listening import settings as keys
from bot.services.hearing.listening.service import Callbacks, ListeningService, ListeningSession
from bot.services.hearing.listening.wakewords import MAX_WAKE_WORDS

log = logging.getLogger(__name__)

VoiceChannel = discord.VoiceChannel | discord.StageChannel
NO_RECEIVER = "I can't listen here: this bot's voice connection cannot receive audio."
WAKE_ACTIONS = [app_commands.Choice(name=n, value=n) for n in ("list", "add", "remove", "set")]
WAKE_ACTIONS.append(app_commands.Choice(name="reset", value="reset"))


def _voice_channel(user: discord.abc.User) -> VoiceChannel | None:
    state = getattr(user, "voice", None)
    return state.channel if state is not None else None


class Listen(commands.Cog):
    def __init__(self, bot: VoiceChatBot, listening: ListeningService) -> None:
        self.bot = bot
        self.listening = listening
        self._last_caption: dict[tuple[int, int], discord.Message] = {}
        # Names of the people heard: someone who said something and left the channel at once
        # is no longer in the member cache when their caption is posted.
        self._names: dict[tuple[int, int], str] = {}
        self._resuming: asyncio.Task[None] | None = None
        self._locks: dict[int, asyncio.Lock] = {}

    async def cog_load(self) -> None:
        await self.listening.load_consent()
        self._resuming = asyncio.create_task(self._resume_after_start(), name="listen-resume")

    async def cog_unload(self) -> None:
        if self._resuming is not None:
            self._resuming.cancel()
        for client in list(self.bot.voice_clients):
            if getattr(client, "receiving", False):
                client.stop_receiving()  # type: ignore[attr-defined]
        await self.listening.close()

    # ----- starting and stopping --------------------------------------------------------------

    async def start_listening(self, guild: discord.Guild, channel: VoiceChannel) -> None:
        """Join `channel` (or move there) and hear it, undeafened."""
        async with self._locks.setdefault(guild.id, asyncio.Lock()):
            await self.bot.speaker.connect_to(channel)
            client = guild.voice_client
            if not hasattr(client, "start_receiving"):
                raise UserFacingError(NO_RECEIVER)
            await self._stop_session(guild)
            settings = await self.listening.settings(guild.id)
            self.listening.bot_names = self._bot_names(guild)
            callbacks = Callbacks(self._post_caption, self._answer_request, self._barge_in)
            session = self.listening.start(
                guild.id,
                callbacks,
                wake_words=settings.wake_words,
                conversation=settings.conversation,
            )
            self._update_members(session, channel)
            client.start_receiving(session)  # type: ignore[union-attr]
            await guild.change_voice_state(channel=channel, self_deaf=False)

    async def stop_listening(self, guild: discord.Guild) -> bool:
        """Stop hearing and show it (self-deafened); False when it was not listening."""
        async with self._locks.setdefault(guild.id, asyncio.Lock()):
            stopped = await self._stop_session(guild)
            client = guild.voice_client
            if isinstance(client, discord.VoiceClient) and client.is_connected():
                await guild.change_voice_state(channel=client.channel, self_deaf=True)
            return stopped

    async def _stop_session(self, guild: discord.Guild) -> bool:
        client = guild.voice_client
        if client is not None and getattr(client, "receiving", False):
            client.stop_receiving()  # type: ignore[attr-defined]
        stopped = await self.listening.stop(guild.id)
        for key in [k for k in self._names if k[0] == guild.id]:
            del self._names[key]
        return stopped

    def _bot_names(self, guild: discord.Guild) -> tuple[str, ...]:
        names = {guild.me.display_name} if guild.me is not None else set()
        if self.bot.user is not None:
            names.add(self.bot.user.name)
        return tuple(sorted(names))

    def _update_members(self, session: ListeningSession, channel: VoiceChannel) -> None:
        members = channel.members
        for member in members:
            self._names[(channel.guild.id, member.id)] = member.display_name
        session.set_members(
            humans={m.id for m in members if not m.bot}, bots={m.id for m in members if m.bot}
        )

    # ----- resuming ---------------------------------------------------------------------------

    async def _resume_after_start(self) -> None:
        """After a restart: listen again where listening was on and people are in the channel."""
        await self.bot.wait_until_ready()
        for guild in self.bot.guilds:
            settings = await self.listening.settings(guild.id)
            channel = guild.get_channel(settings.voice_channel_id or 0)
            if not settings.on or not isinstance(channel, VoiceChannel):
                continue
            if not any(not m.bot for m in channel.members):
                continue  # resumes when the bot is next in that channel
            await self._resume(guild, channel)

    async def _resume(self, guild: discord.Guild, channel: VoiceChannel) -> None:
        try:
            await self.start_listening(guild, channel)
        except Exception:  # noqa: BLE001 - logged; the admin can `!listen on` again
            log.exception("could not resume listening in guild %s", guild.id)
            return
        await self._announce(guild, channel, resumed=True)

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        guild = member.guild
        session = self.listening.session(guild.id)
        if self.bot.user is not None and member.id == self.bot.user.id:
            if after.channel is None and session is not None:
                await self._stop_session(guild)  # disconnected: resumes when it rejoins
            elif after.channel is not None and session is None and before.channel != after.channel:
                settings = await self.listening.settings(guild.id)
                if settings.on and settings.voice_channel_id == after.channel.id:
                    asyncio.create_task(self._resume(guild, after.channel), name="listen-rejoin")
            return
        client = guild.voice_client
        if session is not None and client is not None and isinstance(client.channel, VoiceChannel):
            self._update_members(session, client.channel)

    # ----- what the session hands back --------------------------------------------------------

    async def _post_caption(self, guild_id: int, user_id: int, text: str) -> None:
        guild = self.bot.get_guild(guild_id)
        if guild is None:
            return
        settings = await self.listening.settings(guild_id)
        channel = guild.get_channel(settings.caption_channel_id or 0)
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("guild %s has no caption channel; caption dropped", guild_id)
            return
        member = guild.get_member(user_id)
        shown = member.display_name if member else self._names.get((guild_id, user_id))
        name = discord.utils.escape_markdown(shown or f"User {user_id}")
        sent = None
        for chunk in split_message(f"**{name}:** {text}"):
            sent = await channel.send(chunk, allowed_mentions=discord.AllowedMentions.none())
        if sent is not None:
            self._last_caption[(guild_id, user_id)] = sent

    async def _answer_request(self, guild_id: int, user_id: int, text: str) -> None:
        """Answer like a chat message from the speaker, as a reply to their caption."""
        caption = self._last_caption.pop((guild_id, user_id), None)
        guild = self.bot.get_guild(guild_id)
        member = guild.get_member(user_id) if guild else None
        if caption is None or member is None:
            return
        ctx = await self.bot.get_context(caption)
        ctx.author = member  # type: ignore[misc]  # the speaker asks, not the bot
        # The chat cog answers it like a message (logged like chat); the reply is spoken.
        self.bot.dispatch("spoken_request", ctx, text)

    async def _barge_in(self, guild_id: int, user_id: int) -> None:
        """Someone started speaking: the bot stops talking and listens."""
        queue = self.bot.speaker.queue
        if queue.is_playing(guild_id):
            removed = await queue.stop(guild_id)
            log.info("barge-in by %s in guild %s: %d item(s) stopped", user_id, guild_id, removed)

    async def _announce(self, guild: discord.Guild, channel: VoiceChannel, resumed: bool) -> None:
        settings = await self.listening.settings(guild.id)
        captions = guild.get_channel(settings.caption_channel_id or 0)
        if isinstance(captions, discord.abc.Messageable):
            await captions.send(self._announcement(channel, captions, resumed))

    def _announcement(self, channel: VoiceChannel, captions: Any, resumed: bool = False) -> str:
        prefix = self.bot.settings.command_prefix
        start = "I'm listening again" if resumed else "🎙️ I'm now listening"
        return (
            f"{start} in **{channel.name}**. What people say there is posted as captions in "
            f"{captions.mention}. Anyone can opt out with `{prefix}listen optout` (in every "
            "server): I never decode, keep or transcribe the audio of people who opted out, nor "
            "of other bots. No audio is stored; only the captions posted here remain. Start with "
            f"a wake word (`{prefix}listen` shows them) to ask me something. Admins: "
            f"`{prefix}listen off` stops listening."
        )

    # ----- commands ---------------------------------------------------------------------------

    @commands.hybrid_group(
        fallback="status",
        invoke_without_command=True,
        brief="Listening in voice: status; admins turn it on or off.",
        help="`!listen` shows whether I listen in voice, where captions go, the wake words and "
        "your own choice. Admins: `!listen on` (in your voice channel) / `!listen off`, "
        "`!listen channel #captions`, `!listen conversation on|off`, `!listen wake add|remove|"
        "set WORDS` (comma-separated). Anyone: `!listen optout` / `!listen optin`.",
        extras={"example": "listen"},
    )
    @commands.guild_only()
    async def listen(self, ctx: VoiceContext) -> None:
        assert ctx.guild is not None
        settings = await self.listening.settings(ctx.guild.id)
        listening = self.listening.session(ctx.guild.id) is not None
        voice = ctx.guild.get_channel(settings.voice_channel_id or 0)
        captions = ctx.guild.get_channel(settings.caption_channel_id or 0)
        state = "on" if listening else ("on (waiting to rejoin)" if settings.on else "off")
        you = "opted out" if self.listening.is_opted_out(ctx.author.id) else "heard (not opted out)"
        lines = [
            "**Listening**",
            f"Listening: {state}" + (f" in **{voice.name}**" if voice and settings.on else ""),
            f"Captions go to: {captions.mention if captions else 'not set'}",
            f"Wake words: {self._wake_list(ctx.guild, settings.wake_words)}",
            f"Conversation mode (answer everything): {'on' if settings.conversation else 'off'}",
            f"You: {you}",
        ]
        if pending := self.listening.pending(ctx.guild.id):
            lines.append(f"Being captioned now: {pending} utterance{'s' * (pending != 1)}")
        await ctx.answer("\n".join(lines))

    def _wake_list(self, guild: discord.Guild, words: tuple[str, ...]) -> str:
        shown = [f"`{w}`" for w in words] + [f"`{n}` (my name)" for n in self._bot_names(guild)]
        return ", ".join(shown)

    @listen.command(name="on", brief="Listen in your voice channel (admins).")
    @commands.guild_only()
    @is_admin()
    async def listen_on(self, ctx: VoiceContext) -> None:
        assert ctx.guild is not None
        channel = _voice_channel(ctx.author)
        client = ctx.guild.voice_client
        if channel is None and client is not None and isinstance(client.channel, VoiceChannel):
            channel = client.channel
        if channel is None:
            raise UserFacingError("Join a voice channel first; I'll listen there.")
        await ctx.defer()
        settings = await self.listening.settings(ctx.guild.id)
        captions = ctx.guild.get_channel(settings.caption_channel_id or 0) or ctx.channel
        await self.start_listening(ctx.guild, channel)
        await self.listening.set(ctx.guild.id, keys.CAPTION_CHANNEL, captions.id)
        await self.listening.set(ctx.guild.id, keys.VOICE_CHANNEL, channel.id)
        await self.listening.set(ctx.guild.id, keys.ON, True)
        await ctx.answer(self._announcement(channel, captions))
        if captions != ctx.channel and isinstance(captions, discord.abc.Messageable):
            await captions.send(self._announcement(channel, captions))

    @listen.command(name="off", brief="Stop listening (admins).")
    @commands.guild_only()
    @is_admin()
    async def listen_off(self, ctx: VoiceContext) -> None:
        assert ctx.guild is not None
        await self.listening.set(ctx.guild.id, keys.ON, None)
        stopped = await self.stop_listening(ctx.guild)
        await ctx.answer("I stopped listening." if stopped else "I wasn't listening.")

    @listen.command(name="optout", brief="Never be heard by me, in any server.")
    async def listen_optout(self, ctx: VoiceContext) -> None:
        await self.listening.opt_out(ctx.author.id)
        await ctx.answer(
            "Done: I won't decode, transcribe or keep anything you say in voice, in any server. "
            f"`{ctx.shown_prefix}listen optin` undoes this.",
            private=True,
        )

    @listen.command(name="optin", brief="Let me hear you again where listening is on.")
    async def listen_optin(self, ctx: VoiceContext) -> None:
        await self.listening.opt_in(ctx.author.id)
        await ctx.answer(
            "Done: where an admin turned listening on, what you say becomes captions again.",
            private=True,
        )

    @listen.command(name="conversation", brief="Answer every utterance, not only wake words.")
    @app_commands.describe(state="on: answer everything said; off: only after a wake word")
    @app_commands.choices(state=ON_OFF)
    @commands.guild_only()
    @is_admin()
    async def listen_conversation(self, ctx: VoiceContext, state: str) -> None:
        assert ctx.guild is not None
        enabled = parse_on_off(state)
        await self.listening.set(ctx.guild.id, keys.CONVERSATION, enabled)
        await ctx.answer(
            "Conversation mode is on: I answer everything said in voice."
            if enabled
            else "Conversation mode is off: I answer only after a wake word."
        )

    @listen.command(name="channel", brief="Choose where captions go (admins).")
    @app_commands.describe(channel="The text channel for captions")
    @commands.guild_only()
    @is_admin()
    async def listen_channel(self, ctx: VoiceContext, channel: discord.TextChannel) -> None:
        assert ctx.guild is not None
        await self.listening.set(ctx.guild.id, keys.CAPTION_CHANNEL, channel.id)
        await ctx.answer(f"Captions go to {channel.mention}.")

    @listen.command(
        name="wake",
        brief="Show or change the wake words.",
        help="`!listen wake` lists them. Admins: `!listen wake add hey computer`, "
        "`!listen wake remove hey computer`, `!listen wake set hey bot, ok computer` (or "
        "`!listen wake hey bot, ok computer`), `!listen wake reset`. My name always works. "
        f"At most {MAX_WAKE_WORDS} wake words of up to 3 words.",
    )
    @app_commands.describe(action="list, add, remove, set or reset", words="Comma-separated")
    @app_commands.choices(action=WAKE_ACTIONS)
    @commands.guild_only()
    async def listen_wake(
        self, ctx: VoiceContext, action: str = "list", *, words: str = ""
    ) -> None:
        assert ctx.guild is not None
        verb = action.lower()
        if verb not in ("list", "add", "remove", "set", "reset"):
            verb, words = "set", f"{action} {words}".strip()
        current = list((await self.listening.settings(ctx.guild.id)).wake_words)
        if verb == "list" and not words:
            await ctx.answer(f"Wake words: {self._wake_list(ctx.guild, tuple(current))}")
            return
        await require_admin(ctx)
        if verb == "reset":
            updated: list[str] | None = None
        else:
            given = keys.parse_wake_words(words)
            updated = self._changed(verb, current, given)
        await self.listening.set(ctx.guild.id, keys.WAKE_WORDS, updated)
        shown = tuple(updated) if updated is not None else keys.DEFAULT_WAKE_WORDS
        await ctx.answer(f"Wake words: {self._wake_list(ctx.guild, shown)}")

    @staticmethod
    def _changed(verb: str, current: list[str], given: list[str]) -> list[str]:
        if verb == "add":
            updated = current + [w for w in given if w not in current]
        elif verb == "remove":
            missing = [w for w in given if w not in current]
            if missing:
                raise InvalidInputError(f"`{missing[0]}` is not a wake word here.")
            updated = [w for w in current if w not in given]
        else:
            updated = given
        keys.check_wake_count(updated)
        return updated


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Listen(bot, bot.services.listening))
