"""Small text helpers shared by cogs and services (no Discord import)."""

from __future__ import annotations

DISCORD_LIMIT = 2000


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Split text into chunks of at most `limit` characters.

    Splits at paragraph breaks, then line breaks, then spaces; a word longer than the
    limit is cut. Code fences that a cut leaves open are closed and reopened.
    """
    if limit < 20:
        raise ValueError("limit too small")
    chunks: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        budget = limit - 4  # room to close an open code fence
        cut = max(rest.rfind(sep, 0, budget) for sep in ("\n\n", "\n", " "))
        if cut <= budget // 2:
            cut = budget
        chunk, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if chunk.count("```") % 2:
            chunk += "\n```"
            rest = "```\n" + rest
        chunks.append(chunk)
    if rest:
        chunks.append(rest)
    return chunks


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
