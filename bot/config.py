"""Typed settings, read once at start from the environment and `.env`.

This is the only place defaults live. A real environment variable wins over `.env`.
Every bad value is reported as one line naming the setting; `load_settings` raises
`SettingsError` with all of them at once. A `.env` that can't be read (not UTF-8 text, no
permission) is reported the same way, naming the file and line.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from bot.services.common import languages

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# A bad value longer than this is cut in the report.
SHOWN_VALUE_CHARS = 80
_BOM = b"\xef\xbb\xbf"
STT_ENGINE_NAMES = ("google", "whisper", "sphinx")
TTS_ENGINE_NAMES = ("gtts", "piper", "espeak")


class SettingsError(Exception):
    """One or more settings are invalid; `str()` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _text(raw: str) -> str:
    return raw.strip()


def _optional(raw: str) -> str | None:
    return raw.strip() or None


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if len(raw.strip()) > len(str(high)) + 10:  # also keeps clear of the int-string limit
            raise ValueError(f"must be between {low} and {high}")
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _path(raw: str) -> Path:
    value = raw.strip()
    if "\x00" in value:
        raise ValueError("must be a path without NUL characters")
    return Path(value)


def _ids(raw: str) -> tuple[int, ...]:
    parts = [p.strip() for p in raw.replace(";", ",").split(",") if p.strip()]
    if not all(p.isascii() and p.isdigit() and len(p) <= 30 for p in parts):
        raise ValueError("must be a comma-separated list of numeric user ids")
    return tuple(int(p) for p in parts)


