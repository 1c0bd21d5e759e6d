"""Reading aloud through the sandbox: people type, the bot speaks it in voice, and whisper
listens to what it said."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.sandbox.server import Sandbox
from bot.services.speech.audio import decode, to_wav
from bot.services.voice.sentences import stream_pieces
from tests.e2e.conftest import E2E, eventually
from tests.fixtures.recordings import recordings

GUILD = Sandbox.GUILD_ID
Hear = Callable[[bytes], Awaitable[str]]


class Listener:
    """Whisper's ear on the bot's voice: each utterance heard once, in order."""

    def __init__(self, e2e: E2E, hear: Hear) -> None:
        self.e2e = e2e
        self.hear = hear
        self.next_index = 0

    async def until(self, *words: str, timeout: float = 60) -> str:
        """What the bot says from here until every word of `words` was heard (lower case)."""
        heard = ""
        while not all(word in heard for word in words):
            try:
                said = await self.e2e.sandbox.voice.wait_for_utterance(
                    GUILD, index=self.next_index, timeout=timeout
                )
            except TimeoutError:
                raise AssertionError(f"never heard {words}; heard {heard!r}") from None
            self.next_index += 1
            heard += " " + await self.hear(said.mono16k_wav())
        return heard

    async def duration_of_next(self, timeout: float = 60) -> tuple[float, str]:
        said = await self.e2e.sandbox.voice.wait_for_utterance(
            GUILD, index=self.next_index, timeout=timeout
        )
        self.next_index += 1
        return said.duration, await self.hear(said.mono16k_wav())


async def read_here(e2e: E2E, *people: str, engine: str = "piper") -> None:
    """`people` in voice, the bot with them, #general read aloud in `engine`'s voice."""
    for name in people:
        await e2e.sandbox.join_voice(name)
    assert await e2e.ask_text("!join") == "Joined **Voice**."
    assert await e2e.ask_text(f"!voice engine {engine}") == f"Speech engine set to `{engine}`."
    on = await e2e.ask_text("!voice read on")
    assert on.startswith(
        f"I'll read <#{Sandbox.TEXT_CHANNEL_ID}> aloud for the people in **Voice**"
    )


async def test_messages_are_read_with_the_name_once_and_links_unread(e2e: E2E, hear: Hear) -> None:
    await read_here(e2e, "owner", "moderator")
    ear = Listener(e2e, hear)
    await e2e.sandbox.send("the weather is sunny today", author="moderator")
    first = await ear.until("sunny")
    assert "moderator" in first, first  # "moderator said: …"
    await e2e.sandbox.send("i would like a cup of coffee please", author="moderator")
    second = await ear.until("coffee")
    assert "moderator" not in second, second  # the same run: no name again
    await e2e.sandbox.send("look at https://example.com/page now", author="moderator")
    link = await ear.until("link")
    assert "example" not in link and "http" not in link
    shown = await e2e.ask_text("!voice read", author="member")
    assert shown.startswith(f"**Reading aloud**: <#{Sandbox.TEXT_CHANNEL_ID}> · names on")


async def test_someone_outside_voice_and_a_channel_no_longer_read_stay_silent(
    e2e: E2E, hear: Hear
) -> None:
    await read_here(e2e, "owner")
    ear = Listener(e2e, hear)
    await e2e.sandbox.send("zebras have black and white stripes", author="member")  # not in voice
    await e2e.sandbox.send("- psst, this one stays silent")
    await e2e.sandbox.send("please open the window")
    heard = await ear.until("window")
    assert "zebra" not in heard and "silent" not in heard
    assert await e2e.ask_text("!voice read off") == (
        f"I no longer read <#{Sandbox.TEXT_CHANNEL_ID}> aloud."
    )
    await e2e.sandbox.send("penguins waddle on the ice")
    await e2e.sandbox.send("!say good morning everyone")
    heard = await ear.until("morning")
    assert "penguin" not in heard


