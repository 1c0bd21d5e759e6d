"""`python -m bot doctor` as an operator runs it: with no token it checks against the sandbox
(started in its own process), prints one line per check and exits 0 when all pass; bad
settings or a broken install exit 1 with the fix on each failing line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.services.storage import Storage
from tests.processes import free_port

REPO = Path(__file__).resolve().parents[2]
CLEARED = (
    "DISCORD_TOKEN", "SANDBOX_URL", "DATABASE_URL", "REDIS_URL", "TASK_BROKER_URL",
    "WHISPER_MODEL", "WHISPER_MULTILINGUAL_MODEL", "PIPER_VOICE", "DISCORD_API_BASE",
)  # fmt: skip


def doctor(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run it in an empty folder (no .env), with this checkout's bot and `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(PYTHONPATH=str(REPO), DATA_DIR=str(tmp_path / "data"), **settings)
    return subprocess.run(
        [sys.executable, "-m", "bot", "doctor"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


async def test_a_sound_install_passes_every_check_against_the_sandbox(
    tmp_path: Path, redis_url: str
) -> None:
    async with Storage(tmp_path / "data" / "bot.db"):  # migrated, as after a first start
        pass
    done = doctor(tmp_path, REDIS_URL=redis_url)
    assert done.returncode == 0, done.stdout + done.stderr
    *checks, summary = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in checks] == [
        "✓ settings", "✓ DATA_DIR", "✓ disk space", "✓ database", "✓ redis (REDIS_URL)",
        "✓ discord token", "✓ message content intent", "✓ ffmpeg", "✓ espeak-ng",
        "✓ whisper English model", "✓ whisper multilingual model", "✓ piper voice",
    ]  # fmt: skip
    assert "accepted by the local sandbox (no token)" in done.stdout
    assert "(sha256 verified)" in done.stdout
    assert summary == f"All {len(checks)} checks passed."
    assert "Traceback" not in done.stderr


def test_bad_settings_exit_1_with_one_line_and_fix_each(tmp_path: Path) -> None:
    done = doctor(tmp_path, MAX_AUDIO_MB="lots", COMMAND_PREFIX="", STT_ENGINES="whisper,nope")
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    fix = "— set it in the environment or .env (the README's Settings table lists them)"
    assert lines == [
        f"✗ COMMAND_PREFIX: must be 1 to 5 characters with no spaces (got '') {fix}",
        f"✗ STT_ENGINES: unknown engine 'nope'; choose from google, whisper, sphinx "
        f"(got 'whisper,nope') {fix}",
        f"✗ MAX_AUDIO_MB: is not a number (got 'lots') {fix}",
        "3 of 3 checks failed: fix them before going live.",
    ]


def test_a_broken_install_exits_1_and_names_each_fix(tmp_path: Path) -> None:
    no_espeak = tmp_path / "bin"  # a PATH with python's folder but not espeak-ng
    no_espeak.mkdir()
    done = doctor(
        tmp_path,
        PATH=str(no_espeak),
        DISCORD_TOKEN="not-a-real-token",
        DISCORD_API_BASE=f"http://127.0.0.1:{free_port()}/api/v10",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        WHISPER_MODEL="/nonexistent",
        STT_ENGINES="whisper",
        TTS_ENGINES="espeak",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "not-a-real-token" not in out + done.stderr
    assert "✗ redis (REDIS_URL): no answer at redis://127.0.0.1:" in out
    assert "start Redis there, or correct REDIS_URL" in out
    assert "✗ discord token: could not reach the API at http://127.0.0.1:" in out
    assert "— check the network (and DISCORD_API_BASE or SANDBOX_URL when set)" in out
    assert (
        "✗ espeak-ng: not installed — apt-get install espeak-ng "
        "(or leave espeak out of TTS_ENGINES)"
    ) in out
    assert (
        "✗ whisper English model: whisper model folder '/nonexistent' does not exist — "
        "set WHISPER_MODEL to a faster-whisper model folder"
    ) in out
    assert "! database: " in out and "does not exist yet" in out
    assert out.strip().splitlines()[-1].endswith("checks failed: fix them before going live.")