def _engines(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
        if not names:
            raise ValueError("needs at least one engine")
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ValueError(
                f"unknown engine {_shown(unknown[0])}; choose from {', '.join(allowed)}"
            )
        return names

    return parse


def _on_off(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError("must be on or off")


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return value


def _prefix(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 5 or " " in value:
        raise ValueError("must be 1 to 5 characters with no spaces")
    return value


def parse_language(raw: str) -> str:
    """A language tag in its standard form ("fr_ca" -> "fr-CA"), or `auto`."""
    return languages.parse_code(raw)


def _dataset_name(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", value):
        raise ValueError("must be 1 to 40 letters, digits, - or _")
    return value


def _optional_id(raw: str) -> int | None:
    value = raw.strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError("must be a numeric server id")
    return int(value)


def _url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError("must start with http://, https://, ws:// or wss://")
    return value.rstrip("/")


_DATABASE_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://", "sqlite:///")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@/]*@")


def _http_url(raw: str) -> str | None:
    value = _url(raw)
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _database_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(_DATABASE_SCHEMES) or "\x00" in value:
        raise ValueError("must start with postgresql:// (or be empty for SQLite in DATA_DIR)")
    return value


_BROKER_SCHEMES = ("redis://", "rediss://", "unix://")


def _broker_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(_BROKER_SCHEMES):
        raise ValueError("must start with redis:// or rediss:// (or be empty: no workers)")
    return value


def hide_password(url: str) -> str:
    """A database (or Redis) URL with its password replaced by ***."""
    return _PASSWORD_IN_URL.sub(r"\1***@", url)


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# Discord allows at most 2,500 servers per shard; no bot needs more shards than this.
MAX_SHARDS = 100_000


def _redis_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(_REDIS_SCHEMES) or "\x00" in value:
        raise ValueError("must start with redis://, rediss:// or unix:// (or be empty)")
    return value


def _optional_port(raw: str) -> int | None:
    if not raw.strip():
        return None
    return _int_range(1, 65535)(raw)


def _host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() or c in "/\x00" for c in value):
        raise ValueError("must be an address such as 127.0.0.1 or 0.0.0.0")
    return value


def _optional_count(raw: str) -> int | None:
    if not raw.strip():
        return None
    return _int_range(1, MAX_SHARDS)(raw)


def parse_shard_ids(raw: str) -> tuple[int, ...] | None:
    """`0-3`, `0,2`, `5` or a mix (`0-1,4`) as sorted shard ids; empty: None (every shard)."""
    value = raw.strip()
    if not value:
        return None
    ids: set[int] = set()
    for part in (p.strip() for p in value.split(",")):
        low, dash, high = part.partition("-")
        bounds = [low.strip(), high.strip()] if dash else [low.strip()]
        if not all(b.isascii() and b.isdigit() and len(b) <= 6 for b in bounds):
            raise ValueError("must be shard ids like 0-3, 0,2 or 5")
        first, last = int(bounds[0]), int(bounds[-1])
        if first > last:
            raise ValueError(f"the range {part} runs backwards; write {last}-{first}")
        named = set(range(first, last + 1))
        if ids & named:
            raise ValueError(f"names shard {min(ids & named)} twice")
        ids |= named
    return tuple(sorted(ids))


def _setting(default: str, parse: Callable[[str], Any], doc: str) -> Any:
    return field(default=None, metadata={"default": default, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every setting of the bot. Field names are the environment variable names, lower-cased."""

    discord_token: str | None = _setting(
        "", _optional, "Bot token. Empty: run against the local sandbox with a console."
    )
    command_prefix: str = _setting("!", _prefix, "Prefix of text commands.")
    data_dir: Path = _setting("./data", _path, "Folder for all runtime state.")
    database_url: str | None = _setting(
        "",
        _database_url,
        "PostgreSQL for the database (postgresql://user:password@host/db); "
        "empty: SQLite in DATA_DIR.",
    )
    instructions_file: Path = _setting(
        "./instructions/bot_instruction.md",
        _path,
        "Text that !instruction sends.",
    )
    language: str = _setting(
        "en-US",
        parse_language,
        "Default speech language of servers: a code like en-US or fr-FR, or auto (detect).",
    )
    log_level: str = _setting("INFO", _log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    discord_api_base: str | None = _setting(
        "", _url, "REST base URL (empty: Discord's own). For an API proxy or a stand-in."
    )
    discord_gateway_url: str | None = _setting(
        "", _url, "Gateway URL (empty: Discord's own). For a gateway proxy or a stand-in."
    )
    sandbox_url: str | None = _setting(
        "",
        _http_url,
        "A sandbox running as its own process (`python -m bot.sandbox`, e.g. "
        "http://127.0.0.1:8765): with no DISCORD_TOKEN, connect to it instead of starting one "
        "with a console (scripts/cluster.sh).",
    )
    bot_owner_ids: tuple[int, ...] = _setting(
        "", _ids, "Comma-separated user ids that are admins besides the application owner."
    )
    admin_role: str = _setting("Bot Admin", _text, "Members holding this role are admins.")
    sync_guild_id: int | None = _setting(
        "",
        _optional_id,
        "Register the / commands in this one server only, instantly (for development; "
        "empty: everywhere).",
    )
    # Scaling out: shards
    shard_count: int | None = _setting(
        "",
        _optional_count,
        "Shards of the whole bot (all processes together); empty: the count Discord "
        "recommends (the sandbox's: 1), all in this process.",
    )
    shard_ids: tuple[int, ...] | None = _setting(
        "",
        parse_shard_ids,
        "The shards this process runs, e.g. 0-3, 0,2 or 5 (needs SHARD_COUNT); empty: all.",
    )
    redis_url: str | None = _setting(
        "",
        _redis_url,
        "Redis that the processes share to take turns logging in (redis://host:6379/0); "
        "empty: each process paces only its own logins.",
    )
    # Speech to text
    stt_engines: tuple[str, ...] = _setting(
        "google,whisper,sphinx", _engines(STT_ENGINE_NAMES), "Speech-to-text engines, in order."
    )
    google_speech_api_key: str | None = _setting(
        "", _optional, "Your own key for the google speech engine (empty: library's test key)."
    )
    google_stt_endpoint: str | None = _setting(
        "", _url, "Endpoint of the google speech engine (empty: the library's default)."
    )
    whisper_model: str | None = _setting(
        "",
        _optional,
        "faster-whisper model for English: a name or folder (empty: bundled tiny.en if installed).",
    )
    whisper_multilingual_model: str | None = _setting(
        "",
        _optional,
        "faster-whisper model for every other language and for auto: a name or folder "
        "(empty: bundled whisper base if installed).",
    )
    whisper_unload_seconds: int = _setting(
        "600",
        _int_range(0, 7 * 86400),
        "Unload the multilingual whisper model after this many idle seconds (0: keep it).",
    )
    max_audio_mb: int = _setting("25", _int_range(1, 500), "Largest audio file to transcribe, MB.")
    max_audio_seconds: int = _setting(
        "900", _int_range(1, 4 * 3600), "Longest audio to transcribe, seconds."
    )
    transcribe_budget_seconds: int = _setting(
        "1800",
        _int_range(0, 7 * 86400),
        "Audio seconds a user may have transcribed per window (0: no limit; admins exempt).",
    )
    transcribe_window_seconds: int = _setting(
        "3600", _int_range(1, 7 * 86400), "The window of TRANSCRIBE_BUDGET_SECONDS, seconds."
    )
    warm_up: bool = _setting(
        "on",
        _on_off,
        "Load the speech and voice engines named first at start, in the background.",
    )
    # Text to speech and voice
    tts_engines: tuple[str, ...] = _setting(
        "gtts,piper,espeak", _engines(TTS_ENGINE_NAMES), "Text-to-speech engines, in order."
    )
    gtts_tld: str = _setting("com", _text, "Top-level domain gTTS uses (accent).")
    gtts_endpoint: str | None = _setting(
        "", _url, "Base URL for gTTS requests (empty: the library's default)."
    )
    piper_voice: str | None = _setting(
        "", _optional, "Piper voice .onnx path (empty: bundled en_US-joe-medium if installed)."
    )
    max_spoken_chars: int = _setting("300", _int_range(20, 5000), "Longest text spoken per reply.")
    voice_idle_seconds: int = _setting(
        "300", _int_range(5, 86400), "Leave voice after this many seconds of silence."
    )
    say_burst: int = _setting(
        "5", _int_range(1, 1000), "!say commands a user may send in a row (admins exempt)."
    )
    say_refill_seconds: float = _setting(
        "2",
        _float_range(0, 3600),
        "After that, one more !say every this many seconds (0: no limit).",
    )
    say_queue_max: int = _setting(
        "20", _int_range(1, 1000), "Most items waiting or playing in a server's voice queue."
    )
    # Model
    default_dataset: str = _setting(
        "smalltalk", _dataset_name, "Dataset a server uses until an admin runs !select_dataset."
    )
    chat_min_confidence: float = _setting(
        "0.35",
        _float_range(0, 1),
        "Below this confidence the bot says it is not sure "
        "(0: no better than chance among the labels, 1: certain).",
    )
    train_max_mb: int = _setting("5", _int_range(1, 200), "Largest training file, MB.")
    train_max_rows: int = _setting(
        "200000", _int_range(10, 5_000_000), "Most rows in a training file."
    )
    max_cached_servers: int = _setting(
        "500",
        _int_range(1, 1_000_000),
        "Servers (and DM users) whose datasets and loaded models stay in memory; past that "
        "the least recently used idle one is dropped and reloads from disk on its next message.",
    )
    # Files
    max_upload_mb: int = _setting(
        "10", _int_range(1, 500), "Largest file the bot uploads (Discord's basic limit is 10)."
    )
    # Workers
    task_broker_url: str | None = _setting(
        "",
        _broker_url,
        "Redis for the task queue (redis://host:6379/0): transcription, training and !test "
        "files run on `python -m bot worker` processes; empty: in the bot's own processes.",
    )
    worker_concurrency: int = _setting(
        "1", _int_range(1, 64), "Tasks one `python -m bot worker` runs at a time."
    )
    worker_idle_timeout_seconds: int = _setting(
        "600",
        _int_range(1, 86400),
        "A task a worker took but did not finish in this many seconds (the worker died) goes "
        "to another worker; longer than the longest task.",
    )
    # Operations
    metrics_port: int | None = _setting(
        "",
        _optional_port,
        "Port where this process serves /metrics (Prometheus), /healthz and /readyz; each "
        "process needs its own; empty: off.",
    )
    metrics_host: str = _setting(
        "127.0.0.1",
        _host,
        "Address METRICS_PORT listens on (0.0.0.0: every interface, for a scraper elsewhere).",
    )

    @property
    def sandbox(self) -> bool:
        """True when no token is set: the bot runs against the local Discord stand-in."""
        return self.discord_token is None

    @property
    def console(self) -> bool:
        """True when the bot starts its own sandbox with a console in this terminal."""
        return self.sandbox and self.sandbox_url is None

    def __repr__(self) -> str:  # never show the token
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if shown["discord_token"]:
            shown["discord_token"] = "***"
        for url in ("database_url", "redis_url", "task_broker_url"):
            if shown[url]:
                shown[url] = hide_password(shown[url])
        return f"Settings({shown})"


def setting_docs() -> list[tuple[str, str, str]]:
    """(NAME, default, description) for every setting, for docs and `.env.example`."""
    return [(f.name.upper(), f.metadata["default"], f.metadata["doc"]) for f in fields(Settings)]


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = ".env"
) -> Settings:
    """Build settings from `.env` overlaid by the real environment; raise SettingsError."""
    merged: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        merged.update(_read_env_file(Path(env_file)))
    merged.update(os.environ if environ is None else environ)

    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields(Settings):
        name = f.name.upper()
        raw = merged.get(name, f.metadata["default"])
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            reason = str(exc)
            if "invalid literal" in reason or "could not convert" in reason:
                reason = "is not a number"
            problems.append(f"{name}: {reason} (got {_shown(raw)})")
    if not problems:
        problems = _shard_problems(values)
    if values.get("sandbox_url") and values.get("discord_token"):
        problems.append("SANDBOX_URL: only without DISCORD_TOKEN (it stands in for Discord)")
    if problems:
        raise SettingsError(problems)
    return Settings(**values)


def _shard_problems(values: Mapping[str, Any]) -> list[str]:
    """SHARD_IDS only makes sense with SHARD_COUNT, and every id must be below it."""
    count, ids = values["shard_count"], values["shard_ids"]
    if ids is None:
        return []
    if count is None:
        return ["SHARD_IDS: needs SHARD_COUNT, the number of shards of all processes together"]
    outside = [i for i in ids if i >= count]
    if outside:
        return [
            f"SHARD_IDS: shard {outside[0]} does not exist with SHARD_COUNT={count} "
            f"(ids run from 0 to {count - 1})"
        ]
    return []


def _shown(raw: str) -> str:
    if len(raw) <= SHOWN_VALUE_CHARS:
        return repr(raw)
    return f"{raw[:SHOWN_VALUE_CHARS]!r}... ({len(raw)} characters)"


def _read_env_file(path: Path) -> dict[str, str]:
    """The variables a `.env` file sets; SettingsError naming the file (and line) when it
    can't be read or isn't UTF-8 text."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError([f"{path}: can't be read ({exc.strerror or exc})"]) from None
    data = data.removeprefix(_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SettingsError(
            [
                f"{path}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                "save the file as UTF-8"
            ]
        ) from None
    values = dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}
