"""Wake words matched by sound, not spelling.

Speech recognition spells a name the way it heard it: whisper tiny.en hears espeak's "hey bot"
as "hey Matt" or "hey man" and "hello bot" as "hello, Matt". So both the wake phrase and the
first words of an utterance become phonetic keys (letters grouped by where the mouth makes
them: b/p/m are lips, t/d/n/th the tongue on the teeth, vowels dropped after the first
letter, an r after a vowel silent), and a greeting in front ("hey", "hi", "hello", "ok") may
be any greeting. The phrase matches when the keys of its name part and of the same number of
heard words (joined, so "voice chat bot" and "VoiceChatBot" agree) are equal, or one edit
apart for longer keys (or two-sound keys with the same first sound: "bot" and "Mark").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
GREETINGS = frozenset({"hey", "hi", "hello", "hallo", "ok", "okay", "yo", "oi", "hay", "heya"})
# Letter groups: a key keeps the group, not the letter.
_GROUPS = {
    **dict.fromkeys("bpm", "P"),
    **dict.fromkeys("tdn", "T"),
    **dict.fromkeys("fv", "F"),
    **dict.fromkeys("szcxj", "S"),
    **dict.fromkeys("kgq", "K"),
    "l": "L",
    "r": "R",
}
_VOWELS = frozenset("aeiouyhw")
_DIGRAPHS = (("th", "t"), ("ph", "f"), ("ck", "k"), ("sh", "s"), ("ch", "s"), ("gh", ""))
MAX_WAKE_WORDS = 10
MAX_WAKE_CHARS = 40
MAX_WAKE_PHRASE_WORDS = 3


def normalise(text: str) -> str:
    """Lower case words separated by single spaces, without punctuation."""
    return " ".join(match.group(0).lower() for match in WORD.finditer(text))


def phonetic_key(word: str) -> str:
    """A rough sound key of a (possibly multi-word) text: "bot", "Matt" and "man" are "PT"."""
    text = "".join(normalise(word).split()).replace("'", "")
    for pair, single in _DIGRAPHS:
        text = text.replace(pair, single)
    key: list[str] = []
    for index, letter in enumerate(text):
        if letter in _VOWELS:
            if index == 0:
                key.append("V")
            continue
        if letter == "r" and _silent_r(text, index):
            continue
        group = _GROUPS.get(letter, letter.upper())
        if not key or key[-1] != group:
            key.append(group)
    return "".join(key)


def _silent_r(text: str, index: int) -> bool:
    """An r after a vowel and before a consonant or the end is not sounded ("Mark" ~ "Mack")."""
    after = text[index + 1 : index + 2]
    return index > 0 and text[index - 1] in _VOWELS and (not after or after not in _VOWELS)


def _distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def _sounds_alike(a: str, b: str) -> bool:
    key_a, key_b = phonetic_key(a), phonetic_key(b)
    if not key_a or not key_b:
        return normalise(a) == normalise(b)
    # Short keys may differ in their last sound only: whisper hears espeak's "bot" as
    # "Matt", "man" or "Mark" (the same lips, then a stop), never as "Sarah".
    same_onset = len(key_a) == len(key_b) == 2 and key_a[0] == key_b[0]
    allowed = 1 if min(len(key_a), len(key_b)) >= 3 or same_onset else 0
    return _distance(key_a, key_b) <= allowed


@dataclass(frozen=True)
class _Token:
    word: str
    end: int  # where the token ends in the original text


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.group(0).lower(), m.end()) for m in WORD.finditer(text)]


def match_wake_word(text: str, phrases: Iterable[str]) -> str | None:
    """The text after a wake phrase that starts `text`, or None when none does.

    "Hey Matt, what time is it?" with "hey bot" gives "what time is it?"; a phrase alone
    gives "".
    """
    tokens = _tokens(text)
    for phrase in sorted(phrases, key=lambda p: -len(normalise(p).split())):
        used = _match(tokens, normalise(phrase).split())
        if used is not None:
            rest = text[tokens[used - 1].end :] if used else text
            return rest.lstrip(" ,.;:!?-—…").strip()
    return None


def _match(tokens: list[_Token], phrase: list[str]) -> int | None:
    """How many tokens of the text the phrase covers, or None."""
    if not phrase:
        return None
    heard_greeting = 1 if tokens and tokens[0].word in GREETINGS else 0
    phrase_greeting = 1 if phrase[0] in GREETINGS else 0
    if phrase_greeting and not heard_greeting:
        return None
    name = phrase[phrase_greeting:]
    start = heard_greeting
    if not name:  # a phrase that is only a greeting must match it exactly
        return 1 if tokens and tokens[0].word == phrase[0] else None
    wanted = "".join(name)
    for count in (len(name), len(name) + 1, len(name) - 1, len(name) + 2):
        if count < 1 or start + count > len(tokens):
            continue
        heard = "".join(t.word for t in tokens[start : start + count])
        if _sounds_alike(heard, wanted):
            return start + count
    return None


def check_wake_phrase(phrase: str) -> str:
    """A wake phrase as stored, or ValueError with what is wrong with it."""
    cleaned = normalise(phrase)
    if not cleaned:
        raise ValueError("A wake word needs letters.")
    if len(cleaned) > MAX_WAKE_CHARS:
        raise ValueError(f"A wake word can be at most {MAX_WAKE_CHARS} characters.")
    if len(cleaned.split()) > MAX_WAKE_PHRASE_WORDS:
        raise ValueError(f"A wake word can be at most {MAX_WAKE_PHRASE_WORDS} words.")
    if all(word in GREETINGS for word in cleaned.split()):
        raise ValueError("A wake word needs more than a greeting, like `hey bot`.")
    return cleaned
