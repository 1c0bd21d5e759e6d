"""A backup, restored into a new DATA_DIR, brings the bot back as it was: the same models,
datasets, feedback and settings, and the model gives the same answers.

The bot is used as in tests/e2e/test_model.py and test_feedback.py, stopped, backed up and
restored with `python -m bot db backup|restore` run as an operator would, and started again on
the restored database with an empty DATA_DIR (its files come back from the database's blobs).
On SQLite, and on PostgreSQL (backed up into a SQLite file, restored into a new database).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.sandbox.runner import bot_on
from bot.sandbox.server import Sandbox
from tests.e2e.conftest import E2E
from tests.e2e.test_feedback import THANKS
from tests.e2e.test_model import MENU, chat, train
from tests.services.test_storage_copy import bot_db

QUESTIONS = ("what food do you have", "what is for lunch", "i am thirsty", "good morning")
SHOWN = ("!models", "!datasets", "!feedback list", "!jobs")


async def what_a_user_sees(env: E2E) -> dict[str, str]:
    """The answers to the questions (chat is on in the channel: a setting) and the listings."""
    seen = {question: await chat(env, question) for question in QUESTIONS}
    for command in SHOWN:
        seen[command] = await env.ask_text(command)
    return seen


async def until_logged(env: E2E, message_id: int, timeout: float = 15.0) -> None:
    """Wait for the bot to log a reply it sent: it logs just after sending, and on PostgreSQL
    a `!correct` sent at once can arrive first and find no chat reply to correct."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await env.bot.services.storage.get_reply(message_id) is None:
        assert loop.time() < deadline, f"reply {message_id} was never logged"
        await asyncio.sleep(0.05)


async def use_the_bot(env: E2E) -> None:
    """Train a dataset, select it, turn chat on, correct a reply, retrain, give feedback."""
    await train(env, "!train", files=[("menu.csv", MENU)])
    assert (await env.ask_text("!select_dataset menu")).startswith("Dataset `menu` selected")
    await env.ask_text("!chat on")
    lunch = await env.ask("what is for lunch", timeout=60)
    await until_logged(env, int(lunch["id"]))
    confirmation = await env.ask_text("!correct Soup and bread.", reply_to=int(lunch["id"]))
    assert "added to the training data of dataset `menu`" in confirmation, confirmation
    await train(env, "!train menu")
    assert await env.ask_text("!feedback keep the soup coming") == THANKS


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Makes DATABASE_URLs of new, empty databases of the test's backend ("": SQLite in
    DATA_DIR)."""
    if request.param == "sqlite":
        return lambda: ""
    return request.getfixturevalue("new_postgres_database")


async def test_a_restored_backup_brings_the_bot_back_as_it_was(
    make_settings: Callable[..., Settings], tmp_path: Path, backend: Callable[[], str]
) -> None:
    database = backend()
    first = make_settings(DATABASE_URL=database)
    sandbox = Sandbox(admin_role=first.admin_role, out_dir=tmp_path / "voice")
    await sandbox.start()
    try:
        async with bot_on(sandbox, first) as bot:
            env = E2E(sandbox, bot)
            await use_the_bot(env)
            before = await what_a_user_sees(env)
        assert "`v2` " in before["!models"] and "1 corrections" in before["!datasets"]
        assert "keep the soup coming" in before["!feedback list"]

        backup = tmp_path / "backup.db"
        done = await asyncio.to_thread(
            bot_db, first.data_dir, "backup", str(backup), database_url=database
        )
        assert done.returncode == 0, done.stderr
        restored_dir, restored_database = tmp_path / "restored", backend()
        done = await asyncio.to_thread(
            bot_db, restored_dir, "restore", str(backup), database_url=restored_database
        )
        assert done.returncode == 0, done.stderr
        assert "  blobs: " in done.stdout and "  feedback: 1 row\n" in done.stdout
        assert not (restored_dir / "servers").exists()  # the files come from the database

        restored = make_settings(DATA_DIR=str(restored_dir), DATABASE_URL=restored_database)
        async with bot_on(sandbox, restored) as bot:
            after = await what_a_user_sees(E2E(sandbox, bot))
        assert after == before
    finally:
        await sandbox.stop()
