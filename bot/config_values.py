"""How each setting's text is read and checked: one function per kind of value.

`config.Settings` names the parser of each setting; a parser returns the value or raises
ValueError with what is wrong (config reports it with the setting's name).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from bot.services.common import languages

SHOWN_VALUE_CHARS = 80

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# A bad value longer than this is cut in the report.
STT_ENGINE_NAMES = ("google", "whisper", "sphinx")
TTS_ENGINE_NAMES = ("gtts", "piper", "espeak")


def text(raw: str) -> str:
    return raw.strip()


def optional(raw: str) -> str | None:
    return raw.strip() or None


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if len(raw.strip()) > len(str(high)) + 10:  # also keeps clear of the int-string limit
            raise ValueError(f"must be between {low} and {high}")
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def path(raw: str) -> Path:
    value = raw.strip()
    if "\x00" in value:
        raise ValueError("must be a path without NUL characters")
    return Path(value)


def ids(raw: str) -> tuple[int, ...]:
    parts = [p.strip() for p in raw.replace(";", ",").split(",") if p.strip()]
    if not all(p.isascii() and p.isdigit() and len(p) <= 30 for p in parts):
        raise ValueError("must be a comma-separated list of numeric user ids")
    return tuple(int(p) for p in parts)


def engines(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
        if not names:
            raise ValueError("needs at least one engine")
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ValueError(
                f"unknown engine {shown(unknown[0])}; choose from {', '.join(allowed)}"
            )
        return names

    return parse


def on_off(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError("must be on or off")


def log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return value


def prefix(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 5 or " " in value:
        raise ValueError("must be 1 to 5 characters with no spaces")
    return value


def parse_language(raw: str) -> str:
    """A language tag in its standard form ("fr_ca" -> "fr-CA"), or `auto`."""
    return languages.parse_code(raw)


def dataset_name(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", value):
        raise ValueError("must be 1 to 40 letters, digits, - or _")
    return value


def optional_id(raw: str) -> int | None:
    value = raw.strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError("must be a numeric server id")
    return int(value)


def url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError("must start with http://, https://, ws:// or wss://")
    return value.rstrip("/")


_DATABASE_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://", "sqlite:///")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@/]*@")


def http_url(raw: str) -> str | None:
    value = url(raw)
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def database_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(_DATABASE_SCHEMES) or "\x00" in value:
        raise ValueError("must start with postgresql:// (or be empty for SQLite in DATA_DIR)")
    return value


_BROKER_SCHEMES = ("redis://", "rediss://", "unix://")


def broker_url(raw: str) -> str | None:
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


def redis_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(_REDIS_SCHEMES) or "\x00" in value:
        raise ValueError("must start with redis://, rediss:// or unix:// (or be empty)")
    return value


def optional_port(raw: str) -> int | None:
    if not raw.strip():
        return None
    return int_range(1, 65535)(raw)


def host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() or c in "/\x00" for c in value):
        raise ValueError("must be an address such as 127.0.0.1 or 0.0.0.0")
    return value


def optional_count(raw: str) -> int | None:
    if not raw.strip():
        return None
    return int_range(1, MAX_SHARDS)(raw)


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


def shown(raw: str) -> str:
    """A value as a problem report quotes it: whole, or its start and its length."""
    if len(raw) <= SHOWN_VALUE_CHARS:
        return repr(raw)
    return f"{raw[:SHOWN_VALUE_CHARS]!r}... ({len(raw)} characters)"