async def test_only_admins_switch_reading(e2e: E2E) -> None:
    refused = await e2e.ask_text("!voice read on", author="member")
    assert refused == "You don't have permission to use this command."
    assert "no channel" in await e2e.ask_text("!voice read", author="member")
    assert await e2e.ask_text("!voice read maybe") == "Say `on` or `off`, not `maybe`."
    assert await e2e.ask_text("!voice read names") == "Say `!voice read names on` or `off`."
    changed = await e2e.ask_text("!voice read autojoin on")
    assert changed.endswith("names on · bots and webhooks off · auto-join on.")


async def test_a_users_own_voice_and_speed_are_used(e2e: E2E, hear: Hear) -> None:
    await read_here(e2e, "owner")
    await e2e.ask("!voice read names off")  # one utterance a message
    chose = await e2e.ask_text("!voice me voice en-gb")
    assert chose.startswith("**Your voice here**: `espeak: en-gb` · speed 1")
    assert "speed 1.8" in await e2e.ask_text("!voice me speed 1.8")
    assert "from 0.5 to 2.0" in await e2e.ask_text("!voice me speed 5")
    ear = Listener(e2e, hear)
    text = "one two three four five six seven eight nine ten"
    await e2e.sandbox.send(text)
    duration, heard = await ear.duration_of_next()
    assert "three" in heard or "3" in heard
    piece = stream_pieces(text)[0]  # the first clip of the message
    synthesis = e2e.bot.services.synthesis
    own = await synthesis.synthesize(piece, "en-US", voice="en-gb", engine="espeak", speed=1.8)
    usual = await synthesis.synthesize(piece, "en-US", voice="en-gb", engine="espeak")
    piper = await synthesis.synthesize(piece, "en-US", engine="piper")
    for clip in (own, usual, piper):
        clip.path.unlink()
    assert abs(duration - own.duration_seconds) <= 0.2 * own.duration_seconds
    assert duration < 0.75 * usual.duration_seconds
    assert abs(duration - piper.duration_seconds) > 0.2 * piper.duration_seconds


async def test_three_people_typing_at_once_are_read_in_turns(e2e: E2E, hear: Hear) -> None:
    await read_here(e2e, "owner", "moderator", "member")
    ear = Listener(e2e, hear)
    await e2e.sandbox.send("the train leaves at noon")
    await e2e.sandbox.send("my favourite colour is blue")
    await e2e.sandbox.send("dogs love to play fetch", author="moderator")
    await e2e.sandbox.send("the coffee is too hot", author="member")
    # One word a line that whisper tiny.en hears surely ("dogs love" came out "docs look").
    words = ("noon", "fetch", "coffee", "blue")
    heard = await ear.until(*words)
    assert sorted(words, key=heard.index) == ["noon", "fetch", "coffee", "blue"], heard


async def test_a_deleted_message_is_not_read_and_an_edited_one_is_read_as_edited(
    e2e: E2E, hear: Hear
) -> None:
    await read_here(e2e, "owner")
    ear = Listener(e2e, hear)
    await e2e.sandbox.send("this long message keeps me talking for a few seconds, so wait")
    dropped = await e2e.sandbox.send("the elephant is purple")
    edited = await e2e.sandbox.send("i saw a brown bear")
    await e2e.sandbox.send("the dog is sleeping")
    await e2e.sandbox.delete(int(dropped["id"]))
    await e2e.sandbox.edit(int(edited["id"]), "i saw a polar bear")
    heard = await ear.until("sleeping")
    assert "elephant" not in heard and "brown" not in heard and "polar" in heard


