"""Fitting the chat model, in a worker process; never imported by the bot's own process.

The model is scikit-learn's: TF-IDF over word 1-2 grams and over character 3-grams within
word boundaries (each as `TfidfVectorizer` with `_VECTORIZERS`' settings, each row l2-normalised,
the two side by side as `FeatureUnion` puts them), then multinomial `LogisticRegression`.

Words are runs of word characters (`TOKEN_PATTERN`), except in scripts written without spaces
between words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar: `UNSEGMENTED`), where each
character is a word of its own, so word bigrams there are character bigrams and the knowledge
gate (models/scorer.py) weighs characters. As one run, a Japanese sentence was one word that no
new sentence repeats: a model of tests/fixtures/ja_chat.csv answered 8 of its 30 held-out
paraphrases, and those only because punctuation cut a known phrase off. With characters it
answers 27 (a Chinese set: 4 of 12, now 11). A real segmenter (janome) answered 28 of the 30,
but for Japanese only, adding 87 MB to the bot's process (which scores with the same
tokenizer) and 0.4 ms per distinct sentence to the training. Text in other scripts splits as
it did with scikit-learn's default `\\b\\w+\\b`; a model keeps the pattern it was trained with
(the model file stores it), so older models score as they did.

What this module does faster than calling `Pipeline.fit` is counting the terms. scikit-learn
runs its Python analyzer over every row; here each distinct whitespace-separated chunk of
text is analysed once, and the counts of the rows come from sparse matrix products:

- character n-grams within word boundaries never cross whitespace, so
  rows x grams = (rows x chunks) @ (chunks x grams);
- word tokens (`TOKEN_PATTERN`) never contain whitespace either, so a row's tokens are its
  chunks' tokens in order; word bigrams are consecutive tokens of one row, counted with numpy.

Cross-validation counts its sample's terms once; each fold then takes its vocabulary (the
terms its training rows contain, at most `MAX_FEATURES`), idf and TF-IDF from its own
training rows, exactly as a pipeline refitted on the fold would. It runs in a forked child
beside the final fit, on the machine's other core.

The fitted model is handed back as a real scikit-learn `Pipeline` (the vectorizers carry the
vocabulary and idf that were counted), so `check_compiled` compares the compiled model with
scikit-learn's own `predict_proba`, and the counted TF-IDF with scikit-learn's `transform`.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import threading
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

CV_MAX_FOLDS = 5
# Cross-validation refits the model once per fold; above this many rows it runs on a
# stratified sample (accuracy then has a standard error of about 0.5 points).
CV_MAX_ROWS = 5_000
# Per vectorizer: bounds model size and memory for very large or very varied datasets.
MAX_FEATURES = 50_000
# Scripts written without spaces between words: Thai and Lao, Myanmar, Khmer, the ideographic
# iteration and closing marks, Hiragana and Katakana (with their extensions and half-width
# forms), and the CJK ideographs (extension A, the main block, compatibility, planes 2-3).
UNSEGMENTED = (
    r"\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff"
    r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff"
)
# Runs of word characters as `\b\w+\b` finds them, but each word character of an unsegmented
# script a word of its own. The common case first: the pattern is then as fast as `\w+`.
TOKEN_PATTERN = rf"(?u)[^\W{UNSEGMENTED}]+|(?=\w)[{UNSEGMENTED}]"
_VECTORIZERS = (
    ("words", {"analyzer": "word", "ngram_range": (1, 2), "token_pattern": TOKEN_PATTERN}),
    ("chars", {"analyzer": "char_wb", "ngram_range": (3, 3)}),
)


def classifier() -> LogisticRegression:
    # C=10: with few rows per label, weak regularisation keeps confidences decisive.
    # newton-cg: same solution as lbfgs here, 5-10x faster on wide sparse TF-IDF features.
    return LogisticRegression(C=10.0, solver="newton-cg", max_iter=1000)


def vectorizer(settings: dict[str, Any]) -> TfidfVectorizer:
    return TfidfVectorizer(
        **settings, sublinear_tf=True, max_features=MAX_FEATURES, dtype=np.float32
    )


def build_pipeline() -> Pipeline:
    """The model as an unfitted scikit-learn pipeline (what `fit` computes, done the slow way)."""
    union = FeatureUnion([(name, vectorizer(settings)) for name, settings in _VECTORIZERS])
    return Pipeline([("features", union), ("classifier", classifier())])


# -- counting --------------------------------------------------------------------------------


@dataclass
class Counts:
    """Term counts of one vectorizer: rows x distinct terms (every term, before any limit)."""

    matrix: sp.csr_matrix
    term: Callable[[int], str]  # the term of a column


def _index(items: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(distinct items in first-seen order, each item's position in that list)."""
    distinct = list(dict.fromkeys(items))
    position = {item: i for i, item in enumerate(distinct)}
    return distinct, np.fromiter(map(position.__getitem__, items), np.int64, len(items))


