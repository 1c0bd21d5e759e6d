"""Scoring a message with a compiled model, in numpy: the bot never imports scikit-learn.

A loaded model (`_LoadedModel`) is a `Scorer` (TF-IDF and the logistic regression's softmax
over arrays; a term's column is found by binary search of its `term_keys`), the reply of each
label and the exact-match corrections. This module also holds the analyzers that split a text
as scikit-learn's vectorizers do, with the settings the model file stores (its token pattern
too: a model scores with the one it was trained with), and `KnownWords`, the knowledge gate
with its typo look-up.

Knowing when it doesn't know: two rules make the confidence (`_LoadedModel.predict`), which
`ModelService.predict` compares with `CHAT_MIN_CONFIDENCE`. Exact-match corrections skip both
and answer with confidence 1.

- Knowledge gate. Logistic regression always shares all the probability among the labels it
  knows, and the character n-grams of words it has never seen ("qwv", "mongolia") still land
  on some label, sometimes decisively. So the message's words are first looked up in the word
  vocabulary. Its known share is the part of its word information that lies in words seen in
  training; a word's information is its idf - 1, ln((1 + rows) / (1 + rows with the word)):
  0 for a word in every row, so common words such as "the", "is" or "to" barely count, and an
  unknown word weighs as much as the rarest known one. Below half (`MIN_KNOWN_SHARE`) the
  message is unknown: confidence 0, whatever the probabilities. Half is where the 3-label test
  dataset (tests/fixtures/three_labels.csv) separates "what is the capital of mongolia"
  (0.41: three known common words, three unknown ones, classifier 91% sure) from "see you
  tomorrow, bye" (0.70); the sample's "wats your name" is at 0.56. A word one typo away from a
  known word of 4+ characters (a letter missing, extra, wrong, or two swapped) counts as that
  word, so "helo there" is known; character n-grams never count as knowledge. The gate is
  built from the compiled word block when a model loads, so older model files get it too.
  In scripts without spaces between words (Japanese, Chinese, Thai) each character is a word
  (training.py's `TOKEN_PATTERN`), so there the gate weighs characters: a new sentence made
  of characters seen in training is known, kana or ideographs never seen are not. In the
  Japanese test dataset (tests/fixtures/ja_chat.csv) 27 of 30 new paraphrases are answered,
  and 2.4% of random hiragana strings get an answer (katakana 0.2%; random letters in English
  none, words of three_labels.csv in a random order 65%). Counting a character as known only
  beside a neighbour it was seen with lets no random kana through, but answers 26 of the 30,
  and 7 of 12 Chinese paraphrases (11 without): Chinese words are often one character.
- Confidence above chance. The top probability p is rescaled from chance to certainty,
  (p - 1/k) / (1 - 1/k) for k labels: 0 for a uniform distribution and 1 for a certain one,
  with 3 labels as with 30, where a raw 0.35 is a near tie among 3 labels and a clear winner
  among 30. It is monotone in p, so it ranks predictions as p does. 1 - normalised entropy
  would also depend on how the rest is spread over the other labels, which changes with k;
  the top-2 margin would do, but rescaling keeps the default's meaning for the sample's 16
  labels (0.35 above chance is p >= 0.39).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from bot.services.model.datasets.parse import normalize_text

if TYPE_CHECKING:
    import numpy as np

# Below this share of its word information in known words, a message is unknown: the
# knowledge gate of the module docstring.
MIN_KNOWN_SHARE = 0.5
# A typo names a known word only in words this long: shorter ones match too much by chance.
TYPO_MIN_CHARS = 4
# Typo look-ups per message (each about 50 µs), so long gibberish stays fast to score (a
# 2,000-character one in about 1 ms).
MAX_TYPO_LOOKUPS = 8
# With more distinct characters than this in the vocabulary (a non-alphabetic script), a typo
# is looked for as an extra or swapped letter only, not a missing or wrong one.
MAX_TYPO_ALPHABET = 64


def term_keys(terms: Sequence[str]) -> np.ndarray:
    """64-bit keys of terms (blake2b of their UTF-8): what a model file stores instead of the
    terms. With 100k terms, two keys collide with odds of about 1 in 10^9 (and training then
    fails rather than store a model that would mix two terms up)."""
    import numpy as np

    blake2b = hashlib.blake2b
    digests = [blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest() for t in terms]
    return np.frombuffer(b"".join(digests), dtype="<u8")


def _known_words(blocks: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What the knowledge gate needs from the word block that keeps single words: the words
    themselves (a few thousand short strings, where the whole vocabulary with its bigrams and
    character n-grams can be 100k), their information (idf - 1), the letters of the block's
    terms and its longest word."""
    import numpy as np

    for index, block in enumerate(blocks):
        if block["analyzer"] == "word" and block["ngram_range"][0] == 1:
            vocabulary: dict[str, int] = block["vocabulary"]
            words = sorted(term for term in vocabulary if " " not in term)
            idf = np.asarray(block["idf"], dtype=np.float64)
            columns = np.fromiter((vocabulary[w] for w in words), np.int64, len(words))
            letters = set("".join(vocabulary)) - {" "}
            return {
                "block": index,
                "words": words,
                "information": idf[columns] - 1.0,
                "alphabet": "".join(sorted(letters)) if len(letters) <= MAX_TYPO_ALPHABET else "",
                "longest": max(map(len, words), default=0),
            }
    return None


