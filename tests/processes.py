"""Small helpers shared by the test servers (tests/postgres.py, tests/redis_server.py,
tests/prometheus_server.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

OWNER_FILE = "owner.pid"  # the test run that started the server
SERVER_FILE = "server.pid"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int) -> bool:
    """Whether a process with this id exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def server_folder(prefix: str) -> Path:
    """A new temporary folder for a server, marked with this test run's pid."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / OWNER_FILE).write_text(str(os.getpid()))
    return folder


def stop_orphans(prefix: str) -> None:
    """Kill and remove the servers (their pid in `server.pid`) of test runs that were killed
    before their teardown: folders `prefix*` whose owner is gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
            server = int((folder / SERVER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not alive(owner):
            if alive(server):
                os.kill(server, signal.SIGKILL)
            shutil.rmtree(folder, ignore_errors=True)
