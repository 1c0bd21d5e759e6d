"""A terminal chat with the bot through the sandbox, as a user in #general.

Started by `python -m bot` when no DISCORD_TOKEN is set, or by `python -m bot.sandbox` with
the bots in other processes (SANDBOX_URL). A plain line is a message;
lines starting with `/` are console commands (see HELP); `//` runs the bot's own `/`
commands, `/menu` its context menus and `/modal` answers the form it opened. Answers only
the user sees (ephemeral) are marked "(only you)". Every message is printed with its id in
brackets, which `/reply`, `/edit`, `/delete` and `/menu` take.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
import threading
from pathlib import Path
from typing import Any

import av

from bot.config import Settings
from bot.core.bot import VoiceChatBot
from bot.sandbox.commands import ATTACHMENT
from bot.sandbox.interactions import InteractionRecord, is_ephemeral, is_loading
from bot.sandbox.runner import sandboxed_bot
from bot.sandbox.server import Sandbox

HELP = """Sandbox console: you are {user} in #general of {server}, on a local stand-in for Discord.
  a plain line            send it as a message (try !hi, !help, or !chat on to chat)
  /upload PATH [text]     send a message with a file attached (audio is transcribed)
  /voice PATH [text]      send PATH as a Discord voice message
  /reply ID text          reply to message ID (e.g. !correct, !transcribe)
  /edit ID text           edit your message ID;  /delete ID  delete it
  /nick NAME|off          your nickname in this server (what the bot calls you)
  /vc text                type text into the voice channel's own text chat
  /webhook text           a webhook posts text in #general
  /voice join|leave       move yourself into or out of the voice channel
  /voice say PATH [as NAME]  say an audio file in the voice channel, as you or NAME
  /as NAME                speak as someone else in this server: {people}
                          (someone in voice: /as NAME, /voice join, then type a line)
  /server NAME            switch server: {servers} (each has its own data)
  /dm text                send a direct message to the bot
  //NAME [SUB] opt:value  run the bot's / command, e.g. //train name:weather file:data.csv
  //NAME opt:text?        show what the bot suggests for an option, e.g. //train name:we?
  /menu NAME ID           use a message's Apps menu: Transcribe, Speak, Correct this reply
  /modal TEXT             fill in and send the form the bot opened
  /help                   this text;  Ctrl-D or /quit to leave"""


class Console:
    def __init__(self, sandbox: Sandbox, bot: VoiceChatBot | None, out_dir: Path) -> None:
        """`bot` is None when the bots run in other processes."""
        self.sandbox = sandbox
        self.bot = bot
        self.out_dir = out_dir
        self.user = "owner"
        self.server = sandbox.guild("sandbox")
        self.last_event = asyncio.get_running_loop().time()
        self.modal: InteractionRecord | None = None  # the form the bot opened last
        self._loading: set[str] = set()  # ids of "thinking…" messages
        sandbox.listeners.append(self.on_event)
        sandbox.voice.on_utterance = self.on_utterance

    def say(self, text: str) -> None:
        print(text, flush=True)

    async def settle(self, quiet: float = 2.0, limit: float = 120.0) -> None:
        """Wait until the bot is idle: no job running and `quiet` seconds without a message.

        Piped input ends before the bot has answered; this lets the answers arrive.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline and (
            self._jobs_pending() or loop.time() - self.last_event < quiet
        ):
            await asyncio.sleep(0.1)

    async def wait_for_commands(self, limit: float = 20.0) -> None:
        """Wait until the bot in this process has synced its `/` commands (it does so just
        after it is ready), so a `//hi` typed or piped at once finds them."""
        if self.bot is None:  # a sandbox of its own: bots come and go
            return
        registry = self.sandbox.interactions.registry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline and not (
            registry.global_commands or any(registry.guild_commands.values())
        ):
            await asyncio.sleep(0.05)

    def _jobs_pending(self) -> int:
        return self.bot.services.jobs.pending if self.bot is not None else 0

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        self.last_event = asyncio.get_running_loop().time()
        if event == "INTERACTION_CHOICES":
            shown = ", ".join(f"{c['value']}" for c in data["choices"]) or "(none)"
            self.say(f"  suggestions: {shown}")
            return
        if event == "INTERACTION_MODAL":
            self.modal = self.sandbox.interactions.records.get(int(data["id"]))
            fields = ", ".join(_modal_labels(data["modal"]))
            self.say(f"  bot opened the form “{data['modal']['title']}” ({fields}): /modal TEXT")
            return
        if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            return
        if data["author"]["id"] != str(self.sandbox.bot_user.id):
            return
        if is_loading(data):
            self._loading.add(data["id"])
            self.say(f"[{data['id']}] bot is thinking…{self._only(data)}")
            return
        was_loading = data["id"] in self._loading
        self._loading.discard(data["id"])
        marker = "(edited) " if event == "MESSAGE_UPDATE" and not was_loading else ""
        channel = int(data["channel_id"])
        where = ""
        if channel == self.server.voice_channel_id:
            where = "(voice chat) "
        elif channel != self.server.text_channel_id:
            guild = self.sandbox.world.guild_of_channel(channel)
            where = f"({guild.name}) " if guild else "(DM) "
        self.say(f"[{data['id']}] {where}bot{self._only(data)}: {marker}{data['content']}")
        for attachment in data.get("attachments", []):
            path = self.out_dir / f"{attachment['id']}-{attachment['filename']}"
            path.write_bytes(self.sandbox.file(attachment))
            self.say(f"    file saved: {path}")

    def _only(self, message: dict[str, Any]) -> str:
        if not is_ephemeral(message):
            return ""
        user = message.get("interaction_metadata", {}).get("user", {}).get("username")
        return " (only you)" if user in (None, self.user) else f" (only {user})"

    def on_utterance(self, utterance: Any) -> None:
        where = f" -> {utterance.path}" if utterance.path else ""
        self.say(f"    bot spoke in voice: {utterance.duration:.1f} s{where}")

    def help(self) -> str:
        return HELP.format(
            user=self.user,
            server=self.server.name,
            people=", ".join(self.server.members),
            servers=", ".join(self.sandbox.world.guilds),
        )

    async def handle(self, line: str) -> bool:
        """Handle one input line; False means quit."""
        if line.startswith("//"):
            await self.slash(line[2:])
            return True
        if not line.startswith("/"):
            if line.strip():
                sent = await self.sandbox.send(
                    line, author=self.user, channel_id=self.server.text_channel_id
                )
                self.say(f"[{sent['id']}] {self.user}: {line}")
            return True
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.say(f"  can't read that line: {exc}")
            return True
        command, args = words[0], words[1:]
        if command in ("/quit", "/exit"):
            return False
        if command == "/help":
            self.say(self.help())
        elif command == "/as" and args:
            if args[0] not in self.server.members:
                people = ", ".join(self.server.members)
                self.say(f"  {args[0]} is not in {self.server.name}; choose from {people}")
                return True
            self.user = args[0]
            self.say(f"  you are now {self.user}")
        elif command == "/server" and args:
            self.server = self.sandbox.guild(args[0].lower())
            if self.user not in self.server.members:
                self.user = self.server.members[0]
            self.say(f"  you are now {self.user} in #general of {self.server.name}")
        elif command == "/voice" and args in (["join"], ["leave"]):
            if args[0] == "join":
                await self.sandbox.join_voice(self.user, self.server.voice_channel_id)
                self.say(f"  {self.user} joined the voice channel")
            else:
                await self.sandbox.leave_voice(self.user)
                self.say(f"  {self.user} left the voice channel")
        elif command == "/voice" and args[:1] == ["say"] and len(args) in (2, 4):
            if len(args) == 4 and args[2] != "as":
                self.say("  usage: /voice say PATH [as NAME]")
                return True
            await self.voice_say(args[1], args[3] if len(args) == 4 else self.user)
        elif command in ("/upload", "/voice") and args:
            await self.upload(args[0], " ".join(args[1:]), command == "/voice")
        elif command == "/reply" and len(args) >= 2 and args[0].isdigit():
            text = " ".join(args[1:])
            sent = await self.sandbox.send(
                text,
                author=self.user,
                reply_to=int(args[0]),
                channel_id=self.server.text_channel_id,
            )
            self.say(f"[{sent['id']}] {self.user} (reply to {args[0]}): {text}")
        elif command == "/dm" and args:
            sent = await self.sandbox.send(" ".join(args), author=self.user, dm=True)
            self.say(f"[{sent['id']}] (DM) {self.user}: {sent['content']}")
        elif command in ("/edit", "/delete") and args[:1] and args[0].isdigit():
            await self.change(command, int(args[0]), " ".join(args[1:]))
        elif command == "/nick" and len(args) == 1:
            await self.nick(None if args[0] == "off" else args[0])
        elif command == "/vc" and args:
            text = " ".join(args)
            sent = await self.sandbox.send(
                text, author=self.user, channel_id=self.server.voice_channel_id
            )
            self.say(f"[{sent['id']}] (voice chat) {self.user}: {text}")
        elif command == "/webhook" and args:
            text = " ".join(args)
            sent = await self.sandbox.send(
                text, webhook=True, channel_id=self.server.text_channel_id
            )
            self.say(f"[{sent['id']}] webhook: {text}")
        elif command == "/menu" and len(args) >= 2 and args[-1].isdigit():
            await self.menu(" ".join(args[:-1]), int(args[-1]))
        elif command == "/modal" and args:
            await self.submit_modal(" ".join(args))
        else:
            self.say("  unknown console command; /help lists them")
        return True

    async def change(self, command: str, message_id: int, text: str) -> None:
        """`/edit ID text` or `/delete ID`: only your own messages, as on Discord."""
        message = self.sandbox.messages.get(message_id)
        if message is None:
            self.say(f"  there is no message {message_id}")
            return
        if message["author"]["id"] != str(self.sandbox.user(self.user).id):
            self.say(f"  message {message_id} is not yours, {self.user}")
            return
        if command == "/delete":
            await self.sandbox.delete(message_id)
            self.say(f"  {self.user} deleted message {message_id}")
        elif not text:
            self.say("  usage: /edit ID text")
        else:
            await self.sandbox.edit(message_id, text)
            self.say(f"[{message_id}] {self.user}: (edited) {text}")

    async def nick(self, nick: str | None) -> None:
        await self.sandbox.set_nick(self.user, nick, guild=self.server.key)
        if nick is None:
            self.say(f"  {self.user} has no nickname in {self.server.name} now")
        else:
            self.say(f"  {self.user} is now called {nick} in {self.server.name}")

    async def slash(self, text: str) -> None:
        """`//voice engine name:piper`: a `/` command with options; `opt:text?` asks for the
        suggestions of that option instead."""
        try:
            words = shlex.split(text)
        except ValueError as exc:
            self.say(f"  can't read that line: {exc}")
            return
        path = _until_options(words)
        options: dict[str, str] = {}
        last = ""
        for word in words[len(path) :]:
            name, colon, value = word.partition(":")
            if colon and name.isidentifier():
                options[name], last = value, name
            elif last:
                options[last] += " " + word
        command = " ".join(path)
        if not command:
            self.say("  name the command: //hi, //train name:weather")
            return
        try:
            await self._run_slash(command, options)
        except (ValueError, LookupError, PermissionError, OSError) as exc:
            self.say(f"  {exc}")

    async def _run_slash(self, command: str, options: dict[str, str]) -> None:
        where = dict(author=self.user, channel_id=self.server.text_channel_id)
        focused = [name for name, value in options.items() if value.endswith("?")]
        if focused:
            name = focused[0]
            others = {k: v for k, v in options.items() if k != name}
            await self.sandbox.autocomplete(
                command, name, options[name][:-1], options=others, **where
            )
            return
        definitions = self.sandbox.interactions.options_of(command, self.server.id)
        values: dict[str, Any] = dict(options)
        for name, value in options.items():
            if definitions.get(name, {}).get("type") == ATTACHMENT:
                values[name] = await asyncio.to_thread(_read_file, value)
        self.say(f"  {self.user} used /{command}")
        await self.sandbox.slash(command, values, **where)

    async def menu(self, name: str, message_id: int) -> None:
        try:
            await self.sandbox.menu(name, message_id, author=self.user)
        except (ValueError, LookupError, PermissionError) as exc:
            self.say(f"  {exc}")
            return
        self.say(f"  {self.user} used {name} on message {message_id}")

    async def submit_modal(self, text: str) -> None:
        if self.modal is None:
            self.say("  the bot has opened no form")
            return
        try:
            await self.sandbox.submit_modal(self.modal, text)
        except ValueError as exc:
            self.say(f"  {exc}")
            return
        self.modal = None
        self.say(f"  {self.user} sent the form")

    async def upload(self, name: str, text: str, voice_message: bool) -> None:
        try:
            filename, data = await asyncio.to_thread(_read_file, name)
        except OSError as exc:
            self.say(f"  can't read {name}: {exc.strerror}")
            return
        sent = await self.sandbox.send(
            text,
            author=self.user,
            files=[(filename, data)],
            voice_message=voice_message,
            channel_id=self.server.text_channel_id,
        )
        self.say(f"[{sent['id']}] {self.user} sent {filename} ({len(data)} bytes)")

    async def voice_say(self, name: str, speaker: str) -> None:
        """`speaker` says the audio file `name` in this server's voice channel."""
        if speaker not in self.server.members:
            people = ", ".join(self.server.members)
            self.say(f"  {speaker} is not in {self.server.name}; choose from {people}")
            return
        if self.sandbox.bot_voice_channel(self.server.id) is None:
            self.say("  the bot is not in the voice channel here; join it and send !join first")
            return
        try:
            _, data = await asyncio.to_thread(_read_file, name)
        except OSError as exc:
            self.say(f"  can't read {name}: {exc.strerror}")
            return
        if self.sandbox.voice_states.get(self.sandbox.user(speaker).id) != (
            self.server.voice_channel_id
        ):
            await self.sandbox.join_voice(speaker, self.server.voice_channel_id)
            self.say(f"  {speaker} joined the voice channel")
        try:
            spoken = await self.sandbox.speak(speaker, data, guild_id=self.server.id)
        except (av.error.FFmpegError, ValueError, RuntimeError) as exc:
            self.say(f"  can't say {name} in voice: {exc}")
            return
        self.say(f"  {speaker} said {name} in voice ({spoken.seconds:.1f} s)")


