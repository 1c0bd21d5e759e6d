"""Turn a chat message into text worth reading aloud.

Discord markup is replaced by what a listener would want to hear: mentions by names, links by
"a link", custom emoji by their names, spoilers by "a spoiler" (never their content). Code
blocks are skipped (or, when reading a channel aloud, said to be there: "a code block"),
shouting is toned down ("soooooo" -> "sooo"), and long messages are cut at a word with the cut
announced.

The few words the cleanup adds ("a link", "someone", the cut notice) are said in the
message's language when `words.WORDS` has it (English otherwise). Numbers and Unicode emoji
are left for the voice: espeak-ng reads both per language, from its own dictionaries. Text in
any script passes through unchanged apart from Discord's markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.services.voice.words import ENGLISH, Words, words_for

CUT_NOTICE = ENGLISH.cut

_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_USER = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_CHANNEL = re.compile(r"<#(\d+)>")
_SLASH_COMMAND = re.compile(r"</([\w -]+):\d+>")
_TIMESTAMP = re.compile(r"<t:-?\d+(?::[tTdDfFR])?>")
_CUSTOM_EMOJI = re.compile(r"<a?:(\w+):\d+>")
_MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\(<?https?://[^)\s]+>?\)")
_LINK = re.compile(r"<?\b(?:https?://|www\.)[^\s<>]*[^\s<>.,!?;:'\")\]]>?", re.IGNORECASE)
_EVERYONE = re.compile(r"@(everyone|here)\b")
_SPOILER = re.compile(r"\|\|(.+?)\|\|", re.DOTALL)
# Paired emphasis markers: **bold**, *italic*, __underline__, ~~strike~~.
_EMPHASIS = re.compile(r"(\*{1,3}|_{2}|~~)(?=\S)(.+?)(?<=\S)\1")
_LINE_MARKUP = re.compile(r"^\s*(?:>{1,3}|#{1,3}|-#|[-*•])\s+")
# A run of more than three of the same character; digits are left alone (1000000).
_REPEATS = re.compile(r"([^\d\s])\1{3,}")
_SENTENCE_END = ".!?…:;,"


def clean_for_speech(
    text: str,
    *,
    prefix: str,
    max_chars: int,
    users: Mapping[int, str] | None = None,
    roles: Mapping[int, str] | None = None,
    channels: Mapping[int, str] | None = None,
    language: str = "en",
    describe_code: bool = False,
) -> str | None:
    """The text to speak for a message, or None when there is nothing to speak.

    Messages starting with the command `prefix` are never spoken. Mentions are replaced by
    the names in `users`, `roles` and `channels` (unknown ids by "someone", "a role",
    "a channel"). At most `max_chars` characters of the message are spoken; a longer one
    is cut at a word and `CUT_NOTICE` is appended. With `describe_code`, a code block is
    said to be there ("a code block") rather than skipped.
    """
    if text.lstrip().startswith(prefix):
        return None
    words = words_for(language)
    text = _CODE_BLOCK.sub(f" {words.code}. " if describe_code else " ", text)
    text = _SPOILER.sub(f" {words.spoiler} ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _replace_mentions(text, users or {}, roles or {}, channels or {}, words)
    text = _MARKDOWN_LINK.sub(r"\1", text)
    text = _LINK.sub(words.link, text)
    text = _CUSTOM_EMOJI.sub(lambda m: m.group(1).replace("_", " "), text)
    text = _strip_markdown(text)
    text = _REPEATS.sub(r"\1\1\1", text)
    text = _join_lines(text)
    if not any(ch.isalnum() for ch in text):
        return None
    return cap(text, max_chars, words.cut)


def _replace_mentions(
    text: str,
    users: Mapping[int, str],
    roles: Mapping[int, str],
    channels: Mapping[int, str],
    words: Words = ENGLISH,
) -> str:
    text = _USER.sub(lambda m: users.get(int(m.group(1)), words.someone), text)
    text = _ROLE.sub(lambda m: roles.get(int(m.group(1)), words.role), text)
    text = _CHANNEL.sub(lambda m: channels.get(int(m.group(1)), words.channel), text)
    text = _SLASH_COMMAND.sub(lambda m: m.group(1), text)
    text = _TIMESTAMP.sub(words.time, text)
    return _EVERYONE.sub(r"\1", text)


def _strip_markdown(text: str) -> str:
    previous = None
    while previous != text:  # nested markers: ***bold italic***, **__both__**
        previous = text
        text = _EMPHASIS.sub(r"\2", text)
    return "\n".join(_LINE_MARKUP.sub("", line) for line in text.splitlines())


def _join_lines(text: str) -> str:
    """One line, with a full stop where a line ended without punctuation (a pause when spoken)."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    return " ".join(
        line if i == len(lines) - 1 or line[-1] in _SENTENCE_END else f"{line}."
        for i, line in enumerate(lines)
    )


def cap(text: str, max_chars: int, notice: str = CUT_NOTICE) -> str:
    """`text` cut at a word to at most `max_chars` characters, `notice` appended when cut."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > 0 else text[:max_chars]
    return f"{cut.rstrip(' ,;:-')} {notice}"
