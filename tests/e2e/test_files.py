"""!getfile and !archive through the sandbox: admins only, and nothing leaves the server's
own part of DATA_DIR (servers/<server id>/)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.core.checks import NO_PERMISSION
from bot.sandbox.runner import sandboxed_bot
from bot.sandbox.server import Sandbox
from bot.services.files.paths import PATH_REFUSED
from bot.services.files.service import IS_FOLDER
from bot.services.storage import Storage
from bot.services.storage.blobs import DatabaseBlobs
from tests.e2e.conftest import E2E
from tests.services.hostile_paths import HOSTILE_PATHS, SECRET_MARKER, make_hostile_tree

CSV = (
    "text,label,reply\nhello,greeting,Hi!\nhey,greeting,Hi!\n"
    "bye,goodbye,Bye!\nsee you,goodbye,Bye!\n"
)


@pytest.fixture
def data_dir(e2e: E2E) -> Path:
    """The Sandbox server's own folder: what its admins can reach."""
    root = e2e.bot.settings.data_dir / "servers" / str(e2e.sandbox.GUILD_ID)
    (root / "datasets").mkdir(parents=True, exist_ok=True)
    (root / "datasets" / "greet.csv").write_text(CSV, encoding="utf-8")
    (root / "notes" / "deep").mkdir(parents=True, exist_ok=True)
    (root / "notes" / "deep" / "a.txt").write_text("note a", encoding="utf-8")
    return root


async def test_getfile_sends_a_file_from_the_data_folder(e2e: E2E, data_dir: Path) -> None:
    reply = await e2e.ask("!getfile datasets/greet.csv")
    assert reply["attachments"][0]["filename"] == "greet.csv"
    assert e2e.sandbox.file(reply["attachments"][0]).decode() == CSV


async def test_getfile_refuses_folders_missing_files_and_oversized_files(
    e2e: E2E, data_dir: Path
) -> None:
    assert await e2e.ask_text("!getfile notes") == IS_FOLDER
    assert await e2e.ask_text("!getfile notes/nothing.txt") == "File not found."
    (data_dir / "big.bin").write_bytes(b"\0" * (11 * 1024 * 1024))
    text = await e2e.ask_text("!getfile big.bin")
    assert text == "That file is too large to send (11 MB; the limit is 10 MB)."
    assert await e2e.ask_text("!getfile") == "Missing `path`. Usage: `!getfile <path>`"


async def test_no_hostile_path_escapes_through_discord(e2e: E2E, data_dir: Path) -> None:
    make_hostile_tree(data_dir)
    usable = [p for p in HOSTILE_PATHS if p.strip() and "\x00" not in p and "\n" not in p]
    assert len(usable) >= 50
    for path in usable:
        for command in ("getfile", "archive"):
            reply = await e2e.ask(f"!{command} {path}")
            for attachment in reply["attachments"]:
                assert SECRET_MARKER.encode() not in e2e.sandbox.file(attachment), (command, path)
            assert str(data_dir) not in reply["content"]
            assert reply["content"] in (PATH_REFUSED, "File not found.") or (
                command == "archive" and "no dataset, folder or file" in reply["content"]
            ), (command, path, reply["content"])


async def test_archive_zips_a_dataset_and_a_folder(e2e: E2E, data_dir: Path) -> None:
    reply = await e2e.ask("!archive greet")
    assert reply["content"].startswith("Archived 1 file(s) to `archives/greet-")
    archive = zipfile.ZipFile(io.BytesIO(e2e.sandbox.file(reply["attachments"][0])))
    assert archive.namelist() == ["greet.csv"]
    assert archive.read("greet.csv").decode() == CSV
    assert list(data_dir.glob("archives/greet-*.zip"))
    reply = await e2e.ask("!archive notes")
    names = zipfile.ZipFile(io.BytesIO(e2e.sandbox.file(reply["attachments"][0]))).namelist()
    assert any(n.endswith("deep/a.txt") for n in names)


async def test_archive_too_large_to_attach_stays_in_the_data_folder(
    e2e: E2E, data_dir: Path
) -> None:
    import os

    (data_dir / "bulk").mkdir()
    (data_dir / "bulk" / "noise.bin").write_bytes(os.urandom(11 * 1024 * 1024))
    reply = await e2e.ask("!archive bulk", timeout=60)
    assert reply["attachments"] == []
    assert "too large to attach (the limit is 10 MB)" in reply["content"]


@pytest.mark.parametrize("command", ["getfile datasets/greet.csv", "archive greet"])
async def test_non_admin_is_refused(e2e: E2E, data_dir: Path, command: str) -> None:
    reply = await e2e.ask(f"!{command}", author="member")
    assert reply["content"] == NO_PERMISSION and reply["attachments"] == []
    # the admin role makes a member an admin
    reply = await e2e.ask(f"!{command}", author="moderator")
    assert reply["attachments"]


async def test_a_file_kept_only_in_the_database_is_sent_by_a_fresh_process(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Another process of the bot (another machine) stored a dataset; this one starts with an
    empty DATA_DIR on the same database and still lists and sends it."""
    database = f"sqlite:///{tmp_path / 'shared' / 'bot.db'}"
    async with Storage(database) as storage:
        await DatabaseBlobs(storage).put(str(Sandbox.GUILD_ID), "datasets/greet.csv", CSV.encode())
    settings = make_settings(DATA_DIR=str(tmp_path / "fresh"), DATABASE_URL=database)
    async with sandboxed_bot(settings) as (sandbox, bot):
        e2e = E2E(sandbox, bot)
        reply = await e2e.ask("!getfile datasets/greet.csv")
        assert reply["attachments"][0]["filename"] == "greet.csv"
        assert e2e.sandbox.file(reply["attachments"][0]).decode() == CSV
        assert "greet" in await e2e.ask_text("!datasets")
        assert await e2e.ask_text("!getfile datasets/../../shared/bot.db") == PATH_REFUSED
