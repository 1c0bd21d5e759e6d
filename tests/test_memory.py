"""glibc's malloc tuned at start, and freed memory given back after engine work (bot/memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.memory import EngineWork

PROBE = "from bot.memory import tune_malloc; print(' '.join(tune_malloc()) or '-')"
SETTINGS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")


def run_probe(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in SETTINGS} | env
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_arenas_and_the_mmap_threshold_are_set_at_start() -> None:
    assert run_probe() == "MALLOC_ARENA_MAX MALLOC_MMAP_THRESHOLD_"


def test_an_operators_own_settings_win() -> None:
    assert run_probe(MALLOC_ARENA_MAX="4") == "MALLOC_MMAP_THRESHOLD_"
    assert run_probe(MALLOC_MMAP_THRESHOLD_="65536") == "MALLOC_ARENA_MAX"


def test_freed_memory_goes_back_to_the_system() -> None:
    probe = (
        "from bot.memory import release_free_memory\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS:'): return int(line.split()[1]) // 1024\n"
        # 200 MB on the heap (blocks under the mmap size)
        "blocks = [bytearray(100_000) for _ in range(2000)]\n"
        "keep = blocks[-1:]\n"
        "del blocks\n"
        "before = rss()\n"
        "print(release_free_memory(), before - rss())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    released, freed_mb = done.stdout.split()
    assert released == "True"
    assert int(freed_mb) > 100


def test_memory_is_released_when_the_last_engine_call_ends() -> None:
    releases: list[int] = []
    work = EngineWork(release=lambda: releases.append(work.running))
    inner_saw: list[int] = []

    def outer() -> str:
        inner_saw.append(len(releases))
        work.call(lambda: None)  # a second call while the first runs: no release yet
        inner_saw.append(len(releases))
        return "done"

    assert work.call(outer) == "done"
    assert inner_saw == [0, 0]
    assert releases == [0]  # once, after the last call, with nothing running


def test_a_failing_engine_call_still_releases() -> None:
    work = EngineWork(release=lambda: None)

    def broken() -> None:
        raise ValueError("engine broke")

    with pytest.raises(ValueError, match="engine broke"):
        work.call(broken)
    assert work.releases == 1
    assert work.running == 0
