"""What a doctor's check found: ok, a warning or a failure, with how to fix it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


MARKS = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗"}


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def line(self) -> str:
        """`✓ name: detail`, or with ` — fix` after it when the check did not pass."""
        text = f"{MARKS[self.status]} {self.name}: {self.detail}"
        if self.fix and self.status is not Status.OK:
            return f"{text} — {self.fix}"
        return text


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def warned(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.WARN, detail, fix)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, fix)
