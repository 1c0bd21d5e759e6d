"""Reading aloud, the service: which messages are read, in what order, voice and words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.errors import InvalidInputError
from bot.services.storage import Storage
from bot.services.tenancy.language import ServerLanguages
from bot.services.tenancy.settings import ServerSettings
from bot.services.voice.reading import (
    Mentions,
    ReadAloud,
    Reader,
    Typed,
    attachment_kind,
)
from bot.services.voice.synthesis import SynthesisService
from bot.services.voice.turns import NAME_AGAIN_SECONDS, Turns, Waiting

GUILD = 1
CHANNEL = 10
ALICE, BOB, CAROL = 101, 102, 103
NAMES = {ALICE: "alice", BOB: "bob", CAROL: "carol"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with Storage(tmp_path / "bot.db") as store:
        yield store


@pytest.fixture
async def synthesis(tmp_path: Path) -> AsyncIterator[SynthesisService]:
    service = SynthesisService(["espeak"], tmp_dir=tmp_path / "tts")
    yield service
    await service.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def reading(
    storage: Storage, synthesis: SynthesisService, clock: Clock
) -> AsyncIterator[ReadAloud]:
    stored = ServerSettings(storage)
    service = ReadAloud(
        stored,
        synthesis,
        ServerLanguages(stored),
        prefix="!",
        max_chars=300,
        backlog_max=3,
        clock=clock,
    )
    await service.set_channel(GUILD, CHANNEL, True)
    yield service


_ids = iter(range(1, 10_000))


def typed(author: int, content: str, **changes: object) -> Typed:
    values: dict[object, object] = {
        "id": next(_ids),
        "guild_id": GUILD,
        "channel_id": CHANNEL,
        "author_id": author,
        "author_name": NAMES[author],
        "content": content,
    }
    values.update(changes)
    return Typed(**values)  # type: ignore[arg-type]


async def spoken_turns(reading: ReadAloud) -> list[str]:
    """What the next turns would say, in order, until none is left."""
    said = []
    turns = reading._turns[GUILD]
    while (turn := turns.next((await reading.settings(GUILD)).names)) is not None:
        said.append(reading.spoken(turn, "en-US"))
    return said


# ----- what is read --------------------------------------------------------------------------


async def test_a_message_is_read_with_its_authors_name_once_per_run(reading: ReadAloud) -> None:
    for text in ("hello there", "how are you"):
        assert await reading.offer(typed(ALICE, text))
    assert await spoken_turns(reading) == ["alice said: hello there", "how are you"]


async def test_the_name_is_said_again_after_a_quiet_while(reading: ReadAloud, clock: Clock) -> None:
    await reading.offer(typed(ALICE, "first"))
    assert await spoken_turns(reading) == ["alice said: first"]
    clock.now += NAME_AGAIN_SECONDS + 1
    await reading.offer(typed(ALICE, "much later"))
    assert await spoken_turns(reading) == ["alice said: much later"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"channel_id": 999}, "not a channel read aloud"),
        ({"from_bot": True}, "from a bot or a webhook"),
        ({"author_in_voice": False}, "author not in the bot's voice channel"),
        ({"content": "!say hi"}, "a command"),
        ({"content": "- not for the room"}, "starts with the silence prefix"),
        ({"content": "  -quiet"}, "starts with the silence prefix"),
    ],
)
async def test_messages_that_are_never_read(
    reading: ReadAloud, changes: dict[str, object], reason: str
) -> None:
    message = typed(ALICE, changes.pop("content", "hello"), **changes)  # type: ignore[arg-type]
    assert await reading.silent_because(message) == reason
    assert not await reading.offer(message)
    assert reading.waiting(GUILD) == 0


async def test_an_author_who_opted_out_is_not_read(reading: ReadAloud) -> None:
    await reading.set_read(GUILD, ALICE, False)
    assert await reading.silent_because(typed(ALICE, "hi")) == "the author opted out"
    await reading.set_read(GUILD, ALICE, True)
    assert await reading.silent_because(typed(ALICE, "hi")) is None


async def test_bots_are_read_only_when_allowed(reading: ReadAloud) -> None:
    await reading.set_option(GUILD, "bots", True)
    assert await reading.offer(typed(ALICE, "beep", from_bot=True))


async def test_links_mentions_code_and_spoilers(reading: ReadAloud) -> None:
    content = "see https://example.com/x <@102> ```code``` ||secret|| <:party_parrot:123>"
    await reading.offer(typed(ALICE, content, mentions=Mentions(users={BOB: "bob"})))
    [said] = await spoken_turns(reading)
    assert said == "alice said: see a link bob a code block. a spoiler party parrot"
    assert "example" not in said and "secret" not in said


async def test_attachments_are_described(reading: ReadAloud) -> None:
    await reading.offer(typed(ALICE, "", attachments=("image",)))
    await reading.offer(typed(BOB, "look", attachments=("image", "file")))
    await reading.offer(typed(BOB, "", attachments=("voice",)))
    assert await spoken_turns(reading) == [
        "alice sent an image.",
        "bob said: look 2 files.",
        "A voice message.",
    ]


async def test_names_can_be_turned_off_and_nicknames_are_used(reading: ReadAloud) -> None:
    await reading.set_nickname(GUILD, ALICE, "  Ally  <@1> ")
    await reading.offer(typed(ALICE, "one"))
    assert await spoken_turns(reading) == ["Ally 1 said: one"]
    await reading.set_option(GUILD, "names", False)
    await reading.offer(typed(BOB, "two"))
    assert await spoken_turns(reading) == ["two"]


async def test_a_long_message_is_cut_with_a_notice(reading: ReadAloud) -> None:
    await reading.offer(typed(ALICE, "word " * 200))
    [said] = await spoken_turns(reading)
    assert said.endswith("… (message cut)") and len(said) < 340


async def test_the_words_follow_the_servers_language(reading: ReadAloud, storage: Storage) -> None:
    await storage.set_guild_setting(GUILD, "language", "fr-FR")
    await reading.offer(typed(ALICE, "regarde https://example.com"))
    await reading.offer(typed(BOB, "", attachments=("image",)))
    turns = reading._turns[GUILD]
    first, second = turns.next(True), turns.next(True)
    assert first is not None and second is not None
    assert reading.spoken(first, "fr-FR") == "alice a dit: regarde un lien"
    assert reading.spoken(second, "fr-FR") == "bob a envoyé une image."


# ----- turns ---------------------------------------------------------------------------------


def waiting(author: int, message_id: int) -> Waiting:
    return Waiting(message_id, author, NAMES[author], f"m{message_id}", ())


def test_three_people_typing_at_once_are_read_in_turns() -> None:
    turns = Turns(backlog_max=5)
    turns.add(waiting(ALICE, 1))
    first = turns.next(True)
    for author, message_id in [(ALICE, 2), (ALICE, 3), (BOB, 4), (CAROL, 5), (BOB, 6)]:
        turns.add(waiting(author, message_id))
    order = [first]
    while (turn := turns.next(True)) is not None:
        order.append(turn)
    assert [t.waiting.message_id for t in order if t] == [1, 4, 5, 2, 6, 3]


def test_one_persons_backlog_is_capped_and_counted() -> None:
    turns = Turns(backlog_max=2)
    assert turns.add(waiting(ALICE, 1)) and turns.add(waiting(ALICE, 2))
    assert not turns.add(waiting(ALICE, 3)) and not turns.add(waiting(ALICE, 4))
    assert len(turns) == 2
    turn = turns.next(True)
    assert turn is not None and (turn.waiting.message_id, turn.dropped) == (3, 2)
    turn = turns.next(True)
    assert turn is not None and (turn.waiting.message_id, turn.dropped) == (4, 0)


async def test_the_dropped_notice_is_spoken(reading: ReadAloud) -> None:
    for n in range(5):
        await reading.offer(typed(ALICE, f"message {n}"))
    said = await spoken_turns(reading)
    assert said[0] == "…and 2 more from alice. alice said: message 2"
    assert said[1:] == ["message 3", "message 4"]


async def test_edits_and_deletions_of_waiting_messages(reading: ReadAloud) -> None:
    kept, edited, deleted = (typed(ALICE, t) for t in ("one", "two", "three"))
    emptied = typed(BOB, "four")
    for message in (kept, edited, deleted, emptied):
        await reading.offer(message)
    assert await reading.edit(GUILD, edited.id, "two, edited")
    assert reading.delete(GUILD, deleted.id)
    assert await reading.edit(GUILD, emptied.id, "- never mind")
    assert not reading.delete(GUILD, deleted.id)  # gone already
    assert not await reading.edit(GUILD, 424242, "unknown")
    assert await spoken_turns(reading) == ["alice said: one", "two, edited"]


async def test_an_edit_or_deletion_before_the_message_is_queued_still_counts(
    reading: ReadAloud,
) -> None:
    deleted, edited = typed(ALICE, "three"), typed(ALICE, "four")
    assert not reading.delete(GUILD, deleted.id)  # Discord's event came first
    assert not await reading.edit(GUILD, edited.id, "four, edited")
    assert not await reading.offer(deleted)
    assert await reading.offer(edited)
    assert await reading.edit(GUILD, deleted.id, "edited after deletion") is False
    assert await spoken_turns(reading) == ["alice said: four, edited"]


async def test_stop_clears_what_waits(reading: ReadAloud) -> None:
    await reading.offer(typed(ALICE, "one"))
    await reading.offer(typed(BOB, "two"))
    assert reading.clear(GUILD) == 2
    assert reading.waiting(GUILD) == 0
    assert [clip async for clip in reading.turn(GUILD)] == []


# ----- a person's choices --------------------------------------------------------------------


async def test_voice_speed_and_nickname_are_checked_and_kept(reading: ReadAloud) -> None:
    assert await reading.reader(GUILD, ALICE) == Reader()
    reader = await reading.set_voice(GUILD, ALICE, "en-gb")
    assert (reader.engine, reader.voice) == ("espeak", "en-gb")
    assert (await reading.set_voice(GUILD, ALICE, "espeak")).voice is None
    assert (await reading.set_speed(GUILD, ALICE, "1.3")).speed == 1.3
    assert (await reading.set_speed(GUILD, ALICE, "2x")).speed == 2.0
    for bad in ("0.1", "3", "fast", "nan", "inf"):
        with pytest.raises(InvalidInputError, match="from 0.5 to 2.0"):
            await reading.set_speed(GUILD, ALICE, bad)
    with pytest.raises(InvalidInputError, match="not a voice for `en-US`"):
        await reading.set_voice(GUILD, ALICE, "fr-fr")
    with pytest.raises(InvalidInputError, match="at most 32"):
        await reading.set_nickname(GUILD, ALICE, "x" * 33)
    with pytest.raises(InvalidInputError, match="letters or digits"):
        await reading.set_nickname(GUILD, ALICE, "<@#>")
    reader = await reading.reader(GUILD, ALICE)
    assert (reader.engine, reader.voice, reader.speed) == ("espeak", None, 2.0)
    assert await reading.reader(GUILD + 1, ALICE) == Reader()  # another server's choices
    assert (await reading.set_voice(GUILD, ALICE, "default")).engine is None


async def test_forget_deletes_the_choices_in_every_server(
    reading: ReadAloud, storage: Storage
) -> None:
    await reading.set_speed(GUILD, ALICE, "1.5")
    await reading.set_nickname(GUILD + 1, ALICE, "Al")
    await storage.set_user_setting(ALICE, "listen_optout", True)
    assert await reading.forget(ALICE) == 2
    assert await reading.reader(GUILD, ALICE) == Reader()
    assert await storage.get_user_setting(ALICE, "listen_optout") is True
    assert await reading.forget(ALICE) == 0


async def test_a_damaged_stored_choice_reads_as_the_default(
    reading: ReadAloud, storage: Storage
) -> None:
    await storage.set_user_setting(ALICE, f"reading:{GUILD}", ["not", "a", "dict"])
    assert await reading.reader(GUILD, ALICE) == Reader()
    await storage.set_user_setting(ALICE, f"reading:{GUILD}", {"speed": 99, "read": "x"})
    assert await reading.reader(GUILD, ALICE) == Reader(speed=2.0, read=True)


async def test_auto_join_needs_a_channel_the_switch_and_a_reader(reading: ReadAloud) -> None:
    assert not await reading.should_join(GUILD, ALICE)
    await reading.set_option(GUILD, "autojoin", True)
    assert await reading.should_join(GUILD, ALICE)
    await reading.set_read(GUILD, ALICE, False)
    assert not await reading.should_join(GUILD, ALICE)
    await reading.set_channel(GUILD, CHANNEL, False)
    assert not await reading.should_join(GUILD, BOB)


async def test_settings_survive_a_restart(
    reading: ReadAloud, storage: Storage, synthesis: SynthesisService
) -> None:
    await reading.set_option(GUILD, "names", False)
    again = ReadAloud(
        ServerSettings(storage),
        synthesis,
        ServerLanguages(ServerSettings(storage)),
        prefix="!",
        max_chars=300,
    )
    settings = await again.settings(GUILD)
    assert settings.channels == {CHANNEL} and not settings.names and not settings.autojoin


async def test_a_turn_is_spoken_in_the_authors_voice_and_speed(reading: ReadAloud) -> None:
    await reading.set_voice(GUILD, ALICE, "en-gb")
    durations = []
    for speed in ("1", "2"):
        await reading.set_speed(GUILD, ALICE, speed)
        await reading.offer(typed(ALICE, "the quick brown fox jumps over the lazy dog"))
        clips = [clip async for clip in reading.turn(GUILD)]
        assert {clip.engine for clip in clips} == {"espeak"}
        durations.append(sum(clip.duration_seconds for clip in clips))
        for clip in clips:
            clip.path.unlink()
    normal, fast = durations
    assert fast < 0.7 * normal


@pytest.mark.parametrize(
    ("filename", "content_type", "voice", "kind"),
    [
        ("cat.PNG", None, False, "image"),
        ("clip", "video/mp4", False, "video"),
        ("song.mp3", None, False, "audio"),
        ("voice-message.ogg", "audio/ogg", True, "voice"),
        ("notes.txt", "text/plain", False, "file"),
    ],
)
def test_attachment_kinds(filename: str, content_type: str | None, voice: bool, kind: str) -> None:
    assert attachment_kind(filename, content_type, voice) == kind
