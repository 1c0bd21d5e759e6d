"""Rules that turn a chat message into text to speak."""

from __future__ import annotations

from typing import Any

import pytest

from bot.services.voice.spoken_text import CUT_NOTICE, clean_for_speech

USERS = {123: "Alice", 456: "Bob"}
ROLES = {7: "Moderators"}
CHANNELS = {9: "general"}


def clean(text: str, max_chars: int = 300, **options: Any) -> str | None:
    return clean_for_speech(
        text,
        prefix="!",
        max_chars=max_chars,
        users=USERS,
        roles=ROLES,
        channels=CHANNELS,
        **options,
    )


def test_plain_text_is_kept() -> None:
    assert clean("Hello there, how are you?") == "Hello there, how are you?"


@pytest.mark.parametrize("text", ["!say hi", "  !join", "!"])
def test_commands_are_never_spoken(text: str) -> None:
    assert clean(text) is None


def test_other_prefix() -> None:
    assert clean_for_speech("?help me", prefix="?", max_chars=100) is None
    assert clean_for_speech("!help me", prefix="?", max_chars=100) == "!help me"


@pytest.mark.parametrize("text", ["", "   ", "!!!", "😀😀", "```py\nprint(1)\n```", "... ---"])
def test_nothing_speakable_gives_none(text: str) -> None:
    assert clean(text) is None


def test_user_mentions_become_names() -> None:
    assert clean("hi <@123> and <@!456>") == "hi Alice and Bob"


def test_unknown_user_is_someone() -> None:
    assert clean("ask <@999>") == "ask someone"


def test_role_and_channel_mentions() -> None:
    assert clean("<@&7> see <#9>") == "Moderators see general"
    assert clean("<@&8> see <#10>") == "a role see a channel"


def test_mappings_are_optional() -> None:
    assert clean_for_speech("hi <@1> in <#2>", prefix="!", max_chars=100) == (
        "hi someone in a channel"
    )


def test_everyone_and_here_lose_the_at() -> None:
    assert clean("@everyone look") == "everyone look"
    assert clean("@here now") == "here now"


@pytest.mark.parametrize(
    "text",
    [
        "look https://example.org/a/b?c=d",
        "look <https://example.org/page>",
        "look http://127.0.0.1:8080/x",
        "look www.example.org",
    ],
)
def test_links_become_a_link(text: str) -> None:
    assert clean(text) == "look a link"


def test_link_keeps_the_punctuation_after_it() -> None:
    assert clean("see https://example.org/x. Then go.") == "see a link. Then go."


def test_markdown_link_keeps_its_label() -> None:
    assert clean("read [the docs](https://example.org/docs) now") == "read the docs now"


def test_custom_emoji_become_names() -> None:
    assert clean("nice <:thumbs_up:1234567890> <a:party:42>") == "nice thumbs up party"


def test_code_blocks_are_skipped() -> None:
    text = "before\n```python\nimport os\nos.remove('x')\n```\nafter"
    assert clean(text) == "before. after"


def test_unclosed_code_block_is_skipped_to_the_end() -> None:
    assert clean("look: ```x = 1\ny = 2") == "look:"


def test_inline_code_is_read_as_text() -> None:
    assert clean("run `pip install` first") == "run pip install first"


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("soooooooo good", "sooo good"),
        ("wow!!!!!!", "wow!!!"),
        ("hahahaha", "hahahaha"),
        ("aaa", "aaa"),
        ("1000000 people", "1000000 people"),
        ("wait.......", "wait..."),
    ],
)
def test_repeated_characters_are_capped(text: str, spoken: str) -> None:
    assert clean(text) == spoken


def test_markdown_markers_are_removed() -> None:
    assert clean("**bold** *it* __under__ ~~gone~~ ***both***") == "bold it under gone both"


def test_a_spoiler_is_never_read_only_named() -> None:
    assert clean("the end: ||he was the killer|| wow") == "the end: a spoiler wow"
    assert clean("||multi\nline secret||") == "a spoiler"
    assert clean("||secret||", language="fr-FR") == "un spoiler"


def test_a_code_block_is_skipped_or_described() -> None:
    text = "look:\n```py\nprint('hi')\n```\nneat"
    assert clean(text) == "look: neat"
    assert clean(text, describe_code=True) == "look: a code block. neat"
    assert clean("```only code```", describe_code=True) == "a code block."
    assert clean("```only code```", describe_code=True, language="de") == "ein Codeblock."


def test_snake_case_and_math_keep_their_characters() -> None:
    assert clean("set my_var to 2 * 3") == "set my_var to 2 * 3"


def test_quotes_headings_and_bullets_lose_their_markup() -> None:
    assert clean("> quoted\n# Title\n- item one\n- item two") == (
        "quoted. Title. item one. item two"
    )


def test_lines_are_joined_with_pauses() -> None:
    assert clean("first line\nsecond line!\n\nthird") == "first line. second line! third"


def test_slash_commands_and_timestamps() -> None:
    assert clean("use </ping:123> at <t:1700000000:R>") == "use ping at a time"


def test_whitespace_is_collapsed() -> None:
    assert clean("  lots   of \t space  ") == "lots of space"


def test_short_text_is_not_cut() -> None:
    text = "word " * 4
    assert clean(text.strip(), max_chars=19) == text.strip()


def test_long_text_is_cut_at_a_word_and_announced() -> None:
    text = " ".join(f"word{i}" for i in range(100))
    spoken = clean(text, max_chars=50)
    assert spoken is not None
    assert spoken.endswith(CUT_NOTICE)
    kept = spoken.removesuffix(CUT_NOTICE).strip()
    assert len(kept) <= 50
    assert text.startswith(kept)
    assert kept.split()[-1] in text.split()  # ends with a whole word


def test_cut_of_one_huge_word_is_hard() -> None:
    word = "abcdefghij" * 50
    spoken = clean(word, max_chars=40)
    assert spoken is not None
    assert spoken == f"{word[:40]} {CUT_NOTICE}"


def test_cut_applies_after_cleanup() -> None:
    # The link is long in the message but short once spoken: nothing is cut.
    text = "see https://example.org/" + "a" * 400 + " ok"
    assert clean(text, max_chars=30) == "see a link ok"


def test_markup_in_names_is_not_read_out() -> None:
    names = {1: "**Star**"}
    assert clean_for_speech("<@1> hi", prefix="!", max_chars=50, users=names) == "Star hi"