_WHITE_SPACES = re.compile(r"\s\s+")


def _word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    """scikit-learn's word n-grams of a token list (CountVectorizer._word_ngrams)."""
    if high == 1:
        return tokens
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def _char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """scikit-learn's character n-grams within word boundaries (_char_wb_ngrams)."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", text).split():
        word = f" {word} "
        length = len(word)
        for n in range(low, high + 1):
            offset = 0
            grams.append(word[offset : offset + n])
            while offset + n < length:
                offset += 1
                grams.append(word[offset : offset + n])
            if offset == 0:  # a word shorter than n counts once
                break
    return grams


def _tokenizer(block: dict[str, Any]) -> Callable[[str], list[str]]:
    """The words of a text as a word block sees them (lowercased if it lowercases)."""
    find_tokens = re.compile(block["token_pattern"]).findall
    lowercase = block["lowercase"]

    def tokens(text: str) -> list[str]:
        return find_tokens(text.lower() if lowercase else text)

    return tokens


def _analyzer(block: dict[str, Any]) -> Callable[[str], list[str]]:
    low, high = block["ngram_range"]
    lowercase = block["lowercase"]
    if block["analyzer"] == "word":
        tokens = _tokenizer(block)

        def words(text: str) -> list[str]:
            return _word_ngrams(tokens(text), low, high)

        return words

    def chars(text: str) -> list[str]:
        return _char_wb_ngrams(text.lower() if lowercase else text, low, high)

    return chars


def _lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of `wanted` keys in the sorted `keys`, -1 where absent."""
    import numpy as np

    if len(keys) == 0:
        return np.full(len(wanted), -1)
    positions = np.searchsorted(keys, wanted)
    positions[positions == len(keys)] = 0
    return np.where(keys[positions] == wanted, positions, -1)


def _one_edit(word: str, alphabet: str) -> Iterator[str]:
    """Strings one typo away from `word`: a letter deleted, two swapped, one replaced or one
    inserted (letters from `alphabet`)."""
    for i in range(len(word) + 1):
        left, right = word[:i], word[i:]
        if right:
            yield left + right[1:]
            if len(right) > 1:
                yield left + right[1] + right[0] + right[2:]
            for letter in alphabet:
                if letter != right[0]:
                    yield left + letter + right[1:]
        for letter in alphabet:
            yield left + letter + right


class KnownWords:
    """Which of a message's words a model was trained on: the knowledge gate (module docstring).

    Made from the word block that keeps single words: the words and their information, the
    letters of the block's terms (typos are looked for with those) and the longest word.
    Only single words count: bigrams add no new words, and character n-grams are not knowledge.
    """

    def __init__(self, block: dict[str, Any], known: dict[str, Any]) -> None:
        import numpy as np

        self._tokens = _tokenizer(block)
        words: list[str] = known["words"]
        self._index = dict(zip(words, range(len(words)), strict=True))
        self._information = np.asarray(known["information"], dtype=np.float64)
        if len(self._index) != len(words) or self._information.shape != (len(words),):
            raise ValueError("the known words do not match their information")
        self._unknown = float(self._information.max(initial=0.0))
        self._alphabet: str = known["alphabet"]
        self._longest = int(known["longest"])

    @classmethod
    def of(cls, blocks: Sequence[dict[str, Any]]) -> KnownWords | None:
        """The gate of plain word blocks (vocabulary and idf, as `_vocabularies` gives them)."""
        known = _known_words(blocks)
        return None if known is None else cls(blocks[known["block"]], known)

    def share(self, text: str) -> float:
        """The share of the text's word information in known words, in [0, 1]: 1 when every
        word is known; 0 with unknown words only, and for a text without words or whose words
        are all in every training row (they tell the labels apart no better than nothing)."""
        known = total = 0.0
        lookups = MAX_TYPO_LOOKUPS
        for token in self._tokens(text):
            index = self._index.get(token)
            if index is None and lookups > 0 and len(token) >= TYPO_MIN_CHARS:
                lookups -= 1
                index = self._typo_of(token)
            weight = self._unknown if index is None else float(self._information[index])
            total += weight
            if index is not None:
                known += weight
        return known / total if total > 0.0 else 0.0

    def _typo_of(self, token: str) -> int | None:
        """The index of a known word (4+ characters) one typo away, if any."""
        if len(token) > self._longest + 1:  # one typo changes the length by one at most
            return None
        for candidate in _one_edit(token, self._alphabet):
            if len(candidate) >= TYPO_MIN_CHARS:
                index = self._index.get(candidate)
                if index is not None:
                    return index
        return None


