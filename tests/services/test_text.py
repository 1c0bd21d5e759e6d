"""split_message cuts only at line ends (a lone overlong line excepted) and keeps fences whole."""

from __future__ import annotations

import random

import pytest

from bot.services.common.text import human_size, split_message


def help_like(commands: int = 40) -> str:
    """Lines like `!help`'s: long, full of spaces, each ending in an example."""
    lines = ["**Commands**"]
    for number in range(commands):
        if number % 8 == 0:
            lines.append(f"__Section {number // 8}__")
        lines.append(
            f"`!command{number}` — Does thing number {number} for you and tells you about it. "
            f"Example: `!command{number} with some words`"
        )
    lines.append("Type `!help COMMAND` for details of one command.")
    return "\n".join(lines)


def test_split_message_respects_the_limit_and_keeps_everything() -> None:
    text = "\n\n".join(f"para {i} " + "x" * 300 for i in range(20))
    chunks = split_message(text, 2000)
    assert all(len(c) <= 2000 for c in chunks)
    assert "\n\n".join(chunks) == text  # every cut was at a paragraph break


def test_lines_are_never_cut_inside() -> None:
    text = help_like()
    assert len(text) > 2 * 2000
    chunks = split_message(text, 2000)
    assert len(chunks) >= 3
    assert all(len(c) <= 2000 for c in chunks)
    lines = text.splitlines()
    # Every line is whole in exactly one chunk, and the chunks keep the order.
    assert [line for chunk in chunks for line in chunk.splitlines()] == lines
    for line in lines:
        assert sum(line in chunk.splitlines() for chunk in chunks) == 1, line


def test_a_paragraph_break_is_preferred_to_a_later_line_break() -> None:
    first = "\n".join(f"line {i} " + "a" * 50 for i in range(20))  # about 1200 characters
    second = "\n".join(f"more {i} " + "b" * 50 for i in range(20))
    chunks = split_message(first + "\n\n" + second, 2000)
    assert chunks == [first, second]


def test_an_early_paragraph_break_does_not_make_a_tiny_chunk() -> None:
    text = "Title\n\n" + "\n".join(f"line {i} " + "c" * 60 for i in range(60))
    chunks = split_message(text, 2000)
    assert len(chunks[0]) > 1000
    assert chunks[0].startswith("Title\n\nline 0 ")


def test_only_a_line_longer_than_the_limit_is_cut_inside_at_a_space() -> None:
    long_line = " ".join(f"word{i}" for i in range(600))  # about 4800 characters
    text = "short line\n" + long_line + "\nlast line"
    chunks = split_message(text, 2000)
    assert chunks[0] == "short line"
    assert chunks[-1].endswith("\nlast line")
    assert all(len(c) <= 2000 for c in chunks)
    # The long line was cut between words, never inside one.
    words = [w for chunk in chunks for w in chunk.split()]
    assert words == text.split()


def test_split_message_cuts_a_long_word_and_closes_code_fences() -> None:
    chunks = split_message("```\n" + "y" * 5000 + "\n```", 2000)
    assert all(len(c) <= 2000 for c in chunks)
    assert all(c.count("```") % 2 == 0 for c in chunks)
    assert "".join(c.replace("```", "").replace("\n", "") for c in chunks) == "y" * 5000


def test_a_code_block_split_at_lines_is_closed_and_reopened() -> None:
    code = "\n".join(f"    print({i})  # a line of code" for i in range(150))
    chunks = split_message("Here:\n```python\n" + code + "\n```\nDone.", 2000)
    assert len(chunks) >= 3
    assert all(len(c) <= 2000 for c in chunks)
    assert all(c.count("```") % 2 == 0 for c in chunks)
    code_lines = [
        line for chunk in chunks for line in chunk.splitlines() if line.startswith("    print(")
    ]
    assert code_lines == code.splitlines()  # indentation kept, no line cut
    assert chunks[-1].endswith("```\nDone.")


@pytest.mark.parametrize("seed", range(30))
def test_random_texts_keep_every_word_fences_and_the_limit(seed: int) -> None:
    rng = random.Random(seed)
    words = ["word", "x" * 70, "", "longer words here", "a"]
    lines: list[str] = []
    for _ in range(rng.randint(1, 120)):
        if rng.random() < 0.1:
            lines += ["```", *[x for x in lines[-3:] if x != "```"], "```"]  # a code block
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(0, 40))))
    text = "\n".join(lines)
    limit = rng.choice([20, 50, 200, 2000])
    chunks = split_message(text, limit)
    assert all(0 < len(c) <= limit for c in chunks)
    assert all(c.count("```") % 2 == 0 for c in chunks)
    kept = "".join(c.replace("```", "") for c in chunks)
    assert "".join(kept.split()) == "".join(text.replace("```", "").split())


def test_short_text_is_one_chunk_and_helpers_format() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("   ") == []
    assert human_size(31 * 1024 * 1024) == "31 MB"
    assert human_size(1536 * 1024) == "1.5 MB"
