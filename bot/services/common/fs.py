"""Files on the local disk: written atomically, and recognized when they change.

`atomic_write` writes to a temporary file in the same folder, flushes it, then replaces the
old one, so a crash leaves the old content or the new. `file_stamp` is what changes when a
file is replaced or rewritten, for caches keyed on a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_stamp(path: Path) -> tuple[Any, ...]:
    """What changes when a file is replaced or rewritten; () when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return ()
    return (st.st_mtime_ns, st.st_size, st.st_ino)
