"""The model file (format 2): a fitted scikit-learn pipeline compiled to arrays, and back.

What is stored is the fitted model "compiled" to arrays (format 2, `artifact_bytes`): for each
vectorizer its settings, the 64-bit keys of its terms (blake2b, sorted) and their idf; the
classifier's coefficients in the same order; and for the knowledge gate the single words
(one newline-joined string; a few thousand words where the vocabulary with its bigrams and
character n-grams has up to 100k terms) with their information. The bot finds a term's column
by binary search of its key, scores a message with a few numpy operations (well under 1 ms,
where scikit-learn's per-call input checks alone take 2 ms) and never imports scikit-learn,
which saves about 100 MB in the bot process. Loading a model is reading arrays and making one
dict of the single words: a few milliseconds for 100k terms, holding the GIL for hardly any.
The worker checks, right after fitting, that the file read back as the bot reads it gives
scikit-learn's probabilities; a training whose check fails is reported as failed.

`compile_pipeline` makes the arrays, `artifact_bytes` the file, `read_artifact` a loaded model
(scorer.py) from the file's bytes, and `check_compiled` is the worker's check.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from typing import Any

from bot.services.model.scorer import _known_words, _LoadedModel, term_keys

# 2: arrays in an .npz (term keys, idf, coefficients) and JSON; 1: a joblib pickle of
# vocabularies (still loaded, from files whose sha256 the manifest recorded).
MODEL_FORMAT = 2


def compile_pipeline(pipeline: Any) -> dict[str, Any]:
    """The fitted pipeline as arrays that `Scorer` can use without scikit-learn."""
    return _hashed(_vocabularies(pipeline))


def _vocabularies(pipeline: Any) -> dict[str, Any]:
    """The fitted pipeline as plain data: each vectorizer's settings, vocabulary and idf, and
    the classifier's coefficients (the compiled form of model files of format 1)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    union, classifier = pipeline.named_steps["features"], pipeline.named_steps["classifier"]
    if union.transformer_weights or not isinstance(classifier, LogisticRegression):
        raise TypeError("only a FeatureUnion of TF-IDF vectorizers + LogisticRegression compiles")
    blocks = []
    for _, vectorizer in union.transformer_list:
        settings = vectorizer.get_params()
        if (
            not isinstance(vectorizer, TfidfVectorizer)
            or settings["analyzer"] not in ("word", "char_wb")
            or settings["input"] != "content"
            or settings["norm"] != "l2"
            or not settings["use_idf"]
            or settings["binary"]
            or any(settings[k] is not None for k in _UNSUPPORTED_SETTINGS)
        ):
            raise TypeError(f"unsupported vectorizer settings: {settings}")
        blocks.append(
            {
                **{key: settings[key] for key in _BLOCK_SETTINGS},
                "vocabulary": {str(k): int(v) for k, v in vectorizer.vocabulary_.items()},
                "idf": np.asarray(vectorizer.idf_, dtype=np.float64),
            }
        )
    return {
        "blocks": blocks,
        "coef": np.ascontiguousarray(classifier.coef_.T, dtype=np.float32),
        "intercept": np.asarray(classifier.intercept_, dtype=np.float64),
        "classes": [str(c) for c in classifier.classes_],
    }


_UNSUPPORTED_SETTINGS = ("preprocessor", "tokenizer", "stop_words", "strip_accents", "vocabulary")
_BLOCK_SETTINGS = ("analyzer", "ngram_range", "token_pattern", "lowercase", "sublinear_tf")


