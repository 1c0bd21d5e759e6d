"""The runner interface: `run(task, payload) -> result`, wherever the work runs.

A task is a name (`transcribe`, `train`) and a payload of plain JSON data. Bytes never travel
in the payload: the caller hands them to the runner as named `inputs`, and the task body
reads them with `ctx.input(name)`; what it makes it gives back with `ctx.output(name, data)`.
`LocalRunner` (local.py, the default) keeps them in memory and runs the body in this
process; `TaskiqRunner` (remote.py, with TASK_BROKER_URL) puts them in the shared blob store
under `jobs/<job id>/` in the job's namespace, and a worker on any machine
(`python -m bot worker`) runs the body. Services always call a runner and never ask which.

Results are dicts: `{"ok": True, ...}` or `{"ok": False, "error": "...", "type": "..."}`; a
failure is one clear message, raised again in the bot as the `UserFacingError` it was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.errors import UserFacingError
from bot.services.tasks.job import Job

JOB_PREFIX = "jobs/"
ProgressFn = Callable[[dict[str, Any]], Awaitable[None]]


def job_key(job_id: str, name: str) -> str:
    """Where a job's bytes live in the blob store (in the job's namespace)."""
    return f"{JOB_PREFIX}{job_id}/{name}"


class TaskFailedError(UserFacingError):
    """A task ended with an error meant for the user."""


class JobEndedError(UserFacingError):
    """The job of a running task has ended (its bot stopped waiting): the task stops."""


@dataclass
class TaskResult:
    value: dict[str, Any]
    outputs: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.value.get("ok"))


class Runner(Protocol):
    """Runs tasks for services; cogs and services don't know where."""

    async def run(
        self,
        task: str,
        payload: Mapping[str, Any],
        job: Job,
        *,
        inputs: Mapping[str, bytes] | None = None,
        on_progress: ProgressFn | None = None,
    ) -> TaskResult:
        """Run the task as `job` (recorded as queued, running, done or failed) and return
        its result; on_progress is awaited with what the task reports while it runs."""
        ...

    async def record(self, job: Job) -> None:
        """Save the job's state in the job store (a service ending a job after its task)."""
        ...

    async def warm_up(self) -> str | None:
        """Load what this process needs to run tasks (the speech engine named first), when
        it runs them itself; returns what it loaded."""
        ...

    async def close(self) -> None: ...


class TaskContext(Protocol):
    """What a task body gets besides its payload."""

    job_id: str
    namespace: str

    async def input(self, name: str) -> bytes: ...

    async def output(self, name: str, data: bytes) -> None: ...

    async def progress(self, meta: dict[str, Any]) -> None: ...

    async def fetch(self, url: str, max_bytes: int) -> bytes: ...

    @property
    def services(self) -> Any:
        """The process's `WorkServices` (speech, job pool)."""
        ...
