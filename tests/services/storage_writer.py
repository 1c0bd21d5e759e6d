"""Write feedback until killed, printing "ACK <id> <text>" after each acknowledged write.

Run by the SIGKILL durability test: `python -m tests.services.storage_writer DB_PATH_OR_URL`.
Several writers run at once, like users sending !feedback together.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.services.storage import Storage
from bot.services.tenancy.namespaces import namespace_for

WRITERS = 4
MAX_WRITES_EACH = 5000  # ends on its own if the test forgets to kill it


async def _writer(storage: Storage, writer: int) -> None:
    for n in range(MAX_WRITES_EACH):
        text = f"writer {writer} note {n}"
        feedback_id = await storage.add_feedback(
            1000 + writer, 42, 7, text, namespace=namespace_for(42, 1000 + writer)
        )
        sys.stdout.write(f"ACK {feedback_id} {text}\n")
        sys.stdout.flush()


async def main(location: str | Path) -> None:
    async with Storage(location) as storage:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        await asyncio.gather(*(_writer(storage, w) for w in range(WRITERS)))


if __name__ == "__main__":
    target = sys.argv[1]
    asyncio.run(main(target if "://" in target else Path(target)))