def _hashed(plain: dict[str, Any]) -> dict[str, Any]:
    """Vocabularies (term -> column) turned into sorted term keys, with the idf and the
    coefficient rows put in the same order; and the knowledge gate's known words."""
    import numpy as np

    coef = np.asarray(plain["coef"], dtype=np.float32)
    blocks, rows, offset = [], [], 0
    for block in plain["blocks"]:
        vocabulary: dict[str, int] = block["vocabulary"]
        columns = np.fromiter(vocabulary.values(), dtype=np.int64, count=len(vocabulary))
        keys = term_keys(list(vocabulary))
        order = np.argsort(keys)
        keys = keys[order]
        if np.any(keys[1:] == keys[:-1]):
            raise ValueError("two terms of the model have the same key")
        columns = columns[order]
        settings = {key: block[key] for key in _BLOCK_SETTINGS}
        settings["ngram_range"] = tuple(int(n) for n in settings["ngram_range"])
        blocks.append({**settings, "keys": keys, "idf": np.asarray(block["idf"])[columns]})
        rows.append(columns + offset)
        offset += len(vocabulary)
    return {
        "blocks": blocks,
        "coef": np.ascontiguousarray(coef[np.concatenate(rows)] if rows else coef),
        "intercept": np.asarray(plain["intercept"], dtype=np.float64),
        "classes": [str(c) for c in plain["classes"]],
        "known": _known_words(plain["blocks"]),
    }


def artifact_bytes(compiled: dict[str, Any], meta: dict[str, Any]) -> bytes:
    """A model file (format 2): an .npz of plain arrays, loadable with allow_pickle=False, so
    reading one can never run code. `meta` (JSON) holds what is not an array: the dataset,
    replies, exact-match corrections and the scikit-learn version."""
    import numpy as np

    known = compiled["known"]
    header = {
        **meta,
        "format": MODEL_FORMAT,
        "classes": compiled["classes"],
        "blocks": [{key: block[key] for key in _BLOCK_SETTINGS} for block in compiled["blocks"]],
        "known": None if known is None else {k: known[k] for k in ("block", "alphabet", "longest")},
    }
    arrays = {
        "meta": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
        "coef": compiled["coef"],
        "intercept": compiled["intercept"],
    }
    for i, block in enumerate(compiled["blocks"]):
        arrays[f"keys{i}"], arrays[f"idf{i}"] = block["keys"], block["idf"]
    if known is not None:
        # Words never contain a newline (tokens are word characters): one string, newline-joined.
        arrays["known_words"] = np.frombuffer("\n".join(known["words"]).encode(), np.uint8)
        arrays["known_information"] = known["information"]
    buffer = io.BytesIO()
    # Fixed timestamps: the same model gives the same bytes (and sha256).
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", _EPOCH), "w") as out:
                np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


_EPOCH = (1980, 1, 1, 0, 0, 0)


def read_artifact(data: bytes) -> _LoadedModel:
    """A model from the bytes of a format-2 file (already verified). Raises ValueError,
    KeyError or TypeError when they are not one."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"model format {meta.get('format')!r}")
    blocks = [
        {
            **settings,
            "ngram_range": tuple(settings["ngram_range"]),
            "keys": arrays[f"keys{i}"],
            "idf": arrays[f"idf{i}"],
        }
        for i, settings in enumerate(meta["blocks"])
    ]
    known = meta["known"]
    if known is not None:
        text = arrays["known_words"].tobytes().decode("utf-8")
        words = text.split("\n") if text else []
        known = {**known, "words": words, "information": arrays["known_information"]}
    compiled = {
        "blocks": blocks,
        "coef": arrays["coef"],
        "intercept": arrays["intercept"],
        "classes": meta["classes"],
        "known": known,
    }
    return _LoadedModel(compiled, meta["replies"], meta["exact"])


def check_compiled(data: bytes, fitted: Any, texts: Sequence[str]) -> None:
    """Refuse to store a model file that does not score like scikit-learn: read `data` as the
    bot will, and compare its probabilities with the fitted pipeline's `predict_proba`, and
    the TF-IDF the training counted with the pipeline's own `transform`."""
    import numpy as np

    step = max(1, len(texts) // 50)
    rows = list(range(0, len(texts), step))[:50]
    probe = [texts[i] for i in rows] + ["", "qzxv?!", "Hello, WORLD"]
    scorer = read_artifact(data).scorer
    expected = fitted.pipeline.predict_proba(probe)
    got = np.array([scorer.proba(text) for text in probe])
    if not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError("the compiled model does not match scikit-learn's predictions")
    ours = fitted.features(rows)
    theirs = fitted.pipeline.named_steps["features"].transform([texts[i] for i in rows])
    if abs(ours - theirs).max() > 1e-5:
        raise RuntimeError("the counted features do not match scikit-learn's")
