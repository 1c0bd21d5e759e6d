"""How a background job is shown to users (`!job`, `!jobs`, training replies)."""

from __future__ import annotations

from bot.services.tasks.job import Job


def describe_job(job: Job, *, show_namespace: bool = False) -> str:
    where = f" in `{job.namespace}`" if show_namespace and job.namespace else ""
    text = f"Job `{job.id}` ({job.kind} `{job.subject}`{where}): **{job.status}**"
    if job.waited and job.waited >= 0.1:
        text += f", waited {job.waited:.1f} s"
    if job.duration is not None:
        verb = "ran" if job.finished else "running for"
        text += f", {verb} {job.duration:.1f} s"
    if job.status == "done" and job.summary:
        text += f"\n{job.summary}"
    if job.status == "interrupted":
        text += f"\n{job.error} The previous model stays in use."
    elif job.status == "failed":
        text += f"\nReason: {job.error}. The previous model stays in use."
    return text
