"""`python -m bot doctor`: checks an install before it goes live.

Each check is a small function that returns a `CheckResult` (its name, ok / warn / fail, what
it found and, when it did not pass, how to fix it). `check_settings` comes first; the others
need valid settings and run in order through `run_checks`, which yields each result as soon
as it is known (loading a whisper model takes a few seconds). Nothing here prints: the CLI in
`bot/__main__.py` prints `result.line`.

Network checks (Discord's REST API, the database, Redis) give up after `NETWORK_TIMEOUT`
seconds. The Discord checks run against whatever `DiscordApi` the caller gives: Discord
itself with the bot token, or the sandbox when there is no token. The token is never shown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.config import Settings, SettingsError, hide_password, load_settings
from bot.services.ops.doctor_engines import (
    check_espeak,
    check_ffmpeg,
    check_piper,
    check_whisper_english,
    check_whisper_multilingual,
)
from bot.services.ops.report import CheckResult, Status, failed, passed, warned
from bot.services.storage import database_url, shown_url
from bot.services.storage.migrate import ForeignSchemaError, current_version, script_directory

log = logging.getLogger(__name__)

NETWORK_TIMEOUT = 5.0  # seconds, per network check
GB = 1024**3
LOW_DISK_BYTES = 1 * GB
# ApplicationFlags.gateway_message_content (a verified bot, approved) and
# gateway_message_content_limited (switched on in the Developer Portal, under 100 servers).
MESSAGE_CONTENT = 1 << 18
MESSAGE_CONTENT_LIMITED = 1 << 19

SETTINGS_FIX = "set it in the environment or .env (the README's Settings table lists them)"


@dataclass(frozen=True)
class DiscordApi:
    """Where the Discord checks go: a REST base (…/api/v10), the bot token and a name for it
    in the results ("Discord", "the sandbox at …")."""

    base: str
    token: str = field(repr=False)
    where: str = "Discord"


# ----- settings ------------------------------------------------------------------------------


def check_settings(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = ".env"
) -> tuple[Settings | None, list[CheckResult]]:
    """The settings (None when invalid) and one result per bad setting, or one that passed."""
    try:
        settings = load_settings(environ, env_file)
    except SettingsError as exc:
        return None, [_bad_setting(problem) for problem in exc.problems]
    return settings, [passed("settings", "valid")]


def _bad_setting(problem: str) -> CheckResult:
    """`MAX_AUDIO_MB: is not a number (got 'lots')` as a failed check named MAX_AUDIO_MB."""
    name, _, reason = problem.partition(": ")
    return failed(name, reason or problem, SETTINGS_FIX)


# ----- DATA_DIR ------------------------------------------------------------------------------


def check_data_dir(data_dir: Path) -> CheckResult:
    """DATA_DIR exists (it is created, as the bot does at start) and a file can be written."""
    name = "DATA_DIR"
    fix = "let the user that runs the bot write there (chown or chmod), or set DATA_DIR"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return failed(name, f"{data_dir} is not writable ({exc.strerror or exc})", fix)
    return passed(name, f"{data_dir} is writable")


def check_disk_space(data_dir: Path, warn_below: int = LOW_DISK_BYTES) -> CheckResult:
    name = "disk space"
    free = shutil.disk_usage(_existing(data_dir)).free
    shown = f"{free / GB:.1f} GB free for {data_dir}"
    if free < warn_below:
        return warned(name, f"only {shown}", "free some space or move DATA_DIR to a larger disk")
    return passed(name, shown)


def _existing(path: Path) -> Path:
    """`path`, or its nearest folder that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# ----- the database --------------------------------------------------------------------------


