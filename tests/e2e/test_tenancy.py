"""Two servers through the sandbox: each server's data is its own.

Server A (Sandbox: owner, moderator, member) makes a dataset, a model, a job, an archive,
feedback, a correction and a transcript. The admin of server B (Second: alice) then tries
every data command against them by name, id and path, and sees only B's own data. The bot's
owner sees other servers only when asking for it with `--all` or `--server ID`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.core.checks import OWNERS_ONLY
from bot.services.files.paths import PATH_REFUSED
from tests.e2e.conftest import E2E
from tests.e2e.test_model import job_report, start_training

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MARKER = "A-SECRET-5d1e"  # only in server A's data: a leak would show it
A_DATASET = (
    "!train secretds\n"
    f"hello there | greet | Hi from A {MARKER}\n"
    f"hey you | greet | Hi from A {MARKER}\n"
    "bye now | leave | Bye from A\n"
    "see you later | leave | Bye from A"
)
B_DATASET = (
    "!train bds\nhi b | greet | Hi from B\nyo b | greet | Hi from B\n"
    "bye b | leave | Bye\nciao b | leave | Bye"
)
NOT_FOUND_TO_ARCHIVE = "There is no dataset, folder or file by that name to archive."


@dataclass
class ServerA:
    job_id: str
    chat_reply_id: int
    transcript_id: int
    voice_message_id: int


async def in_b(e2e: E2E, text: str, author: str = "alice", **send: object) -> dict:
    return await e2e.ask(text, author=author, channel_id=e2e.sandbox.SECOND_TEXT_CHANNEL_ID, **send)


@pytest.fixture
async def server_a(e2e: E2E) -> ServerA:
    sent, _, job_id = await start_training(e2e, A_DATASET)
    assert "**done**" in await job_report(e2e, sent, job_id)
    assert (await e2e.ask_text("!select_dataset secretds")).startswith("Dataset `secretds`")
    assert (await e2e.ask_text("!archive secretds")).startswith("Archived 1 file(s)")
    assert await e2e.ask_text(f"!feedback feedback from A {MARKER}", author="member")
    await e2e.ask_text("!chat on")
    chat = await e2e.ask("hello there", author="member", timeout=60)
    assert MARKER in chat["content"]
    fix = f"!correct {chat['id']} corrected in A {MARKER}"
    assert (await e2e.ask_text(fix, author="member")).startswith("Thanks, your correction")
    voice = await e2e.sandbox.send(
        author="member",
        files=[("hello.ogg", (FIXTURES / "hello.ogg").read_bytes())],
        voice_message=True,
    )
    transcript = await e2e.sandbox.wait_for_bot_message(
        after=voice, predicate=lambda m: m["content"].startswith("**Transcript:**"), timeout=60
    )
    # Chat is on, so the model answers the transcript too: wait for that answer, or a test
    # could take it for the answer to its own next message in the channel.
    await e2e.sandbox.wait_for_bot_message(
        after=transcript, channel_id=int(transcript["channel_id"]), timeout=60
    )
    return ServerA(job_id, int(chat["id"]), int(transcript["id"]), int(voice["id"]))


async def test_b_admin_reaches_none_of_a_data_by_name_or_id(e2e: E2E, server_a: ServerA) -> None:
    a_id, job = e2e.sandbox.GUILD_ID, server_a.job_id
    expected = {
        "!train secretds": "Dataset 'secretds' not found.",
        "!select_dataset secretds": "Dataset `secretds` not found. `!datasets` lists them.",
        "!models secretds": (
            "Dataset `secretds` has no trained model yet. Train it with `!train secretds`."
        ),
        "!use_model v1 secretds": "Model version v1 not found for dataset secretds.",
        f"!job {job}": f"Job `{job}` not found. `!jobs` lists the latest.",
        "!jobs": "No jobs yet.",
        "!getfile datasets/secretds.csv": "File not found.",
        "!getfile models/secretds/manifest.json": "File not found.",
        "!getfile datasets/secretds.corrections.csv": "File not found.",
        "!getfile archives": "File not found.",
        "!archive secretds": NOT_FOUND_TO_ARCHIVE,
        f"!getfile ../{a_id}/datasets/secretds.csv": PATH_REFUSED,
        f"!archive ../{a_id}": PATH_REFUSED,
        "!feedback list": "There is no feedback yet.",
        f"!correct {server_a.chat_reply_id} a better answer": "Message not found.",
        f"!correct {server_a.transcript_id} a better answer": "Message not found.",
        "!datasets --all": OWNERS_ONLY,
        f"!getfile --server {a_id} datasets/secretds.csv": OWNERS_ONLY,
        f"!feedback list --server {a_id}": OWNERS_ONLY,
        "!jobs --all": OWNERS_ONLY,
        f"!job {job} --all": OWNERS_ONLY,
    }
    for command, reply in expected.items():
        answer = await in_b(e2e, command)
        assert answer["content"] == reply, command
        assert answer["attachments"] == [], command
    listing = (await in_b(e2e, "!datasets"))["content"]
    assert "secretds" not in listing and "`smalltalk` (sample)" in listing
    export = await in_b(e2e, "!feedback export")
    rows = list(csv.reader(io.StringIO(e2e.sandbox.file(export["attachments"][0]).decode())))
    assert rows == [["id", "created_at", "user_id", "guild_id", "channel_id", "text", "server"]]
    # Replying in B to A's voice message finds nothing to transcribe.
    answer = await in_b(e2e, "!transcribe", reply_to=server_a.voice_message_id)
    assert answer["content"] == "I can't find the message you replied to."
    # B's chat uses B's own copy of the sample model, never A's model.
    await in_b(e2e, "!chat on")
    first = await in_b(e2e, "hello there", author="bob")
    assert first["content"].startswith("Hello! Nice to see you.")
    b_models = e2e.server_dir(e2e.sandbox.SECOND_GUILD_ID) / "models"
    assert [p.name for p in b_models.iterdir()] == ["smalltalk"]
    for message in e2e.sandbox.bot_messages(e2e.sandbox.SECOND_TEXT_CHANNEL_ID):
        assert MARKER not in message["content"]
        for attachment in message["attachments"]:
            assert MARKER.encode() not in e2e.sandbox.file(attachment)
    assert (await e2e.ask_text("!hi", author="member")).startswith("Hi member!")


def hostile_paths_into(a_dir: Path, a_id: int) -> list[str]:
    targets = [f"{a_id}/datasets/secretds.csv", f"{a_id}/models/secretds/manifest.json", str(a_id)]
    prefixes = [
        "../",
        "../../servers/",
        "./../",
        "datasets/../../",
        "models/../../",
        "archives/../../",
        "..\\",
        "datasets\\..\\..\\",
        "%2e%2e/",
        "%2e%2e%2f",
        "..%2f",
        "%252e%252e%252f",
        "servers/",
        "",
        "/",
        "....//",
    ]
    paths = [prefix + target for prefix in prefixes for target in targets]
    paths += [
        str(a_dir / "datasets" / "secretds.csv"),
        str(a_dir),
        f"file://{a_dir}/datasets/secretds.csv",
        quote(f"../{a_id}/datasets/secretds.csv", safe=""),
        f"..\u2215{a_id}\u2215datasets\u2215secretds.csv",  # division slash
        f"..\uff0f{a_id}\uff0fdatasets",  # fullwidth solidus
        "link_a/datasets/secretds.csv",
        "link_a",
        "datasets/stolen.csv",
        "datasets/link_dir/secretds.csv",
        "link_a_abs/models/secretds/manifest.json",
    ]
    return paths


async def test_no_hostile_path_from_b_reaches_a_folder(e2e: E2E, server_a: ServerA) -> None:
    a_dir = e2e.server_dir(e2e.sandbox.GUILD_ID)
    b_dir = e2e.server_dir(e2e.sandbox.SECOND_GUILD_ID)
    # Links inside B's folder that point into A's: a check that follows them would leak.
    (b_dir / "link_a").symlink_to(f"../{e2e.sandbox.GUILD_ID}")
    (b_dir / "link_a_abs").symlink_to(a_dir)
    (b_dir / "datasets" / "stolen.csv").symlink_to(a_dir / "datasets" / "secretds.csv")
    (b_dir / "datasets" / "link_dir").symlink_to(a_dir / "datasets")
    paths = hostile_paths_into(a_dir, e2e.sandbox.GUILD_ID)
    assert len(set(paths)) >= 50
    refusals = {PATH_REFUSED, "File not found.", NOT_FOUND_TO_ARCHIVE}
    for path in paths:
        for command in ("getfile", "archive"):
            reply = await in_b(e2e, f"!{command} {path}")
            assert reply["content"] in refusals or (
                command == "archive" and reply["content"].startswith("There are no files")
            ), (command, path, reply["content"])
            for attachment in reply["attachments"]:
                data = e2e.sandbox.file(attachment)
                assert MARKER.encode() not in data, (command, path)
            assert str(a_dir) not in reply["content"]


async def test_owners_see_other_servers_only_when_they_ask(e2e: E2E, server_a: ServerA) -> None:
    b_id = e2e.sandbox.SECOND_GUILD_ID
    sent, _, b_job = await start_training(
        e2e, B_DATASET, author="alice", channel_id=e2e.sandbox.SECOND_TEXT_CHANNEL_ID
    )
    assert "**done**" in await job_report(e2e, sent, b_job)
    assert (await in_b(e2e, "!feedback feedback from B")) is not None

    # Without a flag the owner works on server A's data only.
    assert "bds" not in await e2e.ask_text("!datasets")
    assert await e2e.ask_text("!getfile datasets/bds.csv") == "File not found."
    assert "feedback from B" not in await e2e.ask_text("!feedback list")
    assert b_job not in await e2e.ask_text("!jobs")
    assert (
        await e2e.ask_text(f"!job {b_job}") == f"Job `{b_job}` not found. `!jobs` lists the latest."
    )

    # Asked explicitly, the owner sees every server.
    everything = await e2e.ask_text("!datasets --all")
    assert f"**Datasets of `{b_id}`**" in everything and "`bds`" in everything
    assert "`secretds`" in everything
    reply = await e2e.ask(f"!getfile --server {b_id} datasets/bds.csv")
    assert b"Hi from B" in e2e.sandbox.file(reply["attachments"][0])
    both = await e2e.ask_text("!feedback list --all")
    assert "feedback from B" in both and MARKER in both and f"[{b_id}]" in both
    jobs = await e2e.ask_text("!jobs --all")
    assert b_job in jobs and server_a.job_id in jobs and f"in `{b_id}`" in jobs
    assert "**done**" in await e2e.ask_text(f"!job {b_job} --all")
    assert "`bds`" in await e2e.ask_text(f"!models bds --server {b_id}")
    reply = await e2e.ask(f"!archive --server {b_id} bds")
    assert reply["content"].startswith("Archived 1 file(s) to `archives/bds-")
    assert list((e2e.server_dir(b_id) / "archives").glob("bds-*.zip"))
    # A bad server name is refused, and the database and logs are never reachable.
    assert "is not a server" in await e2e.ask_text("!getfile --server ../.. bot.db")
    assert await e2e.ask_text("!getfile ../../bot.db") == PATH_REFUSED
    assert await e2e.ask_text("!getfile --server legacy ../../logs/bot.log") == PATH_REFUSED


async def test_dms_are_each_users_own_namespace(e2e: E2E, server_a: ServerA) -> None:
    reply = await e2e.ask("!feedback a private note", dm=True, author="member")
    assert reply["content"].startswith("Thank you")
    # The member's DM data is not the server's: A's admins don't see it.
    assert "a private note" not in await e2e.ask_text("!feedback list", author="moderator")
    listing = await e2e.ask("!datasets", dm=True, author="member")
    assert "secretds" not in listing["content"]
    member_id = e2e.sandbox.user("member").id
    everything = await e2e.ask_text(f"!feedback list --server dm-{member_id}")
    assert "a private note" in everything and MARKER not in everything
    assert re.search(r"#\d+ ", everything)
