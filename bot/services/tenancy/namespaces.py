"""Namespace names: whose data a request may touch (see tenants.py).

A namespace is a server's id (`"1100000000000000001"`), `"dm-<user id>"` for one user's
direct messages, or `"legacy"` for what an older install kept that belongs to no known server.
Its folder is `DATA_DIR/servers/<namespace>/`; its database rows carry the same name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bot.errors import InvalidInputError

SERVERS_DIR = "servers"
LEGACY = "legacy"
_NAMESPACE = re.compile(r"[1-9][0-9]{0,19}|dm-[1-9][0-9]{0,19}|legacy")
UNKNOWN_NAMESPACE = (
    "`{value}` is not a server. Give a server id, `dm-USERID` for a user's direct messages, "
    "or `legacy`."
)


def guild_namespace(guild_id: int) -> str:
    return str(guild_id)


def dm_namespace(user_id: int) -> str:
    return f"dm-{user_id}"


def namespace_for(guild_id: int | None, user_id: int) -> str:
    """The namespace of a message: its server's, or the author's DMs'."""
    return guild_namespace(guild_id) if guild_id is not None else dm_namespace(user_id)


def parse_namespace(value: str) -> str:
    """A namespace named by a user (an owner's `--server`); InvalidInputError otherwise."""
    text = value.strip().lower()
    if not _NAMESPACE.fullmatch(text):
        raise InvalidInputError(UNKNOWN_NAMESPACE.format(value=value.strip()[:40]))
    return text


def namespace_dir(data_dir: Path, namespace: str) -> Path:
    """The namespace's folder. The name is checked, so it can never point elsewhere."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"not a namespace: {namespace!r}")
    return Path(data_dir) / SERVERS_DIR / namespace


def known_namespaces(data_dir: Path) -> list[str]:
    """Namespaces that have a folder, sorted (servers by id, then DMs, then legacy)."""
    root = Path(data_dir) / SERVERS_DIR
    if not root.is_dir():
        return []
    names = [e.name for e in root.iterdir() if e.is_dir() and _NAMESPACE.fullmatch(e.name)]
    return sorted(names, key=lambda n: (not n.isdigit(), n.startswith(LEGACY), len(n), n))


@dataclass(frozen=True)
class Scope:
    """Whose data a request may touch: one namespace, or every one (`everywhere`), which only
    the bot's owners get, and only when they ask for it explicitly."""

    namespace: str
    everywhere: bool = False
