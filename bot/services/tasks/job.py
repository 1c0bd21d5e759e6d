"""A job: one piece of background work and what became of it, shown to users by its id.

`JobRunner` (jobs.py) runs jobs in its process pool, task runners (local.py, remote.py) run
them in this process or on workers, and the jobs table (jobstore.py) keeps them for `!job`
from any process.
"""

from __future__ import annotations

import re
import secrets
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.errors import UserFacingError

# "interrupted": its bot or worker stopped before it ended (only read back from the database).
JobStatus = Literal["queued", "running", "done", "failed", "interrupted"]

WORKER_DIED = "The worker process stopped unexpectedly (it may have run out of memory)."
INTERRUPTED = "Interrupted: the bot stopped while it ran. Start it again."
MAX_REASON_CHARS = 200
# Absolute paths (two or more components) in an error message; users must not see host paths.
_HOST_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/](?:[^\s'\"\\/]+[\\/])+[^\s'\"\\/]*")


def now() -> datetime:
    return datetime.now(UTC)


JOB_ID_BYTES = 4  # 8 hex digits: ids stay unique across the bot's processes and workers


def new_job_id() -> str:
    """A new job id. Every process of the bot makes its own and the jobs table is shared, so
    ids are wide enough (2^32) that two processes do not pick the same one (6 hex digits
    collide once in a few thousand jobs)."""
    return secrets.token_hex(JOB_ID_BYTES)


@dataclass
class Job:
    """One piece of work and what became of it. Times are UTC."""

    id: str
    kind: str
    key: str
    status: JobStatus = "queued"
    created_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: str | None = None
    namespace: str | None = None  # whose job it is (see services/tenancy/tenants.py)
    subject: str = ""  # what it works on, for people: a dataset's name
    requested_by: str | None = None  # the user who started it
    progress: float | None = None  # 0..1 while running, when the work can tell
    summary: str = ""  # one line for people: what a finished job made
    refused: bool = False  # it failed on input the user can fix (a UserFacingError)
    # Whether people see its id (`!job`): a transcription's is never shown, so the bot
    # records its row only where a worker needs it (tasks/local.py).
    shown: bool = True

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "interrupted")

    @property
    def duration(self) -> float | None:
        """Seconds of running: final once finished, so far while running, None while queued."""
        if self.started_at is None:
            return None
        end = self.finished_at or now()
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def waited(self) -> float | None:
        """Seconds spent queued before starting (None while still queued)."""
        if self.started_at is None:
            return None
        return max(0.0, (self.started_at - self.created_at).total_seconds())


def short_reason(exc: BaseException) -> str:
    """A one-line reason for a failed job that is safe to show: no traceback, no host path."""
    if isinstance(exc, BrokenProcessPool):
        return WORKER_DIED
    if isinstance(exc, UserFacingError):
        return exc.message
    lines = str(exc).strip().splitlines()
    text = _HOST_PATH.sub("<path>", lines[0]) if lines else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return reason
