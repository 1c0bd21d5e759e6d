"""One server's messages waiting to be read aloud, taken in turns across authors.

Three people typing at once are heard in turns: the next turn is the oldest message of the
author read least recently. One person's backlog holds at
most `backlog_max` messages; older ones are dropped and counted, so the reader can say
"…and 4 more from alice". A turn says the author's name when the author changed, or after
`NAME_AGAIN_SECONDS` without reading.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

BACKLOG_MAX = 5  # messages waiting per person; the oldest are dropped past it
NAME_AGAIN_SECONDS = 120.0  # a person's name is said again after this long without reading


@dataclass
class Waiting:
    message_id: int
    author_id: int
    name: str
    text: str | None  # cleaned; None: only attachments
    attachments: tuple[str, ...]
    engine: str | None = None  # the author's voice, if they chose one
    voice: str | None = None
    speed: float = 1.0


@dataclass(frozen=True)
class Turn:
    """The next message to speak: `dropped` of its author's older ones were left out."""

    waiting: Waiting
    named: bool
    dropped: int


class Turns:
    """One server's waiting messages, taken in turns across authors.

    The next turn goes to the author who was read least recently (never read first), their
    oldest message; among those never read, the one whose message came first. So when alice
    is being read and bob and carol write, bob and carol are read before alice's next one.
    """

    def __init__(
        self, backlog_max: int = BACKLOG_MAX, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.backlog_max = backlog_max
        self._clock = clock
        self._lanes: dict[int, deque[Waiting]] = {}  # author -> their messages, oldest first
        self._arrived: dict[int, int] = {}  # message id -> arrival number
        self._served: dict[int, int] = {}  # author -> the turn number they were last read at
        self._count = 0  # arrivals and turns, numbered together
        self._dropped: dict[int, int] = {}
        self._last_author: int | None = None
        self._last_at = -math.inf

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def _number(self) -> int:
        self._count += 1
        return self._count

    def add(self, waiting: Waiting) -> bool:
        """Queue a message; False when it replaced the author's oldest (the count stayed)."""
        lane = self._lanes.setdefault(waiting.author_id, deque())
        lane.append(waiting)
        self._arrived[waiting.message_id] = self._number()
        if len(lane) > self.backlog_max:
            self._arrived.pop(lane.popleft().message_id, None)
            self._dropped[waiting.author_id] = self._dropped.get(waiting.author_id, 0) + 1
            return False
        return True

    def find(self, message_id: int) -> Waiting | None:
        for lane in self._lanes.values():
            for waiting in lane:
                if waiting.message_id == message_id:
                    return waiting
        return None

    def remove(self, message_id: int) -> bool:
        for author_id, lane in self._lanes.items():
            for waiting in lane:
                if waiting.message_id == message_id:
                    lane.remove(waiting)
                    self._arrived.pop(message_id, None)
                    if not lane:
                        del self._lanes[author_id]
                    return True
        return False

    def next(self, names: bool) -> Turn | None:
        """The oldest message of the author read least recently; None when nothing waits."""
        if not self._lanes:
            return None
        author_id = min(
            self._lanes,
            key=lambda a: (self._served.get(a, 0), self._arrived[self._lanes[a][0].message_id]),
        )
        lane = self._lanes[author_id]
        waiting = lane.popleft()
        self._arrived.pop(waiting.message_id, None)
        if not lane:
            del self._lanes[author_id]
        self._served[author_id] = self._number()
        dropped = self._dropped.pop(author_id, 0)
        now = self._clock()
        named = names and (
            author_id != self._last_author or now - self._last_at > NAME_AGAIN_SECONDS
        )
        self._last_author, self._last_at = author_id, now
        return Turn(waiting, named, dropped)

    def clear(self) -> int:
        count = len(self)
        self._lanes.clear()
        self._arrived.clear()
        self._dropped.clear()
        return count