def _until_options(words: list[str]) -> list[str]:
    """The command's name (and subcommand): the words before the first `opt:value`."""
    path = []
    for word in words:
        if ":" in word:
            break
        path.append(word)
    return path


def _modal_labels(modal: dict[str, Any]) -> list[str]:
    labels = []
    for row in modal.get("components", []):
        for item in row.get("components", []) or [row.get("component", {})]:
            labels.append(item.get("label") or row.get("label") or item.get("custom_id", "?"))
    return labels


def _read_file(name: str) -> tuple[str, bytes]:
    path = Path(name).expanduser()
    return path.name, path.read_bytes()


async def read_line() -> str | None:
    """The next line of the terminal; None at the end of input (Ctrl-D).

    Read in a daemon thread, not the loop's executor: on Ctrl-C the process ends at once
    instead of waiting for the executor's thread to finish its blocked read (an Enter)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not future.done():
            future.set_result(line)

    def read() -> None:
        line = sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="console-input", daemon=True).start()
    line = await future
    return line.rstrip("\n") if line else None  # "" means end of input (Ctrl-D)


async def run_console(settings: Settings) -> None:
    out_dir = settings.data_dir / "sandbox"
    out_dir.mkdir(parents=True, exist_ok=True)
    print("Starting the bot against the local sandbox (no DISCORD_TOKEN set)...", flush=True)
    async with sandboxed_bot(settings, voice_out_dir=out_dir) as (sandbox, bot):
        await chat(Console(sandbox, bot, out_dir))


async def chat(console: Console) -> None:
    """Read lines from the terminal until Ctrl-D or /quit; piped input waits for the answers."""
    console.say(console.help())
    await console.wait_for_commands()
    while (line := await read_line()) is not None:
        try:
            if not await console.handle(line):
                break
        except ValueError as exc:
            console.say(f"  {exc}")
    else:
        await console.settle()
    console.say("Bye.")
