"""Settings: a `.env` of any bytes, or of `NAME=value` lines with any values, and language
codes as typed after `!language`. Each loads or is reported as a `SettingsError` (a
`ValueError` for a language code, which the command turns into one clear reply)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from bot.config import Settings, SettingsError, load_settings, parse_language, setting_docs
from bot.services.common.text import unencodable
from bot.services.voice.synthesis import gtts_language
from tests.fuzz.contract import outcome
from tests.fuzz.strategies import encode, mutated, nasty, text

NAMES = [name for name, _, _ in setting_docs()]
line = st.builds(
    "{}{}{}".format,
    st.one_of(st.sampled_from(NAMES), text),
    st.sampled_from(["=", " = ", '="', "='", ": ", "="]),
    st.one_of(text, nasty, st.sampled_from(["0", "-1", "1e9", "nan", "inf", "１２", "²"])),
)
env_text = st.lists(st.one_of(line, line, line, st.sampled_from(["#", "export A=1", "${X}"])))
env_bytes = st.one_of(
    env_text.map(lambda lines: encode("\n".join(lines))),
    env_text.map(lambda lines: encode("\n".join(lines))).flatmap(mutated),
    st.binary(max_size=300),
)


def load(data: bytes) -> Settings | SettingsError:
    with tempfile.TemporaryDirectory() as folder:
        env = Path(folder) / ".env"
        env.write_bytes(data)
        try:
            return load_settings({}, env_file=env)
        except SettingsError as exc:
            return exc


@given(env_bytes)
def test_load_settings_from_any_env_file(data: bytes) -> None:
    loaded = outcome(load, data)
    if isinstance(loaded, SettingsError):
        assert loaded.problems
        for problem in loaded.problems:
            assert problem.strip() and "\n" not in problem and len(problem) < 400
    else:
        assert isinstance(loaded, Settings)
        assert "\x00" not in str(loaded.data_dir)


def parse_or_refuse(raw: str) -> str | ValueError:
    try:
        return parse_language(raw)
    except ValueError as exc:
        return exc


@example("ελλ")  # letters, but no language code: once accepted
@given(st.one_of(text, st.from_regex(r"[a-zA-Z]{2,3}([-_][a-zA-Z0-9]{2,8}){0,2}", fullmatch=True)))
def test_language_codes(raw: str) -> None:
    code = outcome(parse_or_refuse, raw)
    if isinstance(code, str):
        assert code.isascii() and unencodable(code) is None
        assert gtts_language(code)
