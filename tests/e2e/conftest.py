"""End-to-end fixtures: the real bot, connected to the sandbox, driven as a user."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.core.bot import VoiceChatBot
from bot.sandbox.runner import sandboxed_bot
from bot.sandbox.server import Sandbox
from bot.services.speech.whisper import WhisperEngine

REPO = Path(__file__).resolve().parents[2]


class E2E:
    """What a user can do and see in the sandbox."""

    def __init__(self, sandbox: Sandbox, bot: VoiceChatBot) -> None:
        self.sandbox = sandbox
        self.bot = bot

    async def ask(self, text: str = "", *, timeout: float = 15.0, **send: Any) -> dict[str, Any]:
        """Send a message and return the bot's first message after it in that channel."""
        sent = await self.sandbox.send(text, **send)
        return await self.sandbox.wait_for_bot_message(
            after=sent, channel_id=int(sent["channel_id"]), timeout=timeout
        )

    def server_dir(self, guild_id: int | None = None) -> Path:
        """A server's own folder under DATA_DIR (default: Sandbox's), with its datasets/."""
        folder = self.bot.settings.data_dir / "servers" / str(guild_id or self.sandbox.GUILD_ID)
        (folder / "datasets").mkdir(parents=True, exist_ok=True)
        return folder

    async def ask_text(self, text: str = "", **send: Any) -> str:
        return (await self.ask(text, **send))["content"]

    async def replies(self, sent: dict[str, Any], count: int, timeout: float = 30.0) -> list[dict]:
        """The first `count` bot messages after `sent` in its channel."""
        found: list[dict[str, Any]] = []
        after: dict[str, Any] = sent
        for _ in range(count):
            after = await self.sandbox.wait_for_bot_message(
                after=after, channel_id=int(sent["channel_id"]), timeout=timeout
            )
            found.append(after)
        return found


@pytest.fixture(scope="session")
def hear() -> Callable[[bytes], Awaitable[str]]:
    """hear(wav) -> what the offline recognizer (whisper tiny.en) makes of it, lower-cased."""
    engine = WhisperEngine()

    async def transcribe(wav: bytes) -> str:
        return (await asyncio.to_thread(engine.transcribe, wav, "en-US")).text.lower()

    return transcribe


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until `check()` is true; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def job_ended(bot: Any, job_id: str, timeout: float = 120.0) -> Any:
    """The job with this id once it has ended, read from the jobs table as `!job` reads it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (job := await bot.services.jobstore.get(job_id)) is None or not job.finished:
        assert loop.time() < deadline, f"job {job_id} did not end in time"
        await asyncio.sleep(0.05)
    return job


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        base = {
            "DATA_DIR": str(tmp_path / "data"),
            "INSTRUCTIONS_FILE": str(REPO / "instructions" / "bot_instruction.md"),
            "STT_ENGINES": "whisper",
            "TTS_ENGINES": "piper,espeak",
            "LOG_LEVEL": "WARNING",
            # Loading whisper and piper in every test's bot would cost minutes of CPU; the
            # warm-up has its own tests (tests/e2e/test_warm_up.py).
            "WARM_UP": "off",
        }
        return load_settings({**base, **env}, env_file=None)

    return make


def assert_no_late_interactions(sandbox: Sandbox) -> None:
    """Discord refuses a first response after 3 s (10062); the sandbox keeps those."""
    late = [(r.name, f"{r.refused[0][2]:.2f} s") for r in sandbox.interactions.late]
    assert not late, f"interactions answered too late: {late}"


@pytest.fixture
async def e2e(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[E2E]:
    async with sandboxed_bot(make_settings(), voice_out_dir=tmp_path / "voice") as (sb, bot):
        yield E2E(sb, bot)
        assert_no_late_interactions(sb)
