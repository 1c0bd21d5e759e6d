"""The path rules: which relative paths a user (or a blob) may name, checked as text.

`path_parts` is the text half of `FileService.resolve` (traversal, absolute and Windows forms,
URL-encoded and Unicode look-alike spellings, control characters, hidden names, the database)
without looking at the disk; blob paths go through it too. Every refusal is PATH_REFUSED.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import unquote

from bot.errors import InvalidInputError

PATH_REFUSED = (
    "That path is not allowed. Give a path inside the data folder, like datasets/smalltalk.csv."
)
DEFAULT_PROTECTED = ("bot.db", "bot.db-wal", "bot.db-shm", "bot.db-journal")
MAX_COMPONENT_CHARS = 255
MAX_PATH_CHARS = 1024
MAX_DECODE_ROUNDS = 4

# Characters that carry path meaning; URL-decoding or NFKC must not add any of them.
_PATH_SPECIALS = "/\\.:~"
# Look-alikes of / \ . refused outright; NFKC maps only some of them (not U+2215, U+2044).
_LOOKALIKES = frozenset(
    "\u2215\u2044\u2571\u29f8\u29f5\u29f9\u2216\u2572\ufe68\uff3c\uff0f\u2024\u2025\u2026"
    "\uff0e\ufe52\u3002\uff61\u0701\u0702\ua4f8\ua60e\u2e31\u2e33\u2cf9\u2cfa"
)
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)]
)


def refuse() -> InvalidInputError:
    return InvalidInputError(PATH_REFUSED)


def _specials(text: str) -> list[int]:
    return [text.count(c) for c in _PATH_SPECIALS]


def _check_characters(text: str) -> None:
    """Refuse control and format characters and look-alikes of / \\ . (raw or via NFKC)."""
    if any(unicodedata.category(c).startswith("C") or c in _LOOKALIKES for c in text):
        raise refuse()
    if _specials(unicodedata.normalize("NFKC", text)) != _specials(text):
        raise refuse()


def check_text(user_path: str) -> None:
    """Refuse the text itself, and any spelling of it that URL-decoding reveals."""
    if not isinstance(user_path, str) or not user_path.strip() or len(user_path) > MAX_PATH_CHARS:
        raise refuse()
    _check_characters(user_path)
    text = user_path
    for _ in range(MAX_DECODE_ROUNDS):
        decoded = unquote(text, errors="replace")
        if decoded == text:
            return
        if _specials(decoded) != _specials(user_path):
            raise refuse()
        _check_characters(decoded)
        text = decoded
    raise refuse()  # still changing after several rounds: deliberately obfuscated


def name_allowed(name: str, protected: frozenset[str]) -> bool:
    return not (
        name.startswith((".", "~"))
        or ":" in name
        or len(name) > MAX_COMPONENT_CHARS
        or name.casefold() in protected
        or name.split(".")[0].strip().upper() in _WINDOWS_DEVICES
    )


def path_parts(user_path: str, protected: Sequence[str] = DEFAULT_PROTECTED) -> list[str]:
    """The components of a relative path that the path rules allow (the text checks and the
    name rules of `FileService.resolve`, without looking at the disk); InvalidInputError
    (PATH_REFUSED) otherwise. Blob paths (blobcache.py) go through it too."""
    check_text(user_path)
    if user_path.startswith(("/", "\\")):
        raise refuse()
    parts = [p for p in re.split(r"[/\\]", user_path) if p not in ("", ".")]
    names = frozenset(name.casefold() for name in protected)
    if not parts or not all(name_allowed(p, names) for p in parts):
        raise refuse()
    return parts
