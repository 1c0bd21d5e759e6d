"""Small text helpers shared by cogs and services (no Discord import)."""

from __future__ import annotations

DISCORD_LIMIT = 2000


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Split text into chunks of at most `limit` characters, only at line ends.

    A chunk ends at a paragraph break when one fills at least half of it, else at the last
    line break that fits. Only a single line longer than the limit is cut inside: at its
    last space that fits, else hard. Code fences that a cut leaves open are closed and
    reopened.
    """
    if limit < 20:
        raise ValueError("limit too small")
    chunks: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        budget = limit - 4  # room to close an open code fence
        end, start = _cut(rest, budget)
        chunk, rest = rest[:end].rstrip(), rest[start:].lstrip("\n")
        if chunk.count("```") % 2:
            chunk += "\n```"
            rest = "```\n" + rest
        if chunk:
            chunks.append(chunk)
    if rest:
        chunks.append(rest)
    return chunks


def _cut(text: str, budget: int) -> tuple[int, int]:
    """Where the first chunk (at most `budget` characters) ends, and where the rest starts."""
    lead = _fence_line(text, budget)  # an opening fence line is never a chunk of its own
    window = text[: budget + 1]  # a break right after the budget still ends a full chunk
    paragraph = window.rfind("\n\n", lead)
    if paragraph >= max(budget // 2, lead + 1):
        return paragraph, paragraph + 2
    line = window.rfind("\n", lead)
    if line > lead:
        return line, line + 1
    space = window.rfind(" ", lead, budget + 1)  # the first line alone is too long
    if space > lead:
        return space, space + 1
    return budget, budget


def _fence_line(text: str, budget: int) -> int:
    """The length of a code fence's opening line that `text` starts with, else 0."""
    if not text.startswith("```"):
        return 0
    newline = text.find("\n")
    return newline + 1 if 0 < newline < budget // 2 else 0


MB = 1024 * 1024  # messages say "MB" for MiB, as Discord's upload limits do


def human_size(num_bytes: int) -> str:
    """12.3 MB, or 10 MB for a whole number."""
    value = num_bytes / MB
    return f"{value:.0f} MB" if value == int(value) else f"{value:.1f} MB"


def unencodable(text: str) -> str | None:
    """The first character of `text` that UTF-8 cannot store, as an escape like "\\ud83d"
    (a lone surrogate: half of a character, as a JSON escape can make); None if there is none.
    Such a character breaks files, the database and Discord, so user input holding one is
    refused where it comes in."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return None


def unencodable_problem(what: str, text: str) -> str | None:
    """Why `text` (called `what` in the message) can't be stored, or None when it can."""
    found = unencodable(text)
    if found is None:
        return None
    return (
        f"the {what} holds {found}, half of a character (a lone surrogate); "
        "remove it or write the whole character"
    )
