"""Languages: the codes a server may set, their names, and which engines serve them.

A server's speech language is a BCP 47 tag ("fr-FR", "de", "zh-TW") or `auto` (each
recording is recognized in the language it is spoken in). Tags are checked and written the
standard way by `langcodes`; names come from its CLDR data, in English ("French") for the
transcript's footer and in the language itself ("Français") for suggestions.

`verdict` decides whether a server may choose a language: only when an installed engine can
both hear and speak it, and it says when a direction needs an online engine. Chinese text is
put in the script the tag asks for (`in_script`, OpenCC), whatever the engine emitted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import langcodes

AUTO = "auto"

# The languages suggested first as people type (`/language`); any other valid code can be set.
COMMON_LANGUAGES: tuple[str, ...] = (
    "en-US", "en-GB", "en-AU", "en-IN", "fr-FR", "fr-CA", "de-DE", "es-ES", "es-MX", "it-IT",
    "pt-BR", "pt-PT", "nl-NL", "sv-SE", "da-DK", "nb-NO", "fi-FI", "pl-PL", "cs-CZ", "ru-RU",
    "uk-UA", "tr-TR", "el-GR", "ar-SA", "he-IL", "hi-IN", "ja-JP", "ko-KR", "zh-CN", "zh-TW",
    "id-ID", "vi-VN", "th-TH",
)  # fmt: skip
# whisper's own codes where they differ from the tag's language subtag.
_WHISPER_CODES = {"jv": "jw", "nb": "no", "nn": "nn", "fil": "tl"}
_TRADITIONAL_REGIONS = frozenset({"TW", "HK", "MO"})
# Valid subtags that name no language: undetermined, none, several, missing.
_NOT_A_LANGUAGE = frozenset({"", "und", "zxx", "mul", "mis"})


def parse_code(raw: str) -> str:
    """`auto`, or a valid language tag in its standard form ("fr_fr" -> "fr-FR").
    Raises ValueError for anything else ("zz", "english", "")."""
    value = raw.strip()
    if value.lower() == AUTO:
        return AUTO
    letters = value.replace("-", "").replace("_", "")
    if not value or len(value) > 35 or not (letters.isascii() and letters.isalnum()):
        raise ValueError("must be a language code like en-US, or auto")
    try:
        tag = langcodes.standardize_tag(value)
    except (ValueError, LookupError):
        raise ValueError("must be a language code like en-US, or auto") from None
    language = langcodes.Language.get(tag)
    code = language.language or ""
    # Checked against the tag registry only: the names' data costs 18 MB when first read.
    if not language.is_valid() or code in _NOT_A_LANGUAGE or "qaa" <= code <= "qtz":
        raise ValueError("must be a language code like en-US, or auto")
    return tag


@functools.cache
def _parsed(tag: str) -> langcodes.Language:
    """The tag parsed; anything unparsable (a code stored by an older version, a fuzzer's
    text) is treated as an unknown language named by its first part, never an error."""
    try:
        return langcodes.Language.get(tag)
    except (ValueError, LookupError):
        first = tag.strip().replace("_", "-").split("-", 1)[0].lower()
        return langcodes.Language.make(language=first or "und")


def _unnamed(language: langcodes.Language) -> bool:
    return language.language_name().startswith("Unknown language")


def standard_form(code: str) -> str:
    """A code in its standard form ("iw" -> "he"), or unchanged when it isn't one."""
    try:
        return langcodes.standardize_tag(code)
    except (ValueError, LookupError):
        return code


def primary(tag: str) -> str:
    """The language subtag: "fr" for "fr-FR"; `auto` stays `auto`."""
    return tag if tag == AUTO else _parsed(tag).language or tag


def is_english(tag: str) -> bool:
    return primary(tag) == "en"


def whisper_code(tag: str) -> str | None:
    """The language code whisper takes for a tag; None for `auto` (whisper detects)."""
    if tag == AUTO:
        return None
    code = primary(tag)
    return _WHISPER_CODES.get(code, code)


def english_name(tag: str) -> str:
    """ "French" for fr-FR (the language, not the region): for the transcript's footer."""
    if tag == AUTO:
        return "automatic"
    language = _parsed(tag)
    return tag if _unnamed(language) else language.language_name()


