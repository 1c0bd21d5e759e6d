"""A piper voice run with permissively licensed parts: gruut phonemes, onnxruntime inference.

A piper voice is a VITS model exported to ONNX (`voice.onnx`) with its settings beside it
(`voice.onnx.json`). It was trained on espeak-ng's IPA phonemes. The piper-tts package runs
it with espeak-ng built in and is GPL-3.0 since 1.3, so this module does the same job with
gruut (MIT), whose English lexicon and guesser for unknown words were made from espeak-ng's
phonemes, and onnxruntime (MIT). Each sentence becomes phoneme ids, as piper's own
training did (`^ _ p _ p _ ... $`), and the model turns them into 16-bit audio.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from gruut import TextProcessor
from gruut.phonemize import SqlitePhonemizer
from gruut.utils import find_lang_dir, remove_non_word_chars

log = logging.getLogger(__name__)

BOS, EOS, PAD = "^", "$", "_"
# Clause punctuation stays in piper's phonemes (it shapes the intonation); gruut marks other
# pauses as major or minor breaks, written as a full stop or a comma.
PUNCTUATION = frozenset(".,!?;:")
SILENT = " " + "".join(PUNCTUATION)  # a sentence of only these says nothing
MAJOR_BREAK, MINOR_BREAK = ".", ","


@dataclass(frozen=True)
class VoiceConfig:
    """What synthesis needs from a voice's `.onnx.json`."""

    sample_rate: int
    language: str  # espeak-ng's name for it, as gruut takes it: "en-us"
    phoneme_ids: dict[str, list[int]]
    noise_scale: float
    length_scale: float
    noise_w: float
    speakers: int

    @classmethod
    def load(cls, path: Path) -> VoiceConfig:
        config = json.loads(path.read_text(encoding="utf-8"))
        inference = config.get("inference", {})
        return cls(
            sample_rate=int(config["audio"]["sample_rate"]),
            language=str(config["espeak"]["voice"]),
            phoneme_ids={str(k): [int(i) for i in v] for k, v in config["phoneme_id_map"].items()},
            noise_scale=float(inference.get("noise_scale", 0.667)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_w=float(inference.get("noise_w", 0.8)),
            speakers=int(config.get("num_speakers", 1)),
        )


def config_path(model: Path) -> Path:
    """`voice.onnx` -> `voice.onnx.json`, piper's convention."""
    return model.with_name(model.name + ".json")


class PiperVoice:
    """One loaded voice. `synthesize` is safe to call from one thread at a time."""

    def __init__(self, model: Path) -> None:
        self.config = VoiceConfig.load(config_path(model))
        for symbol in (BOS, EOS, PAD):
            if symbol not in self.config.phoneme_ids:
                raise ValueError(f"the voice's phoneme map has no {symbol!r}")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        self._session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._text = text_processor(self.config.language)
        self.phonemes("Ready.")  # gruut loads its tagger and guesser on first use

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def phonemes(self, text: str) -> list[str]:
        """Each sentence of `text` as espeak-style IPA, e.g. "həlˈoʊ wˈɜːld."."""
        result = []
        graph, root = self._text(text, lang=self.config.language)
        for sentence in self._text.sentences(graph, root):
            spoken = "".join(_sentence_phonemes(sentence))
            if spoken.strip(SILENT):
                result.append(spoken.strip())
        return result

    def ids(self, phonemes: str) -> list[int]:
        """Phoneme ids as piper's training made them; symbols the voice lacks are left out."""
        known = self.config.phoneme_ids
        ids = [*known[BOS], *known[PAD]]
        for symbol in phonemes:
            if symbol in known:
                ids += [*known[symbol], *known[PAD]]
        return ids + known[EOS]

    def synthesize(self, text: str, speed: float = 1.0) -> Iterator[bytes]:
        """16-bit mono PCM at `sample_rate`, one piece a sentence; `speed` 2.0 is twice as
        fast (the voice's length scale divided by it)."""
        for phonemes in self.phonemes(text):
            yield _to_int16(self._infer(self.ids(phonemes), speed))

    def _infer(self, ids: list[int], speed: float = 1.0) -> np.ndarray:
        config = self.config
        feeds: dict[str, Any] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(
                [config.noise_scale, config.length_scale / speed, config.noise_w],
                dtype=np.float32,
            ),
        }
        if "sid" in self._inputs:
            feeds["sid"] = np.array([0], dtype=np.int64)
        audio = self._session.run(None, feeds)[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)


def text_processor(language: str) -> TextProcessor:
    """gruut's espeak-style phonemes for `language`, its lexicon held in memory with an index.

    The lexicon database gruut ships has no index on its words, so every look-up reads the
    whole table (about 100 ms a sentence); the indexed copy answers at once. The connection
    may be used from any thread: the engine lets one thread at a time synthesise.
    """
    lang_dir = find_lang_dir(language)
    lexicon = lang_dir / "espeak" / "lexicon.db" if lang_dir else None
    if lexicon is None or not lexicon.is_file():
        raise ValueError(f"gruut has no espeak phonemes for the language {language!r}")
    phonemizer = SqlitePhonemizer(
        db_conn=_indexed_copy(lexicon),
        word_transform_funcs=[  # as gruut looks up a word it does not find as written
            str.lower,
            remove_non_word_chars,
            lambda word: remove_non_word_chars(word.lower()),
        ],
    )
    return TextProcessor(default_lang=language, model_prefix="espeak", lookup_phonemes=phonemizer)


def _indexed_copy(path: Path) -> sqlite3.Connection:
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        source.backup(memory)
    finally:
        source.close()
    memory.execute("CREATE INDEX word_phonemes_word ON word_phonemes (word)")
    return memory


def _sentence_phonemes(sentence: Any) -> Iterator[str]:
    """Words' phonemes joined by spaces, with the punctuation that ends a clause kept."""
    first = True
    for word in sentence:
        if word.is_break:
            if word.text in PUNCTUATION:
                yield word.text
            else:
                yield MAJOR_BREAK if word.is_major_break else MINOR_BREAK
        elif word.phonemes:
            yield ("" if first else " ") + "".join(word.phonemes)
            first = False


def _to_int16(audio: np.ndarray) -> bytes:
    """Float audio scaled to the full 16-bit range, as piper does; near silence stays quiet."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    scaled = audio * (32767 / max(0.01, peak))
    return np.clip(scaled, -32767, 32767).astype(np.int16).tobytes()