def _csr(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    ones = np.ones(len(rows), dtype=np.int32)
    matrix = sp.csr_matrix((ones, (rows, columns)), shape=shape)
    matrix.sum_duplicates()
    return matrix


def _expand(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of `lengths` items: (group of each item, position of each item in its group)."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    return owner, np.arange(int(lengths.sum())) - starts[owner]


def _char_wb_grams(chunk: str, low: int, high: int) -> list[str]:
    """scikit-learn's `_char_wb_ngrams` of one whitespace-free chunk."""
    word = f" {chunk} "
    grams = []
    for n in range(low, high + 1):
        offset = 0
        grams.append(word[offset : offset + n])
        while offset + n < len(word):
            offset += 1
            grams.append(word[offset : offset + n])
        if offset == 0:  # a word shorter than n counts once
            break
    return grams


def count_terms(texts: Sequence[str]) -> dict[str, Counts]:
    """Word 1-2 gram and char_wb 3-gram counts of every text, as `_VECTORIZERS` define them."""
    import re

    lowered = [text.lower().split() for text in texts]
    per_row = np.fromiter(map(len, lowered), np.int64, len(lowered))
    chunks, chunk_ids = _index(list(chain.from_iterable(lowered)))
    row_of_chunk = np.repeat(np.arange(len(texts)), per_row)
    rows_x_chunks = _csr(row_of_chunk, chunk_ids, (len(texts), len(chunks)))

    # Characters: (rows x chunks) @ (chunks x grams).
    (_, chars), (_, words) = _VECTORIZERS[1], _VECTORIZERS[0]
    low, high = chars["ngram_range"]
    grams_of = [_char_wb_grams(chunk, low, high) for chunk in chunks]
    grams, gram_ids = _index(list(chain.from_iterable(grams_of)))
    chunk_of_gram, _ = _expand(np.fromiter(map(len, grams_of), np.int64, len(grams_of)))
    chunks_x_grams = _csr(chunk_of_gram, gram_ids, (len(chunks), len(grams)))
    char_counts = (rows_x_chunks @ chunks_x_grams).tocsr()

    # Words: each chunk's tokens, laid out in row order, then consecutive pairs.
    find_tokens = re.compile(words["token_pattern"]).findall
    tokens_of = [find_tokens(chunk) for chunk in chunks]
    tokens, token_ids = _index(list(chain.from_iterable(tokens_of)))
    per_chunk = np.fromiter(map(len, tokens_of), np.int64, len(tokens_of))
    first_token = np.cumsum(per_chunk) - per_chunk
    occurrence, within = _expand(per_chunk[chunk_ids])
    sequence = token_ids[first_token[chunk_ids][occurrence] + within]
    row_of_token = row_of_chunk[occurrence]
    unigrams = _csr(row_of_token, sequence, (len(texts), len(tokens)))
    same_row = row_of_token[1:] == row_of_token[:-1]
    pair_keys = sequence[:-1][same_row] * len(tokens) + sequence[1:][same_row]
    pairs, pair_ids = np.unique(pair_keys, return_inverse=True)
    bigrams = _csr(row_of_token[1:][same_row], pair_ids, (len(texts), len(pairs)))
    word_counts = sp.hstack([unigrams, bigrams], format="csr")

    def word_term(column: int) -> str:
        if column < len(tokens):
            return tokens[column]
        first, second = divmod(int(pairs[column - len(tokens)]), len(tokens))
        return f"{tokens[first]} {tokens[second]}"

    return {
        "words": Counts(word_counts, word_term),
        "chars": Counts(char_counts, grams.__getitem__),
    }


# -- TF-IDF ----------------------------------------------------------------------------------


@dataclass
class Block:
    """One vectorizer fitted on some rows: its columns of the counts, their terms and idf."""

    columns: np.ndarray
    terms: list[str]
    idf: np.ndarray

    @classmethod
    def fit(cls, counts: Counts, rows: np.ndarray | slice) -> Block:
        """The vocabulary of `rows`: the terms they contain, the `MAX_FEATURES` most frequent
        when there are more (ties: first seen), with scikit-learn's smoothed idf."""
        part = counts.matrix[rows]
        frequency = np.asarray(part.sum(axis=0)).ravel()
        present = np.flatnonzero(frequency)
        if len(present) > MAX_FEATURES:
            order = np.argsort(-frequency[present], kind="stable")[:MAX_FEATURES]
            present = np.sort(present[order])
        document_frequency = np.bincount(part.indices, minlength=part.shape[1])[present]
        idf = np.log((1.0 + part.shape[0]) / (1.0 + document_frequency)) + 1.0
        return cls(present, [counts.term(int(c)) for c in present], idf)

    def transform(self, counts: Counts, rows: np.ndarray | slice) -> sp.csr_matrix:
        """Sublinear tf x idf, each row scaled to unit length (rows without terms stay 0)."""
        part = counts.matrix[rows] if isinstance(rows, np.ndarray) else counts.matrix
        position = np.full(part.shape[1], -1, dtype=np.int64)
        position[self.columns] = np.arange(len(self.columns))
        column = position[part.indices]
        kept = column >= 0
        row = np.repeat(np.arange(part.shape[0]), np.diff(part.indptr))[kept]
        column = column[kept]
        values = (np.log(part.data[kept].astype(np.float64)) + 1.0) * self.idf[column]
        norms = np.sqrt(np.bincount(row, weights=values * values, minlength=part.shape[0]))
        values /= norms[row]  # a row with a value has a norm > 0
        indptr = np.concatenate(([0], np.cumsum(np.bincount(row, minlength=part.shape[0]))))
        shape = (part.shape[0], len(self.columns))
        return sp.csr_matrix((values, column, indptr), shape=shape)


def _features(blocks: dict[str, Block], counts: dict[str, Counts], rows: Any) -> sp.csr_matrix:
    parts = [blocks[name].transform(counts[name], rows) for name, _ in _VECTORIZERS]
    return sp.hstack(parts, format="csr", dtype=np.float32)


def _fit_blocks(counts: dict[str, Counts], rows: Any) -> dict[str, Block]:
    return {name: Block.fit(counts[name], rows) for name, _ in _VECTORIZERS}


# -- fitting and cross-validating -------------------------------------------------------------


def cv_sample(labels: Sequence[str]) -> list[int]:
    """Indices to cross-validate on: labels with 2+ rows, stratified down to CV_MAX_ROWS."""
    counts = Counter(labels)
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        if counts[label] >= 2:
            by_label[label].append(index)
    total = sum(len(indices) for indices in by_label.values())
    if total <= CV_MAX_ROWS:
        return sorted(i for indices in by_label.values() for i in indices)
    rng = random.Random(0)
    fraction = CV_MAX_ROWS / total
    sample: list[int] = []
    for indices in by_label.values():
        take = min(len(indices), max(2, round(len(indices) * fraction)))
        sample.extend(rng.sample(indices, take))
    return sorted(sample)


def cross_validate(
    texts: Sequence[str], labels: Sequence[str]
) -> tuple[float | None, float | None, int, int]:
    """(accuracy, macro-F1, folds, rows used) of stratified k-fold CV, k = min(5, rows/label),
    on `cv_sample`'s rows; each fold fits its own vocabulary, idf and classifier."""
    sample = cv_sample(labels)
    y = np.array([labels[i] for i in sample])
    per_label = Counter(y.tolist())
    if len(per_label) < 2:
        return None, None, 0, 0
    counts = count_terms([texts[i] for i in sample])
    folds = min(CV_MAX_FOLDS, min(per_label.values()))
    predicted = np.empty_like(y)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    for train, test in splitter.split(np.zeros(len(y)), y):
        blocks = _fit_blocks(counts, train)
        model = classifier().fit(_features(blocks, counts, train), y[train])
        predicted[test] = model.predict(_features(blocks, counts, test))
    accuracy = float(accuracy_score(y, predicted))
    macro_f1 = float(f1_score(y, predicted, average="macro", zero_division=0))
    return accuracy, macro_f1, folds, len(sample)


class _Beside:
    """`fn(*args)` in a forked child process while this one goes on; `result()` waits for it.

    Training uses the machine's second core this way: cross-validation beside the final fit.
    Where there is no fork, in a process with other threads (forking those can deadlock the
    child), or when the child fails, `result()` runs `fn` here instead.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._fn, self._args = fn, args
        self._pid: int | None = None
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(read)
                with os.fdopen(write, "wb") as out:
                    out.write(pickle.dumps(fn(*args)))
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self._pid, self._read = pid, read

    def result(self) -> Any:
        if self._pid is not None:
            with os.fdopen(self._read, "rb") as pipe:
                data = pipe.read()
            _, status = os.waitpid(self._pid, 0)
            if status == 0 and data:
                return pickle.loads(data)
            log.warning("cross-validation in a child process failed (status %s)", status)
        return self._fn(*self._args)


def as_pipeline(blocks: dict[str, Block], model: LogisticRegression) -> Pipeline:
    """The fitted model as scikit-learn's pipeline: vectorizers given the counted vocabulary
    and idf, and the fitted classifier."""
    transformers = []
    for name, settings in _VECTORIZERS:
        fitted = vectorizer(settings)
        fitted.vocabulary_ = {term: i for i, term in enumerate(blocks[name].terms)}
        fitted.idf_ = blocks[name].idf
        transformers.append((name, fitted))
    return Pipeline([("features", FeatureUnion(transformers)), ("classifier", model)])


@dataclass
class Fitted:
    pipeline: Pipeline
    features: Callable[[Sequence[int]], sp.csr_matrix]  # counted TF-IDF of training rows
    accuracy: float | None
    macro_f1: float | None
    folds: int
    cv_rows: int


def fit(texts: Sequence[str], labels: Sequence[str]) -> Fitted:
    """Count, fit and cross-validate, one core each for the fit and the cross-validation."""
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        metrics = _Beside(cross_validate, texts, labels)
        counts = count_terms(texts)
        every = slice(None)
        blocks = _fit_blocks(counts, every)
        model = classifier().fit(_features(blocks, counts, every), np.asarray(labels))
        accuracy, macro_f1, folds, cv_rows = metrics.result()
    return Fitted(
        as_pipeline(blocks, model),
        lambda rows: _features(blocks, counts, np.asarray(rows, dtype=np.int64)),
        accuracy,
        macro_f1,
        folds,
        cv_rows,
    )
