"""JSON from users, read with limits: nesting depth and number length.

Python's `json` recurses once per nested list or object, so `[` repeated a thousand times
raises `RecursionError`; and an integer of more than 4,300 digits raises `ValueError`
(Python's int-string limit). Neither is a `json.JSONDecodeError`, so callers that report
bad JSON to the user would miss them. Here a quick scan before parsing refuses both, and
whatever the parser still raises is turned into `json.JSONDecodeError` with a position, so
the caller's one `except json.JSONDecodeError` covers every bad input.

    value = safejson.loads(text)              # like json.loads
    safejson.check(text)                      # once, then:
    item, end = safejson.raw_decode(text, i)  # like JSONDecoder().raw_decode
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

log = logging.getLogger(__name__)

# User data is a list of objects (depth 2); a little room for anything sensible.
MAX_DEPTH = 32
# Far below Python's int-string limit (4,300 digits) and far above any real number.
MAX_NUMBER_DIGITS = 1000

# A string (an unterminated one runs to the end, so no text is scanned twice), a bracket, or
# a run of too many digits (the look-behind keeps the scan of a digit run linear).
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"?'
_LONG_NUMBER = rf"(?<!\d)\d{{{MAX_NUMBER_DIGITS + 1},}}"
_TOKENS = re.compile(rf"{_STRING}|[\[{{]|[\]}}]|{_LONG_NUMBER}", re.DOTALL)
_STRINGS = re.compile(_STRING, re.DOTALL)
_LONG_NUMBERS = re.compile(_LONG_NUMBER)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIRS = re.compile(r"[\[{][\]}]")
_DECODER = json.JSONDecoder()


def check(text: str) -> None:
    """Raise json.JSONDecodeError at the first place nested deeper than MAX_DEPTH or holding a
    number longer than MAX_NUMBER_DIGITS digits (strings are skipped; nothing else is checked).

    Linear in the text; a few regex passes settle ordinary data, and only text that may break
    a limit is walked token by token to find the place.
    """
    bare = _STRINGS.sub("", text)
    if _LONG_NUMBERS.search(bare) is None and _shallow(bare):
        return
    depth = 0
    for token in _TOKENS.finditer(text):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise json.JSONDecodeError(
                    f"nested deeper than {MAX_DEPTH} levels", text, token.start()
                )
        elif first in "]}":
            depth = max(0, depth - 1)
        elif first != '"':
            raise json.JSONDecodeError(
                f"a number is longer than {MAX_NUMBER_DIGITS} digits", text, token.start()
            )


def _shallow(bare: str) -> bool:
    """True when the brackets of `bare` (text without strings) pair up within MAX_DEPTH levels.

    Each pass removes the innermost pairs; False (let the exact walk decide) when brackets
    are left after MAX_DEPTH passes or do not pair up.
    """
    brackets = _NOT_BRACKETS.sub("", bare)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return True
        reduced = _INNERMOST_PAIRS.sub("", brackets)
        if reduced == brackets:
            return False
        brackets = reduced
    return not brackets


def loads(text: str) -> Any:
    """`json.loads` with the limits; every failure is a json.JSONDecodeError."""
    check(text)
    value, end = raw_decode(text, _skip_space(text, 0))
    end = _skip_space(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def raw_decode(text: str, index: int = 0) -> tuple[Any, int]:
    """One JSON value starting at `index`: (value, index after it). Call `check` first."""
    try:
        return _DECODER.raw_decode(text, index)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError) as exc:  # what `check` should already have refused
        log.warning("JSON parser limit hit past the pre-scan: %s", type(exc).__name__)
        raise json.JSONDecodeError("too deeply nested or too large", text, index) from None


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index