@functools.cache
def own_name(tag: str) -> str:
    """The language's name in itself: "Français (France)", "日本語 (日本)", "中文（台灣）"."""
    if tag == AUTO:
        return "Automatic (the language spoken)"
    language = _parsed(tag)
    if chinese_script(tag) == "traditional" and language.script is None:
        language = language.maximize()  # CLDR names zh-TW only under zh-Hant-TW
    name = language.autonym()
    return name[:1].upper() + name[1:]


def chinese_script(tag: str) -> str | None:
    """ "traditional" for zh-TW, zh-HK, zh-Hant…; "simplified" for other Chinese; else None."""
    if tag == AUTO:
        return None
    language = _parsed(tag)
    if language.language not in ("zh", "cmn"):
        return None
    if language.script == "Hant" or (
        language.script is None and language.territory in _TRADITIONAL_REGIONS
    ):
        return "traditional"
    return "simplified"


@functools.cache
def _converter(config: str):  # type: ignore[no-untyped-def]
    import opencc

    return opencc.OpenCC(config)


def in_script(text: str, tag: str) -> str:
    """Chinese text in the script `tag` asks for (OpenCC); any other text unchanged."""
    script = chinese_script(tag)
    if script is None or not text:
        return text
    if script == "simplified":
        return _converter("t2s").convert(text)
    region = _parsed(tag).territory
    return _converter({"TW": "s2tw", "HK": "s2hk", "MO": "s2hk"}.get(region or "", "s2t")).convert(
        text
    )


def matching_languages(
    text: str, usable: Callable[[str], bool] | None = None, limit: int = 25
) -> list[tuple[str, str]]:
    """(label, code) suggestions for what a user typed: "Français (France) — fr-FR".

    Codes that start with the text come first, then names (own or English) that contain it;
    `usable` keeps only the languages this bot can serve. `auto` is offered too.
    """
    needle = text.strip().lower().replace("_", "-")
    codes = [AUTO, *COMMON_LANGUAGES]
    if usable is not None:
        codes = [code for code in codes if usable(code)]

    def names(code: str) -> str:
        return f"{own_name(code)} {english_name(code)} {code}".lower()

    starts = [code for code in codes if code.lower().startswith(needle)]
    contains = [code for code in codes if code not in starts and needle in names(code)]
    return [(f"{own_name(code)} — {code}", code) for code in (starts + contains)[:limit]]


# --- which engines serve a language -------------------------------------------------------------


@dataclass(frozen=True)
class EngineFit:
    """An engine that can serve a language, and whether it needs the network."""

    name: str
    online: bool


@dataclass(frozen=True)
class Verdict:
    """Whether a server may choose a language, and what to tell the admin."""

    accepted: bool
    message: str


def _direction(fits: Sequence[EngineFit]) -> str:
    offline = [fit.name for fit in fits if not fit.online]
    return "offline" if offline else ("online" if fits else "none")


def verdict(tag: str, hearing: Sequence[EngineFit], speaking: Sequence[EngineFit]) -> Verdict:
    """Accept `tag` when an installed engine can hear it and one can speak it; name the
    direction that only an online engine serves, or that none can (then refuse)."""
    shown = f"`{tag}` ({own_name(tag)})"
    if tag == AUTO:
        if not any(not fit.online for fit in hearing):
            return Verdict(
                False,
                "Detecting the language needs the multilingual whisper model, which is not "
                "installed here (the `offline` extra).",
            )
        return Verdict(
            True,
            "The speech language is now `auto`: I recognize each recording in the language "
            "it is spoken in, and answer aloud in the language I heard last.",
        )
    problems = []
    if not hearing:
        problems.append(f"recognize speech in {shown}")
    if not speaking:
        problems.append(f"speak {shown}")
    if problems:
        return Verdict(False, f"Sorry, I can't {' or '.join(problems)} with the engines here.")
    lines = [f"The speech language is now {shown}."]
    for what, fits in (("Speech recognition", hearing), ("Speaking", speaking)):
        if _direction(fits) == "online":
            engines = " or ".join(fit.name for fit in fits)
            lines.append(f"{what} in `{tag}` needs the {engines} engine (online); offline I can't.")
    return Verdict(True, "\n".join(lines))
