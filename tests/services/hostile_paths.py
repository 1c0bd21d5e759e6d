"""Hostile paths for !getfile and !archive: none may resolve, be read or be archived.

`make_hostile_tree(data_dir)` creates what the corpus refers to: symlinks out of the data
folder, into the database and `.env`, a loop, a FIFO and a socket, plus decoy files holding
`SECRET_MARKER` inside and next to the data folder. With the decoys in place a broken path
check would really leak something, so a test that only sees refusals proves the check works.
Used by tests/services/test_files.py and by the end-to-end tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SECRET_MARKER = "HOSTILE-SECRET-7f3a9c"

HOSTILE_PATHS: list[str] = [
    # Traversal, plain and Windows-style
    "..",
    "../",
    "./../",
    "../../etc/passwd",
    "../outside/secret.txt",
    "datasets/../../x",
    "datasets/../../outside/secret.txt",
    "datasets/../../../../../../etc/passwd",
    "datasets/./../../etc/shadow",
    "archives/../../outside/secret.txt",
    "..\\..\\windows\\win.ini",
    "datasets\\..\\..\\outside\\secret.txt",
    "datasets/..\\../outside/secret.txt",
    "....//....//etc/passwd",
    "...",
    "..;/outside/secret.txt",
    "datasets/....",
    # Absolute: posix, Windows drive, UNC, URL
    "/etc/passwd",
    "/",
    "//etc/passwd",
    "/dev/null",
    "/proc/self/environ",
    "\\etc\\passwd",
    "\\\\server\\share\\secret.txt",
    "C:\\Windows\\win.ini",
    "C:/Windows/win.ini",
    "c:secret.txt",
    "file:///etc/passwd",
    "datasets/smalltalk.csv::$DATA",
    # URL-encoded, single, double and triple
    "%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2f..%2foutside%2fsecret.txt",
    "..%5c..%5coutside%5csecret.txt",
    "%2fetc%2fpasswd",
    "datasets%2f..%2f..%2foutside%2fsecret.txt",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "%25252e%25252e/outside/secret.txt",
    "%2E%2E/%2E%2E/etc/passwd",
    "..%c0%af..%c0%afetc%c0%afpasswd",
    "%ef%bc%8e%ef%bc%8e/outside/secret.txt",
    "%00",
    "datasets/smalltalk.csv%00.png",
    "%2eenv",
    # Symlinks made by make_hostile_tree
    "link_out",
    "link_out/passwd",
    "link_dev",
    "link_secret",
    "link_secret_abs",
    "datasets/link_up",
    "datasets/link_up/outside/secret.txt",
    "datasets/dangling_out",
    "link_loop",
    "link_db",
    "link_env",
    "datasets/link_hidden.csv",
    "link_pipe",
    # Special files inside the data folder
    "pipe",
    "datasets/pipe.csv",
    "sock",
    # NUL bytes and control or format characters
    "datasets/smalltalk.csv\x00.png",
    "\x00",
    "datasets/\nsmalltalk.csv",
    "datasets/\x1b[31msmalltalk.csv",
    "datasets/\u202evsc.klatllams",
    "datasets/smalltalk.csv\u200b",
    # Very long
    "a" * 300,
    "datasets/" + "x" * 256,
    "/".join(["d" * 200] * 6),
    "datasets/" + "../" * 400 + "etc/passwd",
    # Unicode look-alikes of . / \
    "\u2024\u2024/\u2024\u2024/etc/passwd",
    "\uff0e\uff0e/\uff0e\uff0e/outside/secret.txt",
    "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc\uff0fpasswd",
    "\u2024\u2024\u2215\u2024\u2024\u2215outside\u2215secret.txt",
    "datasets\u2215..\u2215..\u2215outside",
    "\u2025/outside/secret.txt",
    "\ufe52\ufe52\uff3c\ufe52\ufe52\uff3csecret.txt",
    "\uff0eenv",
    "bot\uff0edb",
    "C\uff1a\\Windows\\win.ini",
    "\uff5eroot/x",
    # Secrets and hidden names
    ".env",
    ".ENV",
    "datasets/.env",
    "./.env",
    ".git/config",
    "datasets/.hidden.csv",
    # The database
    "bot.db",
    "bot.db-wal",
    "bot.db-shm",
    "BOT.DB",
    "./bot.db",
    "datasets/../bot.db",
    "datasets\\..\\bot.db",
    # Home directories and Windows devices
    "~root/x",
    "~/.ssh/id_rsa",
    "~",
    "CON",
    "datasets/nul.csv",
    # Empty
    "",
    "   ",
]


def make_hostile_tree(data_dir: Path) -> None:
    """Create the symlinks, special files and decoys that HOSTILE_PATHS refers to.

    Also writes `<data_dir>/../outside/secret.txt`. Keeps an existing bot.db.
    """
    data_dir = Path(data_dir)
    datasets = data_dir / "datasets"
    outside = data_dir.parent / "outside"
    for folder in (data_dir, datasets, outside, data_dir / ".git"):
        folder.mkdir(parents=True, exist_ok=True)

    secret = outside / "secret.txt"
    secret.write_text(f"outside {SECRET_MARKER}\n")
    (data_dir / ".env").write_text(f"DISCORD_TOKEN={SECRET_MARKER}\n")
    (data_dir / ".git" / "config").write_text(f"[core] {SECRET_MARKER}\n")
    (datasets / ".hidden.csv").write_text(f"text,reply\nhidden,{SECRET_MARKER}\n")
    if not (data_dir / "bot.db").exists():
        (data_dir / "bot.db").write_text(f"not really a database {SECRET_MARKER}\n")

    links = {
        data_dir / "link_out": "/etc",
        data_dir / "link_dev": "/dev/null",
        data_dir / "link_secret": "../outside/secret.txt",
        data_dir / "link_secret_abs": str(secret.resolve()),
        datasets / "link_up": "../..",
        datasets / "dangling_out": "/nonexistent-hostile-target/x",
        data_dir / "link_loop": "link_loop",
        data_dir / "link_db": "bot.db",
        data_dir / "link_env": ".env",
        datasets / "link_hidden.csv": ".hidden.csv",
        data_dir / "link_pipe": "pipe",
    }
    for link, target in links.items():
        if not link.is_symlink():
            link.symlink_to(target)

    for fifo in (data_dir / "pipe", datasets / "pipe.csv"):
        if not fifo.exists():
            os.mkfifo(fifo)
    _make_socket(data_dir, "sock")


def _make_socket(folder: Path, name: str) -> None:
    """Leave a Unix socket file behind (socket paths are limited to about 100 bytes)."""
    path = folder / name
    if path.exists():
        return
    if len(os.fsencode(path)) < 100:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(path))
        return
    # Bind by a relative name in a child process: changing our own cwd could disturb a bot
    # running in this process with a relative DATA_DIR.
    bind = f"import socket; socket.socket(socket.AF_UNIX).bind({name!r})"
    subprocess.run([sys.executable, "-c", bind], cwd=folder, check=True, timeout=30)