async def check_database(
    location: str | os.PathLike[str], timeout: float = NETWORK_TIMEOUT
) -> CheckResult:
    """The database answers and is at the latest schema (the Alembic head)."""
    name = "database"
    url = database_url(location)
    shown = shown_url(url)
    sqlite_file = Path(str(url.database)) if url.get_backend_name() == "sqlite" else None
    if sqlite_file is not None and not await asyncio.to_thread(sqlite_file.is_file):
        return warned(
            name,
            f"{shown} does not exist yet",
            "the bot creates and migrates it at start (or run `python -m bot db upgrade`)",
        )
    try:
        version = await asyncio.wait_for(_schema_version(url, timeout), timeout + 1)
    except ForeignSchemaError as exc:
        return failed(name, str(exc), "set DATABASE_URL to a database of the bot's own")
    except (OSError, SQLAlchemyError, TimeoutError) as exc:
        return failed(
            name,
            f"can't reach {shown}: {_reason(exc)}",
            "check DATABASE_URL, and that the server runs and lets this user in",
        )
    return _schema_result(shown, version, _head_version())


async def _schema_version(url: Any, timeout: float) -> int | None:
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": timeout})
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(current_version)
    finally:
        await engine.dispose()


def _head_version() -> int:
    return int(script_directory().get_current_head() or 0)


def _schema_result(shown: str, version: int | None, head: int) -> CheckResult:
    name = "database"
    if version == head:
        return passed(name, f"{shown} is at schema version {version} (the latest)")
    if version is not None and version > head:
        return failed(
            name,
            f"{shown} is at schema version {version}, newer than this bot knows ({head})",
            "update the bot",
        )
    at = "has no schema yet" if version is None else f"is at schema version {version}"
    return failed(
        name,
        f"{shown} {at}; the latest is {head}",
        "run `python -m bot db upgrade` (the bot also migrates at start)",
    )


def _reason(exc: BaseException) -> str:
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    return str(reason) or type(reason).__name__


# ----- Redis ---------------------------------------------------------------------------------


def redis_targets(settings: Settings) -> list[tuple[str, str]]:
    """(the settings naming it, URL) of each Redis configured; one entry per distinct URL."""
    named: dict[str, list[str]] = {}
    for setting in ("redis_url", "task_broker_url"):
        url = getattr(settings, setting)
        if url:
            named.setdefault(url, []).append(setting.upper())
    return [(", ".join(names), url) for url, names in named.items()]


async def check_redis(setting: str, url: str, timeout: float = NETWORK_TIMEOUT) -> CheckResult:
    name = f"redis ({setting})"
    shown = hide_password(url)
    client = redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await asyncio.wait_for(client.ping(), timeout + 1)
    except (RedisError, OSError, TimeoutError) as exc:
        return failed(
            name,
            f"no answer at {shown} ({exc or type(exc).__name__})",
            f"start Redis there, or correct {setting} (empty: not used)",
        )
    finally:
        await client.aclose()
    return passed(name, f"answers at {shown}")


# ----- Discord -------------------------------------------------------------------------------

TOKEN = "discord token"
INTENT = "message content intent"


async def check_discord(api: DiscordApi, timeout: float = NETWORK_TIMEOUT) -> list[CheckResult]:
    """The token accepted (`GET /users/@me`), then the Message Content intent switched on
    (`GET /applications/@me`, its flags)."""
    headers = {"Authorization": f"Bot {api.token}"}
    limits = aiohttp.ClientTimeout(total=timeout)
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=limits) as http:
            status, me = await _get(http, api.base + "/users/@me")
            token = _token_result(api, status, me)
            if token.status is not Status.OK:
                return [token, warned(INTENT, "not checked", "fix the token first")]
            status, application = await _get(http, api.base + "/applications/@me")
            return [token, _intent_result(api, status, application)]
    except (aiohttp.ClientError, TimeoutError) as exc:
        unreachable = failed(
            TOKEN,
            f"could not reach {api.where} ({exc or type(exc).__name__})",
            "check the network (and DISCORD_API_BASE or SANDBOX_URL when set)",
        )
        return [unreachable, warned(INTENT, "not checked", "reach Discord first")]


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = None
        return response.status, body if isinstance(body, dict) else {}


def _token_result(api: DiscordApi, status: int, me: Mapping[str, Any]) -> CheckResult:
    if status == 401:
        return failed(
            TOKEN,
            "the token was refused",
            "reset it in the Developer Portal (Bot → Reset Token) and set DISCORD_TOKEN",
        )
    if status != 200:
        return failed(TOKEN, f"{api.where} answered HTTP {status}", "try again in a minute")
    return passed(TOKEN, f"accepted by {api.where}: the bot is {me.get('username')}")


