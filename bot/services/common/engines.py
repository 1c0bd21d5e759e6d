"""Ordered fallback over named engines, shared by speech-to-text and text-to-speech.

An engine that raises `EngineUnavailableError` (not installed, unreachable, timed out) is
skipped and rested for `rest_seconds`, so the next request does not wait on it again.
Any other exception from an engine is the input's fault and propagates unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.errors import EngineUnavailableError

log = logging.getLogger(__name__)

E = TypeVar("E")
T = TypeVar("T")


class AllEnginesFailedError(EngineUnavailableError):
    """No engine in the chain could do the work."""


@dataclass(frozen=True)
class Heard:
    """What a speech engine heard: the text, the language it was recognized in (whisper's
    code, when the engine knows it) and the detection's probability when it detected it."""

    text: str
    language: str | None = None
    probability: float | None = None


def text_of(value: str | Heard) -> str:
    """The words of what a speech engine returned (a plain string or a `Heard`)."""
    return value.text if isinstance(value, Heard) else str(value)


class NoEngineForLanguageError(EngineUnavailableError):
    """No engine in the chain serves the language asked for (none was tried)."""


def serves(engine: object, language: str) -> bool:
    """Whether `engine` can work in `language` (an engine with no `supports` serves all)."""
    supports = getattr(engine, "supports", None)
    return supports is None or bool(supports(language))


@dataclass(frozen=True)
class EngineResult(Generic[T]):
    engine: str
    value: T
    first_choice: bool


class EngineChain(Generic[E]):
    """Try engines in order; remember the ones that are down for a while."""

    def __init__(
        self,
        engines: Sequence[tuple[str, E]],
        rest_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not engines:
            raise ValueError("an engine chain needs at least one engine")
        self._engines = list(engines)
        self._rest_seconds = rest_seconds
        self._clock = clock
        self._down_until: dict[str, float] = {}

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._engines]

    def get(self, name: str) -> E | None:
        return next((engine for n, engine in self._engines if n == name), None)

    def is_resting(self, name: str) -> bool:
        return self._down_until.get(name, 0.0) > self._clock()

    def serving(self, language: str) -> list[tuple[str, E]]:
        """The engines that can work in `language`, in order."""
        return [(name, engine) for name, engine in self._engines if serves(engine, language)]

    async def run(
        self,
        call: Callable[[E], Awaitable[T]],
        prefer: str | None = None,
        *,
        language: str | None = None,
    ) -> EngineResult[T]:
        """Run `call` on the first engine that works; `prefer` moves one engine to the front.
        With `language`, engines that can't work in it are left out (never rested); when
        none can, `NoEngineForLanguageError`."""
        engines = self._engines if language is None else self.serving(language)
        if not engines:
            raise NoEngineForLanguageError(f"no engine serves {language!r}")
        order = sorted(engines, key=lambda item: item[0] != prefer) if prefer else engines
        reasons: list[str] = []
        for index, (name, engine) in enumerate(order):
            if self.is_resting(name):
                reasons.append(f"{name}: resting")
                continue
            try:
                value = await call(engine)
            except EngineUnavailableError as exc:
                log.warning("engine %s unavailable: %s", name, exc)
                self._down_until[name] = self._clock() + self._rest_seconds
                reasons.append(f"{name}: {exc}")
                continue
            self._down_until.pop(name, None)
            return EngineResult(engine=name, value=value, first_choice=index == 0)
        raise AllEnginesFailedError("; ".join(reasons))

    async def warm_up(self) -> str | None:
        """Load, in a thread, the engine named first when it has a model to load (`load()`);
        an online engine first has nothing to load. Returns its name, or None.

        A request that arrives meanwhile waits for the same load (engines load under a lock),
        so warming up never delays an answer, only makes the first one sooner.
        """
        if not self._engines:
            return None
        name, engine = self._engines[0]
        load = getattr(engine, "load", None)
        if not callable(load):
            return None
        started = time.perf_counter()
        try:
            await asyncio.to_thread(load)
        except EngineUnavailableError as exc:
            log.warning("engine %s could not warm up: %s", name, exc)
            return None
        log.info("engine %s warmed up in %.1f s", name, time.perf_counter() - started)
        return name