def above_chance(proba: np.ndarray) -> float:
    """The top probability rescaled from chance (1/k for k labels) to certainty: 0 for a
    uniform distribution, 1 for a certain one, with any number of labels."""
    chance = 1.0 / len(proba)
    return min(1.0, max(0.0, (float(proba.max()) - chance) / (1.0 - chance)))


class Scorer:
    """Class probabilities for one text from a compiled model: TF-IDF (sublinear tf, idf,
    l2 per vectorizer, concatenated as FeatureUnion does) and the softmax of the logistic
    regression, in numpy. A term's column is found by binary search of its key among the
    block's sorted keys. `known_share` is the knowledge gate."""

    def __init__(self, compiled: dict[str, Any]) -> None:
        import numpy as np

        self.classes: list[str] = list(compiled["classes"])
        self._coef = np.asarray(compiled["coef"])
        self._intercept = np.asarray(compiled["intercept"], dtype=np.float64)
        self._blocks = []
        offset = 0
        for block in compiled["blocks"]:
            keys = np.asarray(block["keys"], dtype="<u8")
            idf = np.asarray(block["idf"], dtype=np.float64)
            if keys.shape != idf.shape:
                raise ValueError("the compiled model's shapes do not match")
            self._blocks.append((_analyzer(block), keys, idf, block["sublinear_tf"], offset))
            offset += len(keys)
        if self._coef.shape != (offset, len(self._intercept)):
            raise ValueError("the compiled model's shapes do not match")
        known = compiled["known"]
        self._known = (
            None if known is None else KnownWords(compiled["blocks"][known["block"]], known)
        )

    def known_share(self, text: str) -> float:
        """How much of the text's words the model knows (`KnownWords.share`); 1 for a model
        without a word block, which has nothing to judge by."""
        return 1.0 if self._known is None else self._known.share(text)

    def proba(self, text: str) -> np.ndarray:
        import numpy as np

        scores = self._intercept.copy()
        for analyze, keys, idf, sublinear, offset in self._blocks:
            terms = analyze(text)
            if not terms:
                continue
            found = _lookup(keys, term_keys(terms))
            indices, tf = np.unique(found[found >= 0], return_counts=True)
            if not len(indices):
                continue
            values = (np.log(tf) + 1.0 if sublinear else tf.astype(np.float64)) * idf[indices]
            values /= np.sqrt(values @ values)
            scores += values @ self._coef[indices + offset]
        if scores.shape[0] == 1:  # two labels: a sigmoid on one score
            positive = 1.0 / (1.0 + np.exp(-scores[0]))
            return np.array([1.0 - positive, positive])
        scores -= scores.max()
        exp = np.exp(scores)
        return exp / exp.sum()


class _LoadedModel:
    def __init__(
        self, compiled: dict[str, Any], replies: dict[str, str | None], exact: dict[str, str]
    ) -> None:
        self.scorer = Scorer(compiled)
        self.replies: dict[str, str | None] = dict(replies)
        self.exact: dict[str, str] = dict(exact)
        self.version = self.sha256 = ""

    def predict(self, text: str) -> tuple[str, float, bool]:
        """(label, confidence, from a correction) for one message.

        The confidence is 1 for a correction, 0 for a message the model does not know
        (`MIN_KNOWN_SHARE`), else the top probability above chance (`above_chance`).
        """
        label = self.exact.get(normalize_text(text))
        if label is not None:
            return label, 1.0, True
        proba = self.scorer.proba(text)
        label = self.scorer.classes[int(proba.argmax())]
        if self.scorer.known_share(text) < MIN_KNOWN_SHARE:
            return label, 0.0, False
        return label, above_chance(proba), False

    def reply_for(self, label: str) -> str:
        return self.replies.get(label) or label
