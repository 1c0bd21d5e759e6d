"""A real `python -m bot worker` subprocess for tests, with its log kept for assertions.

worker = Worker(env)   # returns once it says "worker ready"; worker.log() is what it printed
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "worker"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        ready = threading.Event()
        # Read its output to the end in a thread: a full pipe would stop the worker.
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        ready.wait()
        if self.process.poll() is not None and not any("worker ready" in x for x in self.lines):
            raise AssertionError(f"the worker did not start: {''.join(self.lines[-20:])}")

    def _read(self, ready: threading.Event) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "worker ready" in line:
                ready.set()
        ready.set()

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
