"""Keep the process's memory to what it uses: fewer malloc arenas.

glibc gives each thread that allocates its own malloc arena (up to 8 per core), and memory
freed in one arena is not reused by the others. The bot recognizes and synthesizes speech on
worker threads (`asyncio.to_thread`), so each recognition could leave its working memory in
another arena: whisper's working set measured 270 MB with the default arenas against 120 MB
with two, and two recognitions at once cost 40 MB more against 2 MB (docs/BENCHMARKS.md,
bench.listen). Two arenas keep the threads from waiting on one lock.

An operator's own `MALLOC_ARENA_MAX` in the environment wins (glibc reads it at start).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # from glibc's malloc.h
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas`; call at start, before threads. True if set."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        log.debug("could not limit malloc arenas", exc_info=True)
        return False
