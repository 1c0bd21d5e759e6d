"""Typed settings, read once at start from the environment and `.env`.

This is the only place defaults live. A real environment variable wins over `.env`.
Every bad value is reported as one line naming the setting; `load_settings` raises
`SettingsError` with all of them at once. A `.env` that can't be read (not UTF-8 text, no
permission) is reported the same way, naming the file and line.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from bot import config_values as value
from bot.config_values import STT_ENGINE_NAMES, TTS_ENGINE_NAMES, hide_password, parse_language

_BOM = b"\xef\xbb\xbf"


class SettingsError(Exception):
    """One or more settings are invalid; `str()` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _setting(default: str, parse: Callable[[str], Any], doc: str) -> Any:
    return field(default=None, metadata={"default": default, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every setting of the bot. Field names are the environment variable names, lower-cased."""

    discord_token: str | None = _setting(
        "", value.optional, "Bot token. Empty: run against the local sandbox with a console."
    )
    command_prefix: str = _setting("!", value.prefix, "Prefix of text commands.")
    data_dir: Path = _setting("./data", value.path, "Folder for all runtime state.")
    database_url: str | None = _setting(
        "",
        value.database_url,
        "PostgreSQL for the database (postgresql://user:password@host/db); "
        "empty: SQLite in DATA_DIR.",
    )
    instructions_file: Path = _setting(
        "./instructions/bot_instruction.md",
        value.path,
        "Text that !instruction sends.",
    )
    language: str = _setting(
        "en-US",
        parse_language,
        "Default speech language of servers: a code like en-US or fr-FR, or auto (detect).",
    )
    log_level: str = _setting("INFO", value.log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    discord_api_base: str | None = _setting(
        "", value.url, "REST base URL (empty: Discord's own). For an API proxy or a stand-in."
    )
    discord_gateway_url: str | None = _setting(
        "", value.url, "Gateway URL (empty: Discord's own). For a gateway proxy or a stand-in."
    )
    sandbox_url: str | None = _setting(
        "",
        value.http_url,
        "A sandbox running as its own process (`python -m bot.sandbox`, e.g. "
        "http://127.0.0.1:8765): with no DISCORD_TOKEN, connect to it instead of starting one "
        "with a console (scripts/cluster.sh).",
    )
    bot_owner_ids: tuple[int, ...] = _setting(
        "", value.ids, "Comma-separated user ids that are admins besides the application owner."
    )
    admin_role: str = _setting("Bot Admin", value.text, "Members holding this role are admins.")
    sync_guild_id: int | None = _setting(
        "",
        value.optional_id,
        "Register the / commands in this one server only, instantly (for development; "
        "empty: everywhere).",
    )
    # Scaling out: shards
    shard_count: int | None = _setting(
        "",
        value.optional_count,
        "Shards of the whole bot (all processes together); empty: the count Discord "
        "recommends (the sandbox's: 1), all in this process.",
    )
    shard_ids: tuple[int, ...] | None = _setting(
        "",
        value.parse_shard_ids,
        "The shards this process runs, e.g. 0-3, 0,2 or 5 (needs SHARD_COUNT); empty: all.",
    )
    redis_url: str | None = _setting(
        "",
        value.redis_url,
        "Redis that the processes share to take turns logging in (redis://host:6379/0); "
        "empty: each process paces only its own logins.",
    )
    # Speech to text
    stt_engines: tuple[str, ...] = _setting(
        "google,whisper,sphinx",
        value.engines(STT_ENGINE_NAMES),
        "Speech-to-text value.engines, in order.",
    )
    google_speech_api_key: str | None = _setting(
        "", value.optional, "Your own key for the google speech engine (empty: library's test key)."
    )
    google_stt_endpoint: str | None = _setting(
        "", value.url, "Endpoint of the google speech engine (empty: the library's default)."
    )
    whisper_model: str | None = _setting(
        "",
        value.optional,
        "faster-whisper model for English: a name or folder (empty: bundled tiny.en if installed).",
    )
    whisper_multilingual_model: str | None = _setting(
        "",
        value.optional,
        "faster-whisper model for every other language and for auto: a name or folder "
        "(empty: bundled whisper base if installed).",
    )
    whisper_unload_seconds: int = _setting(
        "600",
        value.int_range(0, 7 * 86400),
        "Unload the multilingual whisper model after this many idle seconds (0: keep it).",
    )
    max_audio_mb: int = _setting(
        "25", value.int_range(1, 500), "Largest audio file to transcribe, MB."
    )
    max_audio_seconds: int = _setting(
        "900", value.int_range(1, 4 * 3600), "Longest audio to transcribe, seconds."
    )
    transcribe_budget_seconds: int = _setting(
        "1800",
        value.int_range(0, 7 * 86400),
        "Audio seconds a user may have transcribed per window (0: no limit; admins exempt).",
    )
    transcribe_window_seconds: int = _setting(
        "3600", value.int_range(1, 7 * 86400), "The window of TRANSCRIBE_BUDGET_SECONDS, seconds."
    )
    warm_up: bool = _setting(
        "on",
        value.on_off,
        "Load the speech and voice engines named first at start, in the background.",
    )
    # Text to speech and voice
    tts_engines: tuple[str, ...] = _setting(
        "gtts,piper,espeak",
        value.engines(TTS_ENGINE_NAMES),
        "Text-to-speech value.engines, in order.",
    )
    gtts_tld: str = _setting("com", value.text, "Top-level domain gTTS uses (accent).")
    gtts_endpoint: str | None = _setting(
        "", value.url, "Base URL for gTTS requests (empty: the library's default)."
    )
    piper_voice: str | None = _setting(
        "", value.optional, "Piper voice .onnx path (empty: bundled en_US-joe-medium if installed)."
    )
    max_spoken_chars: int = _setting(
        "300", value.int_range(20, 5000), "Longest text spoken per reply."
    )
    voice_idle_seconds: int = _setting(
        "300", value.int_range(5, 86400), "Leave voice after this many seconds of silence."
    )
    say_burst: int = _setting(
        "5", value.int_range(1, 1000), "!say commands a user may send in a row (admins exempt)."
    )
    say_refill_seconds: float = _setting(
        "2",
        value.float_range(0, 3600),
        "After that, one more !say every this many seconds (0: no limit).",
    )
    say_queue_max: int = _setting(
        "20", value.int_range(1, 1000), "Most items waiting or playing in a server's voice queue."
    )
    # Model
    default_dataset: str = _setting(
        "smalltalk",
        value.dataset_name,
        "Dataset a server uses until an admin runs !select_dataset.",
    )
    chat_min_confidence: float = _setting(
        "0.35",
        value.float_range(0, 1),
        "Below this confidence the bot says it is not sure "
        "(0: no better than chance among the labels, 1: certain).",
    )
    train_max_mb: int = _setting("5", value.int_range(1, 200), "Largest training file, MB.")
    train_max_rows: int = _setting(
        "200000", value.int_range(10, 5_000_000), "Most rows in a training file."
    )
    max_cached_servers: int = _setting(
        "500",
        value.int_range(1, 1_000_000),
        "Servers (and DM users) whose datasets and loaded models stay in memory; past that "
        "the least recently used idle one is dropped and reloads from disk on its next message.",
    )
    # Files
    max_upload_mb: int = _setting(
        "10", value.int_range(1, 500), "Largest file the bot uploads (Discord's basic limit is 10)."
    )
    # Workers
    task_broker_url: str | None = _setting(
        "",
        value.broker_url,
        "Redis for the task queue (redis://host:6379/0): transcription, training and !test "
        "files run on `python -m bot worker` processes; empty: in the bot's own processes.",
    )
    worker_concurrency: int = _setting(
        "1", value.int_range(1, 64), "Tasks one `python -m bot worker` runs at a time."
    )
    worker_idle_timeout_seconds: int = _setting(
        "600",
        value.int_range(1, 86400),
        "A task a worker took but did not finish in this many seconds (the worker died) goes "
        "to another worker; longer than the longest task.",
    )
    # Operations
    metrics_port: int | None = _setting(
        "",
        value.optional_port,
        "Port where this process serves /metrics (Prometheus), /healthz and /readyz; each "
        "process needs its own; empty: off.",
    )
    metrics_host: str = _setting(
        "127.0.0.1",
        value.host,
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
            problems.append(f"{name}: {reason} (got {value.shown(raw)})")
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