def _intent_result(api: DiscordApi, status: int, application: Mapping[str, Any]) -> CheckResult:
    portal = (
        "switch on Message Content Intent in the Developer Portal "
        "(Bot → Privileged Gateway Intents)"
    )
    if status != 200:
        return failed(INTENT, f"{api.where} answered HTTP {status} for the application", portal)
    flags = application.get("flags")
    flags = flags if isinstance(flags, int) else 0
    if flags & MESSAGE_CONTENT:
        return passed(INTENT, "enabled (approved for a verified bot)")
    if flags & MESSAGE_CONTENT_LIMITED:
        return passed(INTENT, "enabled")
    return failed(INTENT, "off: the bot can't read commands or chat", portal)


# ----- programs ------------------------------------------------------------------------------


# ----- all of them ---------------------------------------------------------------------------

Step = tuple[str, Callable[[], Awaitable[CheckResult | list[CheckResult]]]]


async def run_checks(
    settings: Settings, api: DiscordApi, database: str | os.PathLike[str]
) -> AsyncIterator[CheckResult]:
    """Every check the settings call for, in order, each result as soon as it is known.
    `database` is where the bot keeps its database (DATABASE_URL, else the SQLite file)."""
    for name, step in steps(settings, api, database):
        for result in await _guarded(name, step):
            yield result


def steps(settings: Settings, api: DiscordApi, database: str | os.PathLike[str]) -> list[Step]:
    data_dir = settings.data_dir
    found: list[Step] = [
        ("DATA_DIR", lambda: asyncio.to_thread(check_data_dir, data_dir)),
        ("disk space", lambda: asyncio.to_thread(check_disk_space, data_dir)),
        ("database", lambda: check_database(database)),
    ]
    for setting, url in redis_targets(settings):
        found.append((f"redis ({setting})", _bind(check_redis, setting, url)))
    found.append((TOKEN, lambda: check_discord(api)))
    found.append(("ffmpeg", lambda: asyncio.to_thread(check_ffmpeg)))
    found += _engine_steps(settings)
    return found


def _engine_steps(settings: Settings) -> list[Step]:
    found: list[Step] = []
    if "espeak" in settings.tts_engines:
        found.append(("espeak-ng", lambda: asyncio.to_thread(check_espeak)))
    if "whisper" in settings.stt_engines:
        cache_dir = settings.data_dir / "cache" / "models"  # where the bot joins it
        found.append(
            (
                "whisper English model",
                lambda: asyncio.to_thread(check_whisper_english, settings.whisper_model),
            )
        )
        found.append(
            (
                "whisper multilingual model",
                lambda: asyncio.to_thread(
                    check_whisper_multilingual,
                    settings.whisper_multilingual_model,
                    cache_dir,
                    settings.language,
                ),
            )
        )
    if "piper" in settings.tts_engines:
        found.append(("piper voice", lambda: asyncio.to_thread(check_piper, settings.piper_voice)))
    return found


def _bind(
    check: Callable[[str, str], Awaitable[CheckResult]], setting: str, url: str
) -> Callable[[], Awaitable[CheckResult]]:
    return lambda: check(setting, url)


async def _guarded(
    name: str, step: Callable[[], Awaitable[CheckResult | list[CheckResult]]]
) -> list[CheckResult]:
    """The step's results; a check that breaks is one failed result, not a traceback."""
    try:
        result = await step()
    except Exception as exc:
        log.exception("the %s check broke", name)
        return [failed(name, f"the check itself failed ({exc!r})", "see the log above")]
    return result if isinstance(result, list) else [result]


def exit_code(results: list[CheckResult]) -> int:
    """0 when nothing failed (warnings allowed), else 1."""
    return 1 if any(r.status is Status.FAIL for r in results) else 0


def summary(results: list[CheckResult]) -> str:
    failures = sum(r.status is Status.FAIL for r in results)
    warnings = sum(r.status is Status.WARN for r in results)
    if failures:
        return f"{failures} of {len(results)} checks failed: fix them before going live."
    if warnings:
        return f"All {len(results)} checks passed, {warnings} with a warning."
    return f"All {len(results)} checks passed."
