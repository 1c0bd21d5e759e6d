"""JobRunner: real worker processes, per-key queues, crashes, callbacks and shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import operator
import os
import re
import time
import weakref
from concurrent.futures.process import BrokenProcessPool

import pytest

from bot.errors import InvalidInputError, NotFoundError, UserFacingError
from bot.services.tasks.job import WORKER_DIED, Job, short_reason
from bot.services.tasks.jobs import SHUTTING_DOWN, JobRunner

# -- work for the workers (module level, so a spawned worker can import it) ----------------


def add(a: int, b: int) -> int:
    return a + b


def sleep_then(value: str, seconds: float) -> str:
    time.sleep(seconds)
    return value


def fail(message: str) -> None:
    raise ValueError(message)


def fail_for_user() -> None:
    raise InvalidInputError("Line 3: the label is empty.")


def die() -> None:
    os._exit(13)


def worker_pid() -> int:
    return os.getpid()


class Payload:
    """A job input that can be weakly referenced, to see who keeps it alive."""

    def __init__(self, size: int) -> None:
        self.data = list(range(size))


def payload_size(payload: Payload) -> int:
    return len(payload.data)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
async def runner():
    jobs = JobRunner(max_workers=1, idle_seconds=None)
    yield jobs
    await jobs.close(timeout=5)


@pytest.fixture
async def runner2():
    jobs = JobRunner(max_workers=2, idle_seconds=None)
    yield jobs
    await jobs.close(timeout=5)


# -- tests ---------------------------------------------------------------------------------


async def test_a_job_runs_in_another_process_and_reports_its_result(runner: JobRunner) -> None:
    seen: list[Job] = []

    async def on_done(job: Job) -> None:
        seen.append(job)

    job = runner.submit("sum", "k", add, 2, 3, on_done=on_done)
    assert re.fullmatch(r"[0-9a-f]{8}", job.id)
    assert job.status == "running"  # a free worker and a free key: it starts at once
    assert job.kind == "sum" and job.key == "k"

    finished = await runner.wait(job.id)
    assert finished is job
    assert job.status == "done" and job.result == 5 and job.error is None
    assert job.created_at <= job.started_at <= job.finished_at
    assert job.created_at.utcoffset() is not None and job.created_at.utcoffset().seconds == 0
    assert job.duration is not None and job.duration >= 0
    assert seen == [job]  # on_done ran before wait() returned

    assert await runner.run("pid", "k", worker_pid) != os.getpid()


async def test_same_key_queues_until_the_first_job_ends(runner2: JobRunner) -> None:
    first = runner2.submit("train", "train:smalltalk", sleep_then, "first", 0.4)
    second = runner2.submit("train", "train:smalltalk", sleep_then, "second", 0.01)
    assert first.status == "running"
    assert second.status == "queued" and second.started_at is None and second.duration is None

    await runner2.wait(second.id)
    assert (first.result, second.result) == ("first", "second")
    assert second.started_at >= first.finished_at
    assert second.waited is not None and second.waited > 0


async def test_different_keys_run_side_by_side_up_to_max_workers(runner2: JobRunner) -> None:
    a = runner2.submit("train", "train:a", sleep_then, "a", 0.3)
    b = runner2.submit("train", "train:b", sleep_then, "b", 0.3)
    c = runner2.submit("train", "train:c", sleep_then, "c", 0.01)
    assert (a.status, b.status, c.status) == ("running", "running", "queued")
    await asyncio.gather(*(runner2.wait(j.id) for j in (a, b, c)))
    assert b.started_at < a.finished_at
    assert c.started_at >= min(a.finished_at, b.finished_at)
    assert [j.result for j in (a, b, c)] == ["a", "b", "c"]


async def test_one_worker_runs_one_job_at_a_time(runner: JobRunner) -> None:
    a = runner.submit("x", "a", sleep_then, "a", 0.2)
    b = runner.submit("x", "b", sleep_then, "b", 0.01)
    assert (a.status, b.status) == ("running", "queued")
    await runner.wait(b.id)
    assert b.started_at >= a.finished_at


async def test_an_exception_fails_the_job_with_a_short_safe_reason(
    runner: JobRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.services.tasks.jobs")
    job = runner.submit("x", "k", fail, "cannot read /home/someone/secret/data.csv\nmore")
    await runner.wait(job.id)
    assert job.status == "failed" and job.result is None
    assert job.error == "ValueError: cannot read <path>"
    assert "secret" not in job.error
    assert any(r.exc_info for r in caplog.records)  # the traceback goes to the log

    user_error = runner.submit("x", "k", fail_for_user)
    await runner.wait(user_error.id)
    assert user_error.error == "Line 3: the label is empty."

    after = runner.submit("x", "k", add, 1, 1)
    await runner.wait(after.id)
    assert after.status == "done" and after.result == 2


async def test_a_killed_worker_fails_its_job_and_the_runner_recovers(runner: JobRunner) -> None:
    pid_before = await runner.run("pid", "k", worker_pid)
    crashed = runner.submit("x", "k", die)
    queued = runner.submit("x", "k", add, 20, 22)
    await runner.wait(queued.id)
    assert crashed.status == "failed" and crashed.error == WORKER_DIED
    assert queued.status == "done" and queued.result == 42
    assert await runner.run("pid", "k", worker_pid) != pid_before

    with pytest.raises(BrokenProcessPool):
        await runner.run("x", "k", die)
    assert await runner.run("x", "k", add, 1, 2) == 3


async def test_run_raises_the_workers_exception(runner: JobRunner) -> None:
    with pytest.raises(ValueError, match="boom"):
        await runner.run("x", "k", fail, "boom")
    with pytest.raises(InvalidInputError):
        await runner.run("x", "k", fail_for_user)


async def test_a_failing_on_done_is_logged_and_does_not_hang(
    runner: JobRunner, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(job: Job) -> None:
        raise RuntimeError("callback bug")

    job = runner.submit("x", "k", add, 1, 2, on_done=broken)
    await asyncio.wait_for(runner.wait(job.id), 30)
    assert job.status == "done"
    assert any("on_done callback" in r.getMessage() for r in caplog.records)
    assert (await runner.wait(runner.submit("x", "k", add, 2, 2).id)).result == 4


async def test_on_done_sees_failures_too(runner: JobRunner) -> None:
    seen: list[tuple[str, str | None]] = []

    async def on_done(job: Job) -> None:
        seen.append((job.status, job.error))

    await runner.wait(runner.submit("x", "k", fail, "nope", on_done=on_done).id)
    assert seen == [("failed", "ValueError: nope")]


async def test_get_list_and_unknown_ids(runner: JobRunner) -> None:
    jobs = [runner.submit("x", "k", add, i, 0) for i in range(3)]
    await runner.wait(jobs[-1].id)
    assert runner.list() == list(reversed(jobs))
    assert runner.list(limit=2) == [jobs[2], jobs[1]]
    assert runner.get(jobs[0].id.upper()) is jobs[0]
    assert runner.get(f" #{jobs[0].id} ") is jobs[0]
    assert runner.get("zzzzzz") is None
    with pytest.raises(NotFoundError, match="Job zzzzzz not found."):
        await runner.wait("zzzzzz")


async def test_finished_jobs_do_not_keep_their_input_alive(runner: JobRunner) -> None:
    payload = Payload(1000)
    alive = weakref.ref(payload)
    job = runner.submit("x", "k", payload_size, payload)
    del payload
    await runner.wait(job.id)
    assert job.result == 1000
    # The executor's management thread lets go of a work item just after its future resolves.
    for _ in range(100):
        gc.collect()
        if alive() is None:
            break
        await asyncio.sleep(0.05)
    assert alive() is None
    assert runner.get(job.id) is job  # the job itself stays in the history


async def test_history_is_bounded() -> None:
    jobs = JobRunner(idle_seconds=None, history=3)
    try:
        made = [jobs.submit("x", "k", add, i, 0) for i in range(5)]
        await jobs.wait(made[-1].id)
        jobs.submit("x", "k", add, 9, 0)  # forgetting happens on submit
        assert len(jobs.list(limit=100)) == 3
        assert jobs.get(made[0].id) is None
    finally:
        await jobs.close()


async def test_close_fails_queued_jobs_and_stops_running_ones() -> None:
    jobs = JobRunner(idle_seconds=None)
    seen: list[str] = []

    async def on_done(job: Job) -> None:
        seen.append(f"{job.id}:{job.status}")

    running = jobs.submit("x", "k", sleep_then, "slow", 30, on_done=on_done)
    queued = jobs.submit("x", "k", add, 1, 1, on_done=on_done)
    await asyncio.sleep(0.1)
    await asyncio.wait_for(jobs.close(timeout=0.5), 20)
    assert queued.status == "failed" and queued.error == SHUTTING_DOWN
    assert running.status == "failed" and running.error == WORKER_DIED
    assert sorted(seen) == sorted([f"{running.id}:failed", f"{queued.id}:failed"])
    with pytest.raises(UserFacingError, match=SHUTTING_DOWN):
        jobs.submit("x", "k", add, 1, 1)


async def test_an_idle_pool_is_shut_down_and_restarted_on_demand() -> None:
    jobs = JobRunner(idle_seconds=0.05)
    try:
        pid = await jobs.run("pid", "k", worker_pid)
        for _ in range(200):
            if jobs._pool is None and not _alive(pid):
                break
            await asyncio.sleep(0.05)
        assert jobs._pool is None
        assert not _alive(pid)
        assert await jobs.run("x", "k", add, 3, 4) == 7
    finally:
        await jobs.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_short_reason_hides_paths_and_tracebacks() -> None:
    assert short_reason(BrokenProcessPool("x")) == WORKER_DIED
    assert short_reason(KeyError()) == "KeyError"
    assert (
        short_reason(OSError("open C:\\Users\\me\\x.txt failed")) == "OSError: open <path> failed"
    )
    assert len(short_reason(ValueError("x" * 1000))) == 200
    assert short_reason(ValueError("ratio 1/2 is fine")) == "ValueError: ratio 1/2 is fine"


async def test_results_wanted_by_a_service_stay_out_of_the_job_list() -> None:
    runner = JobRunner(max_workers=1)
    try:
        assert await runner.run("transcribe", "sphinx", operator.add, 2, 3) == 5
        assert runner.list() == []
    finally:
        await runner.close()


def modules_loaded(names: tuple[str, ...]) -> list[bool]:
    import sys

    return [name in sys.modules for name in names]


async def test_forkserver_workers_start_with_the_preloaded_modules() -> None:
    preload = ("tests.fixtures.speech",)  # anything the test process can import
    runner = JobRunner(1, start_method="forkserver", preload=preload, idle_seconds=None)
    try:
        runner.warm_up()  # starts the fork server in the background; returns at once
        assert await runner.run("check", "k", modules_loaded, preload) == [True]
        pids = {await runner.run("pid", "k", worker_pid) for _ in range(3)}
        assert len(pids) == 1 and os.getpid() not in pids  # one worker, kept between jobs
    finally:
        await runner.close()


async def test_warm_up_with_spawn_starts_the_workers() -> None:
    runner = JobRunner(2, idle_seconds=None)
    try:
        runner.warm_up()
        await asyncio.wait_for(asyncio.gather(*runner._tasks), 60)
        assert len(runner._pool._processes) == 2  # both ready before any job
        assert await runner.run("add", "k", add, 2, 2) == 4
    finally:
        await runner.close()