async def test_nicknames_bots_and_attachments(e2e: E2E, hear: Hear) -> None:
    await read_here(e2e, "owner", "member")
    said = await e2e.ask_text("!voice nickname Captain", author="member")
    assert said == "I'll say your name as **Captain**."
    ear = Listener(e2e, hear)
    await e2e.sandbox.send("a webhook speaks", webhook=True)
    await e2e.sandbox.send("", author="member", files=[("cat.png", b"\x89PNG\r\n\x1a\n")])
    heard = await ear.until("image")
    assert "captain" in heard and "webhook" not in heard
    await e2e.sandbox.set_nick("owner", "Professor")
    await e2e.sandbox.send("please close the door")
    heard = await ear.until("door")
    assert "professor" in heard


async def test_auto_join_when_a_reader_joins_voice(e2e: E2E) -> None:
    await e2e.ask("!voice read on")
    await e2e.ask("!voice read autojoin on")
    await e2e.sandbox.join_voice("member")
    await eventually(lambda: e2e.sandbox.bot_voice_channel() == Sandbox.VOICE_CHANNEL_ID, 15)
    await e2e.sandbox.leave_voice("member")
    await eventually(lambda: e2e.sandbox.bot_voice_channel() is None)


async def test_text_in_voice_is_read(e2e: E2E, hear: Hear) -> None:
    await e2e.sandbox.join_voice("owner")
    await e2e.ask("!join")
    voice_chat = Sandbox.VOICE_CHANNEL_ID
    on = await e2e.ask_text("!voice read on", channel_id=voice_chat)
    assert on.startswith(f"I'll read <#{voice_chat}> aloud")
    await e2e.sandbox.send("typing in the voice channel works", channel_id=voice_chat)
    heard = await Listener(e2e, hear).until("works")
    assert "typing" in heard


async def test_reading_and_listening_at_once_never_caption_the_bot(e2e: E2E, hear: Hear) -> None:
    await e2e.sandbox.join_voice("owner")
    sent = await e2e.sandbox.send("!listen on")
    listening = await e2e.sandbox.wait_for_bot_message(after=sent, timeout=30)
    await eventually(lambda: not e2e.sandbox.bot_self_deaf(), 15)
    assert (await e2e.ask_text("!voice read on")).startswith("I'll read")
    ear = Listener(e2e, hear)
    await e2e.sandbox.send("the keyboard is quiet")
    assert "keyboard" in await ear.until("keyboard")
    [person] = recordings("en")
    wav = await asyncio.to_thread(lambda: to_wav(decode(person.data(), person.file)))
    await e2e.sandbox.speak("owner", wav)

    def captions() -> list[str]:
        found = e2e.sandbox.bot_messages(int(listening["channel_id"]))
        return [m["content"] for m in found if m["content"].startswith("**")]

    await eventually(lambda: any("gospel" in c.lower() for c in captions()), 60)
    assert all(c.startswith("**owner:**") for c in captions())
    assert not any("keyboard" in c.lower() for c in captions())


async def test_own_choices_are_per_person_and_forgotten(e2e: E2E) -> None:
    shown = await e2e.ask_text("!voice me", author="member")
    assert shown.startswith("**Your voice here**: `default` · speed 1 · your messages are read")
    assert "said as **member**" in shown and "Voices for `en-US`: piper: " in shown
    assert "not read" in await e2e.ask_text("!voice me read off", author="member")
    assert "speed 0.75" in await e2e.ask_text("!voice me speed 0.75", author="member")
    assert "your messages are read" in await e2e.ask_text("!voice me")  # owner's own
    assert "is not a voice for `en-US`" in await e2e.ask_text("!voice me voice fr-fr")
    assert await e2e.ask_text("!voice me volume 3") == (
        "Choose `voice`, `speed` or `read`, not `volume`."
    )
    assert await e2e.ask_text("!voice me speed") == "Say `!voice me speed VALUE`."
    assert "at most 32" in await e2e.ask_text(f"!voice nickname {'x' * 40}")
    forgot = await e2e.ask_text("!forgetme", author="member")
    assert "Your reading-aloud voice, speed and nickname (1 server(s)) are gone too." in forgot
    assert "speed 1 · your messages are read" in await e2e.ask_text("!voice me", author="member")
