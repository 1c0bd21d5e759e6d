"""Text cut into the pieces speech is made of: sentences, and a short first piece.

`SynthesisService` speaks a text one piece at a time (`synthesize_stream`), so the first audio
is ready while the rest is made. Western sentences end at . ! ? … followed by a space;
Chinese and Japanese ones at 。！？ as they are.
"""

from __future__ import annotations

import re

# A sentence longer than this is cut at commas, then at words, so the first audio comes soon.
MAX_SENTENCE_CHARS = 200
# A first sentence at least this long is started with its first clause alone.
FIRST_CLAUSE_MIN_SENTENCE = 24
# A first sentence with no comma and at least this many words is cut before a linking word.
FIRST_CUT_MIN_WORDS = 6
_LINKING_WORDS = frozenset(
    "is are was were and but or so because that which who to of in on at for with "
    "will would can could should has have had".split()
)

_ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "prof", "st", "vs", "e.g", "i.e", "jr", "sr")
# Western sentence ends need a space after them; the full-width ones of Chinese and Japanese
# (。！？) end a sentence as they are, closing brackets included.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|(?<=[。！？])[」』）]*\s*|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|(?<=[，、；：])\s*")


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Split text into sentences to synthesise one at a time.

    Fragments with nothing to say ("!!!", "-") join the sentence before them; a common
    abbreviation ("Dr.") does not end a sentence; a sentence longer than `max_chars` is cut at
    commas, then at spaces.
    """
    sentences: list[str] = []
    carry = ""
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if not piece:
            continue
        if carry:
            piece = f"{carry} {piece}"
            carry = ""
        last_word = piece.rsplit(None, 1)[-1].rstrip(".").lower()
        if piece.endswith(".") and last_word in _ABBREVIATIONS:
            carry = piece
            continue
        if not speakable(piece) and sentences:
            sentences[-1] = f"{sentences[-1]} {piece}"
            continue
        sentences.append(piece)
    if carry:
        sentences.append(carry)
    return [part for sentence in sentences for part in _cut_long(sentence, max_chars)]


def stream_pieces(text: str) -> list[str]:
    """The pieces `synthesize_stream` speaks: the sentences, with a long first one split."""
    return _quick_start(split_sentences(text))


def _quick_start(parts: list[str]) -> list[str]:
    """Speak the start of a long first sentence on its own, so the first audio is ready sooner.

    "Hello there, nice to meet you." starts as "Hello there," (a natural pause anyway); a
    sentence with no comma is cut before a linking word ("The weather today | is calm and
    bright."). The first clip then synthesises in about half the time of the whole sentence.
    """
    if not parts or len(parts[0]) < FIRST_CLAUSE_MIN_SENTENCE:
        return parts
    head, *tail = _CLAUSE_END.split(parts[0], maxsplit=1)
    if tail and len(head.split()) >= 2 and speakable(tail[0]):
        return [head, tail[0], *parts[1:]]
    words = parts[0].split()
    if len(words) < FIRST_CUT_MIN_WORDS:
        return parts
    cut = next(
        (i for i in range(2, len(words) - 2) if words[i].lower() in _LINKING_WORDS),
        len(words) // 2,
    )
    return [" ".join(words[:cut]), " ".join(words[cut:]), *parts[1:]]


def speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    """Pack clauses (or the words of an over-long clause) into parts of up to `max_chars`."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        pieces.extend(clause.split() if len(clause) > max_chars else [clause])
    parts: list[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current} {piece}" if current else piece
        if len(joined) > max_chars and current:
            parts.append(current)
            current = piece
        else:
            current = joined
    parts.append(current)
    return parts
