"""A small per-speaker jitter buffer: RTP packets back in sequence order.

UDP may reorder, duplicate or lose packets. Packets that arrive in order are released at once
(no added latency); when one is missing the buffer holds what comes after it for up to `depth`
packets (4 × 20 ms by default) and then gives up on the gap. Duplicates and packets older than
what was already released are dropped. Sequence numbers are 16 bits and wrap around.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

SEQ_MODULO = 1 << 16
DEFAULT_DEPTH = 4
# A packet this far behind or ahead of the stream is a sender restart, not jitter.
RESTART_DISTANCE = 1_000


def seq_distance(seq: int, reference: int) -> int:
    """How far `seq` is ahead of `reference` (negative when behind), across the wrap-around."""
    diff = (seq - reference) % SEQ_MODULO
    return diff - SEQ_MODULO if diff >= SEQ_MODULO // 2 else diff


@dataclass
class JitterStats:
    released: int = 0
    duplicates: int = 0
    late: int = 0
    lost: int = 0


class JitterBuffer:
    """Reorders one SSRC's packets by sequence number. Not thread-safe: one per speaker."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self.depth = depth
        self.stats = JitterStats()
        self._next: int | None = None
        self._held: dict[int, bytes] = {}

    def push(self, seq: int, payload: bytes) -> list[bytes]:
        """Add a packet; return the payloads that are now ready, in order."""
        if self._next is None:
            self._next = seq
        distance = seq_distance(seq, self._next)
        if abs(distance) >= RESTART_DISTANCE:
            released = self.flush()
            self._next = seq
            return released + self.push(seq, payload)
        if distance < 0:
            self.stats.late += 1
            return []
        if seq in self._held:
            self.stats.duplicates += 1
            return []
        self._held[seq] = payload
        return self._release(force=False)

    def flush(self) -> list[bytes]:
        """Release everything held, skipping gaps (the speaker stopped or left)."""
        released = self._release(force=True)
        return released

    @property
    def held(self) -> int:
        return len(self._held)

    def _release(self, *, force: bool) -> list[bytes]:
        out: list[bytes] = []
        while self._held and self._next is not None:
            if self._next not in self._held:
                if not force and len(self._held) <= self.depth:
                    break
                self._skip_to_oldest()
            out.append(self._held.pop(self._next))
            self._next = (self._next + 1) % SEQ_MODULO
        self.stats.released += len(out)
        return out

    def _skip_to_oldest(self) -> None:
        assert self._next is not None
        reference = self._next
        oldest = min(self._held, key=lambda s: seq_distance(s, reference))
        self.stats.lost += seq_distance(oldest, reference)
        self._next = oldest
