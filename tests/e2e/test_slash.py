"""Every `/` command through the sandbox with the real discord.py client: its main path and
one bad input, what is private (ephemeral) and what the channel sees, and sync."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from discord import app_commands
from discord.ext import commands

from bot.cogs.feedback import THANKS
from bot.cogs.sync import HASH_FILE
from bot.cogs.voice import NOT_IN_VOICE
from bot.core.checks import NO_PERMISSION, NOT_OWNER, OWNERS_ONLY_OPTION
from bot.sandbox.interactions import DEFERRED, MESSAGE_REPLY, is_ephemeral
from bot.sandbox.runner import sandboxed_bot
from tests.e2e.conftest import E2E, assert_no_late_interactions, eventually, job_ended
from tests.e2e.test_model import JOB_STARTED, MENU, TRAINING_TIMEOUT

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


async def run(
    e2e: E2E,
    command: str,
    options: dict[str, Any] | None = None,
    *,
    timeout: float = 30.0,
    **kw: Any,
) -> dict:
    """Run a `/` command; its first finished answer."""
    record = await e2e.sandbox.slash(command, options, **kw)
    return await record.reply(timeout=timeout)


async def private(e2e: E2E, command: str, options: dict[str, Any] | None = None, **kw: Any) -> str:
    """Run a `/` command whose answer must be ephemeral; its text."""
    reply = await run(e2e, command, options, **kw)
    assert is_ephemeral(reply), reply["content"]
    return reply["content"]


async def public(e2e: E2E, command: str, options: dict[str, Any] | None = None, **kw: Any) -> str:
    reply = await run(e2e, command, options, **kw)
    assert not is_ephemeral(reply), reply["content"]
    return reply["content"]


async def test_hi_help_and_instruction(e2e: E2E) -> None:
    assert (await public(e2e, "hi", author="member")).startswith("Hi member!")
    record = await e2e.sandbox.slash("help", author="member")
    replies = await record.replies(1)
    await asyncio.sleep(0.5)
    text = "\n".join(m["content"] for m in record.finished_messages())
    assert "`!hi` · `/hi`" in text and "`!datasets` · `/datasets`" in text
    assert "`!sync`" not in text and "`!train`" not in text  # what members can't run is hidden
    assert replies and not is_ephemeral(replies[0])
    detail = await public(e2e, "help", {"command": "voice engine"})
    assert detail.startswith("**!voice engine") and "`/voice engine`" in detail
    assert "no command called `nothing`" in await private(e2e, "help", {"command": "nothing"})
    record = await e2e.sandbox.slash("instruction")
    assert (await record.reply())["content"].startswith("# How to use VoiceChatBot")


async def test_errors_and_refusals_are_private(e2e: E2E) -> None:
    refused = await private(e2e, "chat", {"state": "on"}, author="member", force=True)
    assert refused == NO_PERMISSION
    assert await private(e2e, "datasets", {"server": "all"}, author="member") == OWNERS_ONLY_OPTION
    assert "not a language code" in await private(e2e, "language", {"code": "x!"})
    # the channel never saw any of it
    assert not any("permission" in m["content"] for m in e2e.sandbox.bot_messages())


async def test_settings_commands(e2e: E2E) -> None:
    assert (await public(e2e, "chat", {"state": "on"}, author="moderator")).startswith("Chat is on")
    text = await public(e2e, "autotranscribe", {"state": "off"}, author="moderator")
    assert text.startswith("Automatic transcription is now off")
    shown = await public(e2e, "language")
    assert shown == "The speech language here is `en-US` (English (United States))."
    chosen = await public(e2e, "language", {"code": "fr-FR"})
    assert chosen == "The speech language is now `fr-FR` (Français (France))."
    assert await private(e2e, "language", {"code": "de"}, author="member") == NO_PERMISSION
    show = await public(e2e, "voice show")
    assert show.startswith("**Voice settings**") and "Language: `fr-FR`" in show
    # piper speaks English only: a French server hears espeak's French voice.
    assert await public(e2e, "voice engine", {"name": "piper"}) == (
        "Speech engine set to `piper`.\npiper has no voice for `fr-FR`; espeak speaks instead."
    )
    assert await public(e2e, "voice engine", {"name": "espeak"}) == "Speech engine set to `espeak`."
    assert await public(e2e, "voice voice", {"name": "default"}) == "Voice set to `default`."
    assert "now off" in await public(e2e, "voice autospeak", {"state": "off"})
    assert "Unknown engine" in await private(e2e, "voice engine", {"name": "gtts"})  # not set up
    refused = await private(e2e, "voice autospeak", {"state": "on"}, author="member")
    assert refused == NO_PERMISSION
    assert await private(e2e, "voice voice", {"name": "nobody"}) == (
        "`nobody` is not a voice for `fr-FR`. Voices for it: espeak: fr, fr-be, fr-ch, fr-fr."
    )
    assert (await public(e2e, "voice voice", {"name": "fr-be"})) == "Voice set to `fr-be`."
    refused = await private(e2e, "autotranscribe", {"state": "on"}, author="member", force=True)
    assert refused == NO_PERMISSION
    dm = await e2e.sandbox.slash("hi", dm=True)
    assert (await dm.reply())["content"].startswith("Hi owner!")
    with pytest.raises(PermissionError):  # server-only commands don't show in DMs
        await e2e.sandbox.slash("chat", {"state": "on"}, dm=True)


async def test_voice_commands_and_the_speak_menu(e2e: E2E) -> None:
    assert await private(e2e, "join") == NOT_IN_VOICE
    assert await private(e2e, "say", {"text": "hello"}) == NOT_IN_VOICE
    await e2e.sandbox.join_voice("owner")
    assert await public(e2e, "join") == "Joined **Voice**."
    utterances: list[Any] = []
    e2e.sandbox.voice.on_utterance = utterances.append
    assert await private(e2e, "say", {"text": "hello there"}) == "🔊 Speaking in **Voice**."
    await eventually(lambda: len(utterances) >= 1, timeout=60)
    message = await e2e.sandbox.send("good morning everyone", author="member")
    record = await e2e.sandbox.menu("Speak", message["id"])
    assert (await record.reply())["content"] == "🔊 Speaking in **Voice**."
    assert is_ephemeral(await record.reply())
    await eventually(lambda: len(utterances) >= 2, timeout=60)
    empty = await e2e.sandbox.send("!hi")
    bot_reply = await e2e.sandbox.wait_for_bot_message(after=empty)
    assert (await public(e2e, "skip")) in ("Skipped.", "Nothing is playing.")
    assert (await public(e2e, "stop")).startswith("Stopped;")
    assert await public(e2e, "leave") == "Left **Voice**."
    record = await e2e.sandbox.menu("Speak", bot_reply["id"], author="member")
    assert (await record.reply())["content"] == NOT_IN_VOICE  # member is not in voice


async def job_done(e2e: E2E, job_id: str) -> None:
    job = await job_ended(e2e.bot, job_id, timeout=TRAINING_TIMEOUT)
    assert job.status == "done", job.error


async def test_train_and_the_model_commands(e2e: E2E) -> None:
    record = await e2e.sandbox.slash("train", {"name": "food", "file": ("menu.csv", MENU)})
    reply = await record.reply(timeout=TRAINING_TIMEOUT)
    assert record.callback == DEFERRED and record.callback_after < 1.0  # deferred at once
    assert reply["content"].startswith("Saved 8 rows with 2 labels as dataset `food`.")
    job_id = JOB_STARTED.search(reply["content"])["id"]
    await job_done(e2e, job_id)
    assert f"Job `{job_id}` (train `food`): **done**" in await public(e2e, "job", {"id": job_id})
    assert (await private(e2e, "job", {"id": "nope"})).startswith("Job `nope` not found.")
    assert job_id in await public(e2e, "jobs")
    assert "`food`: 8 rows, 2 labels" in await public(e2e, "datasets", author="member")
    assert "`food`" in await public(e2e, "datasets", {"server": "all"})  # the owner's view
    models = await public(e2e, "models", {"name": "food"}, author="member")
    assert models.startswith("**Models of `food`**") and "`v1`" in models
    refused = await private(e2e, "models", {"name": "food", "server": "legacy"}, author="member")
    assert refused == OWNERS_ONLY_OPTION
    assert "not found" in await private(e2e, "train", {"name": "nothing"})
    selected = await public(e2e, "select_dataset", {"name": "food"}, author="moderator")
    assert selected.startswith("Dataset `food` selected (8 rows, 2 labels).")
    assert "not found" in await private(e2e, "select_dataset", {"name": "nothing"})
    used = await public(e2e, "use_model", {"version": "v1", "dataset": "food"})
    assert used == "Dataset `food` now uses model `v1`."
    assert "v9" in await private(e2e, "use_model", {"version": "v9", "dataset": "food"})
    tested = await public(e2e, "test", {"data": '["what can i eat"]'}, author="member")
    assert "`what can i eat` → **food**" in tested
    bad = await private(e2e, "test", {"data": "{not json"}, author="member")
    assert "JSON" in bad
    record = await e2e.sandbox.slash(
        "test", {"file": ("check.csv", b"text,label\ni am hungry,food\ni am thirsty,drink\n")}
    )
    reply = await record.reply(timeout=TRAINING_TIMEOUT)
    assert record.callback == DEFERRED  # a file is read and parsed: deferred at once
    assert "**Accuracy:" in "\n".join(m["content"] for m in record.finished_messages())
    assert any(a["filename"] == "confusion_matrix.png" for a in reply["attachments"]) or any(
        a["filename"] == "confusion_matrix.png"
        for m in record.finished_messages()
        for a in m["attachments"]
    )


async def test_files_commands(e2e: E2E) -> None:
    folder = e2e.server_dir()
    (folder / "datasets" / "notes.csv").write_text("text,label\na,b\n")
    record = await e2e.sandbox.slash("getfile", {"path": "datasets/notes.csv"})
    reply = await record.reply()
    assert record.callback == DEFERRED and not is_ephemeral(reply)
    assert reply["attachments"][0]["filename"] == "notes.csv"
    assert e2e.sandbox.file(reply["attachments"][0]) == b"text,label\na,b\n"
    assert "not allowed" in await private(e2e, "getfile", {"path": "../bot.db"})
    refused = await private(
        e2e, "getfile", {"path": "datasets/notes.csv"}, author="member", force=True
    )
    assert refused == NO_PERMISSION
    record = await e2e.sandbox.slash("archive", {"name": "notes"}, author="moderator")
    reply = await record.reply()
    assert record.callback == DEFERRED and reply["content"].startswith("Archived 1 file(s) to ")
    assert reply["attachments"][0]["filename"].startswith("notes-")
    assert "no dataset, folder or file" in await private(e2e, "archive", {"name": "nothing"})
    with pytest.raises(PermissionError):  # members don't even see it
        await e2e.sandbox.slash("archive", {"name": "notes"}, author="member")


async def test_feedback_correct_and_forgetme(e2e: E2E) -> None:
    assert await private(e2e, "feedback send", {"text": "Great bot"}, author="member") == THANKS
    listing = await public(e2e, "feedback list", {"count": 5}, author="moderator")
    assert "Great bot" in listing and listing.startswith("**Latest 1 feedback entries**")
    assert await private(e2e, "feedback list", author="member") == NO_PERMISSION
    record = await e2e.sandbox.slash("feedback export", author="moderator")
    reply = await record.reply()
    assert reply["attachments"][0]["filename"] == "feedback.csv"
    assert b"Great bot" in e2e.sandbox.file(reply["attachments"][0])
    refused = await private(e2e, "feedback export", {"server": "all"}, author="moderator")
    assert refused == OWNERS_ONLY_OPTION

    hi = await e2e.ask("!hi", author="member")
    text = await public(e2e, "correct", {"message": hi["id"], "answer": "Hello!"}, author="member")
    assert text.startswith("Thanks, your correction is saved.")
    link = f"https://example.invalid/channels/{hi['guild_id']}/{hi['channel_id']}/{hi['id']}"
    again = await public(e2e, "correct", {"message": link, "answer": "Hey!"}, author="member")
    assert again.startswith("Thanks, your correction is saved.")
    bad = await private(e2e, "correct", {"message": "yesterday", "answer": "x"}, author="member")
    assert bad.startswith("Give the id of one of my messages")
    user_message = await e2e.sandbox.send("just me", author="member")
    not_mine = await private(e2e, "correct", {"message": user_message["id"], "answer": "x"})
    assert "isn't one of mine" in not_mine

    gone = await private(e2e, "forgetme", author="member")
    assert (
        gone == "Done: I deleted 3 row(s) about you (1 feedback, 2 corrections, 0 logged messages)."
    )


# ----- transcription: deferred at once, answered by followup ---------------------------------


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def autotranscribe_off(e2e: E2E) -> None:
    await e2e.bot.services.storage.set_guild_setting(e2e.sandbox.GUILD_ID, "autotranscribe", False)


async def test_transcribe_and_the_transcribe_menu(e2e: E2E) -> None:
    record = await e2e.sandbox.slash("transcribe", {"file": ("hello.ogg", fixture("hello.ogg"))})
    reply = await record.reply(timeout=120)
    assert record.callback == DEFERRED and record.callback_after < 1.0
    assert not is_ephemeral(reply) and reply["content"].startswith("**Transcript:** ")
    assert "hello" in reply["content"].lower() and "test" in reply["content"].lower()
    assert reply["id"] == record.original["id"]  # the followup replaced "thinking…"

    record = await e2e.sandbox.slash("transcribe", {"file": ("notes.txt", b"just text\n")})
    error = await record.reply()
    assert is_ephemeral(error) and error["content"].startswith("I don't see an audio file there.")
    assert record.original_deleted  # the public "thinking…" went away
    assert error["id"] not in {m["id"] for m in e2e.sandbox.bot_messages()}

    await autotranscribe_off(e2e)
    voice = await e2e.sandbox.send(files=[("vm.ogg", fixture("hello.ogg"))], voice_message=True)
    record = await e2e.sandbox.menu("Transcribe", voice["id"], author="member")
    reply = await record.reply(timeout=120)
    assert record.callback == DEFERRED and not is_ephemeral(reply)
    assert "hello" in reply["content"].lower()
    plain = await e2e.sandbox.send("no audio here", author="member")
    record = await e2e.sandbox.menu("Transcribe", plain["id"], author="member")
    error = await record.reply()
    assert is_ephemeral(error) and error["content"].startswith("I don't see an audio file there.")


async def test_a_two_minute_file_is_deferred_and_answered_by_followup(e2e: E2E) -> None:
    from tests.fixtures import speech

    clip, _said = await asyncio.to_thread(speech.sentences_for, 120)
    data = await asyncio.to_thread(speech.encode, clip, ".mp3")
    record = await e2e.sandbox.slash("transcribe", {"file": ("talk.mp3", data)}, author="member")
    await record.responded(timeout=3)
    assert record.callback == DEFERRED and record.callback_after < 1.0
    assert (await public(e2e, "hi", author="moderator")).startswith("Hi moderator!")  # meanwhile
    # Longer than a minute: the followup shows the transcript as it grows, then all of it.
    reply = await record.reply(lambda m: "still transcribing" not in m["content"], timeout=600)
    assert reply["id"] == record.original["id"] and not is_ephemeral(reply)
    assert reply["content"].startswith("**Transcript")
    assert len(record.finished_messages()) == 1  # one message, edited as it grew


async def test_slow_recognition_still_defers_in_time_and_long_text_goes_as_a_file(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    speech_service = e2e.bot.services.speech
    recognize = speech_service.recognize

    async def slow(segment: Any, language: str = "en-US", **options: Any) -> Any:
        await asyncio.sleep(4.0)  # longer than Discord's 3 seconds
        found = await recognize(segment, language, **options)
        return dataclasses.replace(found, text=(found.text + " ") * 120)

    monkeypatch.setattr(speech_service, "recognize", slow)
    record = await e2e.sandbox.slash("transcribe", {"file": ("hello.ogg", fixture("hello.ogg"))})
    reply = await record.reply(timeout=120)
    assert record.callback == DEFERRED and record.callback_after < 3.0
    assert reply["content"].startswith("**Transcript** (") and "attached" in reply["content"]
    assert reply["attachments"][0]["filename"] == "transcript.txt"
    assert len(e2e.sandbox.file(reply["attachments"][0])) > 2000


async def test_any_slow_command_is_deferred_before_three_seconds(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = e2e.bot.services.storage
    get = storage.get_guild_setting

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(3.5)
        return await get(*args, **kwargs)

    monkeypatch.setattr(storage, "get_guild_setting", slow)
    record = await e2e.sandbox.slash("language")
    reply = await record.reply(timeout=15)
    assert record.callback == DEFERRED and 1.0 < record.callback_after < 3.0
    assert reply["content"] == "The speech language here is `en-US` (English (United States))."
    error = await e2e.sandbox.slash("language", {"code": "x!"}, author="member")
    assert (await error.reply(timeout=15))["content"] == NO_PERMISSION
    assert is_ephemeral(await error.reply())  # private, though a public defer came first


class Late(commands.Cog):
    @app_commands.command(name="late", description="Answers after Discord's 3 seconds.")
    async def late(self, interaction: Any) -> None:
        await asyncio.sleep(3.3)
        await interaction.response.send_message("too late")


async def test_a_late_first_response_gets_10062_and_is_recorded(e2e: E2E) -> None:
    await e2e.bot.add_cog(Late())
    await e2e.bot.tree.sync()
    record = await e2e.sandbox.slash("late")
    await eventually(lambda: bool(record.refused), timeout=10)
    assert record.refused[0][0] == 10062 and record.callback is None
    with pytest.raises(AssertionError, match="too late"):
        assert_no_late_interactions(e2e.sandbox)
    e2e.sandbox.interactions.late.clear()  # seen: the fixture's own check would fail the test


# ----- the Correct this reply menu and its modal ---------------------------------------------


async def test_correct_this_reply_opens_a_modal_and_corrects(e2e: E2E) -> None:
    await e2e.ask_text("!chat on")
    sent = await e2e.sandbox.send("hello")
    answer = await e2e.sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: "first time" not in m["content"], timeout=TRAINING_TIMEOUT
    )
    record = await e2e.sandbox.menu("Correct this reply", answer["id"], author="member")
    await record.responded()
    assert record.callback == 9 and record.modal["title"] == "Correct this reply"
    submitted = await e2e.sandbox.submit_modal(record, "Hi there, friend!")
    reply = await submitted.reply()
    assert not is_ephemeral(reply)
    assert reply["content"].startswith(
        "Thanks, your correction is saved and added to the training data of dataset `smalltalk`"
    )
    assert "“hello” → “Hi there, friend!”" in reply["content"]
    assert "/train smalltalk" in reply["content"]
    corrections = await e2e.bot.services.storage.user_corrections(e2e.sandbox.user("member").id)
    assert [c.correction for c in corrections] == ["Hi there, friend!"]

    mine = await e2e.sandbox.send("my own words", author="member")
    record = await e2e.sandbox.menu("Correct this reply", mine["id"], author="member")
    error = await record.reply()
    assert is_ephemeral(error) and "isn't one of mine" in error["content"]
    assert record.modal is None and record.callback == MESSAGE_REPLY


# ----- autocomplete ----------------------------------------------------------------------------


def values(choices: list[dict[str, Any]]) -> list[str]:
    return [c["value"] for c in choices]


async def test_autocomplete_respects_permissions_and_namespaces(e2e: E2E) -> None:
    sandbox = e2e.sandbox
    folder = e2e.server_dir()
    (folder / "datasets" / "weather.csv").write_text(
        "text,label\nsun,dry\nrain,wet\nsnow,wet\nheat,dry\n"
    )
    second = e2e.server_dir(sandbox.SECOND_GUILD_ID)
    (second / "datasets" / "recipes.csv").write_text("text,label\negg,food\ntea,drink\n")
    record = await sandbox.slash("train", {"name": "weather"})
    job_id = JOB_STARTED.search((await record.reply(timeout=TRAINING_TIMEOUT))["content"])["id"]
    await job_done(e2e, job_id)

    # dataset names: the server's own and the samples; admin-only commands only for admins
    for command, option in (
        ("train", "name"),
        ("select_dataset", "name"),
        ("use_model", "dataset"),
    ):
        assert values(await sandbox.autocomplete(command, option, "we", author="moderator")) == [
            "weather"
        ], command
        member = await sandbox.autocomplete(command, option, "", author="member", force=True)
        assert member == [], command
    assert "smalltalk" in values(await sandbox.autocomplete("train", "name", "", author="owner"))
    assert values(await sandbox.autocomplete("models", "name", "w", author="member")) == ["weather"]
    assert values(await sandbox.autocomplete("archive", "name", "weath")) == [
        "weather",
        "models/weather",
    ]
    assert "datasets" in values(await sandbox.autocomplete("archive", "name", "data"))
    # each server sees only its own
    alice = values(await sandbox.autocomplete("train", "name", "", author="alice"))
    assert "recipes" in alice and "weather" not in alice
    assert values(await sandbox.autocomplete("models", "name", "", author="bob")) == [
        "recipes",
        "smalltalk",
    ]
    # an owner's server option switches the namespace the suggestions come from
    owner_second = await sandbox.autocomplete(
        "models", "name", "", options={"server": str(sandbox.SECOND_GUILD_ID)}
    )
    assert "recipes" in values(owner_second)
    # model versions, job ids, paths
    versions = await sandbox.autocomplete(
        "use_model", "version", "", options={"dataset": "weather"}, author="moderator"
    )
    assert values(versions) == ["v1"] and "(active)" in versions[0]["name"]
    assert await sandbox.autocomplete("use_model", "version", "", author="member", force=True) == []
    jobs = await sandbox.autocomplete("job", "id", "", author="owner")
    assert values(jobs)[0] == job_id and "train weather" in jobs[0]["name"]
    assert job_id in values(await sandbox.autocomplete("job", "id", job_id[:3], author="member"))
    assert values(await sandbox.autocomplete("job", "id", "", author="bob")) == []
    paths = values(await sandbox.autocomplete("getfile", "path", "weather", author="moderator"))
    assert paths[0] == "datasets/weather.csv"
    assert "models/weather/manifest.json" in values(
        await sandbox.autocomplete("getfile", "path", "manifest", author="moderator")
    )
    assert await sandbox.autocomplete("getfile", "path", "", author="member", force=True) == []
    alice_paths = values(await sandbox.autocomplete("getfile", "path", "", author="alice"))
    assert "datasets/recipes.csv" in alice_paths and not any("weather" in p for p in alice_paths)
    assert not any(
        "bot.db" in p for p in values(await sandbox.autocomplete("getfile", "path", "db"))
    )
    # the owners' server option
    for command in (
        "datasets",
        "jobs",
        "job",
        "models",
        "feedback list",
        "feedback export",
        "archive",
    ):
        servers = values(await sandbox.autocomplete(command, "server", "", author="owner"))
        assert str(sandbox.SECOND_GUILD_ID) in servers, command
        assert await sandbox.autocomplete(command, "server", "", author="moderator") == []
    assert "all" not in values(await sandbox.autocomplete("getfile", "server", ""))
    # languages, voices, help
    languages = await sandbox.autocomplete("language", "code", "fr", author="moderator")
    assert values(languages)[:2] == ["fr-FR", "fr-CA"]
    assert languages[0]["name"] == "Français (France) — fr-FR"
    by_own_name = await sandbox.autocomplete("language", "code", "日本", author="moderator")
    assert values(by_own_name) == ["ja-JP"] and by_own_name[0]["name"] == "日本語 (日本) — ja-JP"
    assert "de-DE" in values(await sandbox.autocomplete("language", "code", "Deutsch"))
    assert await sandbox.autocomplete("language", "code", "fr", author="member") == []
    assert "default" in values(
        await sandbox.autocomplete("voice voice", "name", "", author="moderator")
    )
    assert await sandbox.autocomplete("voice voice", "name", "", author="member") == []
    # anyone's own voice: the voices for the server's language, then speeds
    own = values(
        await sandbox.autocomplete(
            "voice me", "value", "en", author="member", options={"what": "voice"}
        )
    )
    assert "en-us" in own and "default" not in own
    speeds = await sandbox.autocomplete("voice me", "value", "1.", options={"what": "speed"})
    assert values(speeds) == ["1.25", "1.5"]
    helped = values(await sandbox.autocomplete("help", "command", "voice e", author="member"))
    assert helped == ["voice engine"]
    # every option that has suggestions was tried above
    wanted = set(autocomplete_options(sandbox.interactions.registry.global_commands))
    tried = {
        (record.name, option["name"])
        for record in sandbox.interactions.records.values()
        if record.type == 4
        for option in focused_options(record.payload["data"]["options"])
    }
    assert wanted - tried == set()


def autocomplete_options(commands_: list[dict[str, Any]], prefix: str = "") -> Any:
    for command in commands_:
        name = f"{prefix}{command['name']}"
        for option in command.get("options") or []:
            if option["type"] in (1, 2):
                yield from autocomplete_options([option], prefix=f"{name} ")
            elif option.get("autocomplete"):
                yield name, option["name"]


def focused_options(options: list[dict[str, Any]]) -> Any:
    for option in options:
        if option.get("focused"):
            yield option
        yield from focused_options(option.get("options") or [])


# ----- sync ------------------------------------------------------------------------------------


async def test_sync_only_when_the_definitions_change(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    async with sandboxed_bot(settings) as (sandbox, _bot):
        await sandbox.slash("hi")  # waits for the first sync
        assert [g for g, _count in sandbox.interactions.registry.syncs] == [None]
    assert (settings.data_dir / HASH_FILE).is_file()
    async with sandboxed_bot(settings) as (sandbox, bot):
        await asyncio.sleep(1.0)
        assert sandbox.interactions.registry.syncs == []  # unchanged: no call to Discord
        assert await E2E(sandbox, bot).ask_text("!sync", author="moderator") == NOT_OWNER
        text = await E2E(sandbox, bot).ask_text("!sync")
        assert text.startswith("Synced ") and text.endswith("to every server.")
        assert len(sandbox.interactions.registry.syncs) == 1


async def test_sync_guild_id_registers_in_one_server(make_settings) -> None:
    settings = make_settings(SYNC_GUILD_ID=str(1_100_000_000_000_000_001))
    async with sandboxed_bot(settings) as (sandbox, bot):
        reply = await (await sandbox.slash("hi")).reply()
        assert reply["content"].startswith("Hi owner!")
        registry = sandbox.interactions.registry
        assert registry.global_commands == [] and registry.guild_commands[sandbox.GUILD_ID]
        with pytest.raises(LookupError):  # the other server has none
            await sandbox.slash("hi", author="alice", wait=0.5)


class TooLong(commands.Cog):
    @app_commands.command(name="toolong", description="d" * 101)
    async def too_long(self, interaction: Any) -> None:
        await interaction.response.send_message("never")


async def test_a_refused_sync_is_logged_and_the_bot_keeps_running(e2e: E2E, caplog) -> None:
    await (await e2e.sandbox.slash("hi")).reply()
    await e2e.bot.add_cog(TooLong())
    with caplog.at_level(logging.ERROR, logger="bot.cogs.sync"):
        text = await e2e.ask_text("!sync")
    assert text.startswith("Discord refused the commands:") and "error code 50035" in text
    assert "toolong" in text and "description" in text
    assert any("Discord refused the / commands" in r.getMessage() for r in caplog.records)
    assert (await e2e.ask_text("!hi")).startswith("Hi owner!")
    assert (await (await e2e.sandbox.slash("hi")).reply())["content"].startswith("Hi owner!")


async def test_a_refused_sync_at_start_never_stops_the_bot(
    make_settings, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from bot.core.bot import VoiceChatBot

    setup_hook = VoiceChatBot.setup_hook

    async def with_a_bad_command(self: VoiceChatBot) -> None:
        await setup_hook(self)
        await self.add_cog(TooLong())

    monkeypatch.setattr(VoiceChatBot, "setup_hook", with_a_bad_command)
    settings = make_settings()
    async with sandboxed_bot(settings) as (sandbox, bot):
        await eventually(
            lambda: any("Discord refused the / commands" in r.getMessage() for r in caplog.records)
        )
        assert sandbox.interactions.registry.global_commands == []
        assert (await E2E(sandbox, bot).ask_text("!hi")).startswith("Hi owner!")
    assert not (settings.data_dir / HASH_FILE).exists()  # the next start tries again
