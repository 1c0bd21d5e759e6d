"""The sandbox console left idle for three minutes: heartbeats only, and no warning about them.

Takes 3 minutes of real time on purpose: the gateway heartbeats every 41.25 s, and the
"Can't keep up, shard ID None websocket is 41.3s behind" warning came with those heartbeats.
tests/sandbox/test_gateway_heartbeat.py checks the same thing in seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.test_console import console

IDLE_SECONDS = 180
# discord.py's keep-alive warnings: an ACK measured late, a blocked loop, a silent gateway.
HEARTBEAT_WARNINGS = ("Can't keep up", "heartbeat blocked", "stopped responding")


def test_an_idle_console_keeps_up_and_still_answers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = console(data)
    assert proc.stdin is not None
    time.sleep(IDLE_SECONDS)  # stdin stays open: a user who has not typed anything yet
    assert proc.poll() is None, "the console stopped while idle"
    out, _ = proc.communicate("!hi\n", timeout=120)  # then end of input, like Ctrl-D
    log = (data / "logs" / "bot.log").read_text(encoding="utf-8")
    assert proc.returncode == 0, out
    for warning in HEARTBEAT_WARNINGS:
        assert warning not in out, out
        assert warning not in log, log
    assert "bot: Hi owner! Type `!help` to see what I can do." in out
    assert out.rstrip().endswith("Bye.")
