"""Keep the process's memory to what it uses: glibc's malloc tuned, freed memory given back.

The bot recognizes and synthesizes speech on worker threads (`asyncio.to_thread`), and
whisper's working memory (100-200 MB per recognition) is made of many blocks of 1-30 MB.
Three glibc defaults made that memory stay (docs/BENCHMARKS.md, bench.listen):

- each thread that allocates gets its own malloc arena (up to 8 per core), and memory freed
  in one arena is not reused by the others: whisper's working set measured 270 MB with the
  default arenas against 120 MB with two. `tune_malloc` caps them at 2;
- blocks over the mmap threshold get their own mapping, returned the moment they are freed,
  but glibc raises the threshold (up to 32 MB) each time such a block is freed, so later
  tensors land in the heap, where the small blocks allocated meanwhile (the 20 ms audio
  frames of four speakers) pin them: the heap grows. `tune_malloc` fixes the threshold at
  1 MB (whisper on 8 clips of 30 s, 2 at a time: highest RSS 344 MB against 429-622 MB,
  the same speed);
- memory freed in the heap is kept for the next allocation instead of going back to the
  system, so an idle bot would stay at its busiest size. `engine_call` runs an engine's
  blocking call and, when the last engine call running in the process ends, gives the free
  pages back (`malloc_trim`, about 3 ms, on that engine's thread, never the event loop).

An operator's own `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` in the environment wins
(glibc reads them at start). Elsewhere than glibc these do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
ARENAS = 2
MMAP_THRESHOLD = 1 << 20

P = ParamSpec("P")
T = TypeVar("T")


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (loaded once), else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        log.debug("could not load the C library", exc_info=True)
        return None


def tune_malloc(arenas: int = ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> list[str]:
    """Cap the malloc arenas and fix the mmap threshold; call at start, before threads.
    Returns the environment names of the settings applied (those the operator left unset)."""
    libc = glibc()
    if libc is None:
        return []
    applied = []
    for name, option, value in (
        ("MALLOC_ARENA_MAX", M_ARENA_MAX, arenas),
        ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, mmap_threshold),
    ):
        if name not in os.environ and libc.mallopt(option, value):
            applied.append(name)
    return applied


def release_free_memory() -> bool:
    """Return the heap's free pages to the system (glibc's `malloc_trim`). Blocking, a few
    ms; True if any memory was released. Does nothing elsewhere than glibc."""
    libc = glibc()
    if libc is None:
        return False
    try:
        return bool(libc.malloc_trim(0))
    except AttributeError:
        return False


class EngineWork:
    """Counts the engine calls running in the process; the last one to end releases memory."""

    def __init__(self, release: Callable[[], object] = release_free_memory) -> None:
        self._release = release
        self._lock = threading.Lock()
        self._running = 0
        self.releases = 0

    def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`function(*args, **kwargs)` on this thread, counted as engine work."""
        with self._lock:
            self._running += 1
        try:
            return function(*args, **kwargs)
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self.releases += 1
                self._release()

    @property
    def running(self) -> int:
        return self._running


_work = EngineWork()


def engine_call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a speech engine's blocking call (on a worker thread); memory is given back when
    no other engine call is running (see the module docstring)."""
    return _work.call(function, *args, **kwargs)
