"""The listening service: consent, one session per server, utterances to captions and requests.

    service = ListeningService(transcriber, storage)
    await service.load_consent()
    session = service.start(guild_id, callbacks, wake_words=[...], conversation=False)
    voice_client.start_receiving(session)      # the receiver calls the AudioSink methods
    session.set_members(humans={...}, bots={...})
    ...
    await service.stop(guild_id)

A session is the `AudioSink` of one voice connection. Its methods run on the receiver's
thread: `wants` refuses opted-out users, bots and anyone not in the channel before a packet is
decoded, and the frames of the others go to a `Segmenter`. Onsets and finished utterances
cross to the event loop with `loop.call_soon_threadsafe`. There, each utterance is resampled to
16 kHz and recognised by the speech service (engines off the loop), and the results are
delivered strictly in the order the utterances started, whatever order the recognitions end
in: `on_caption`, then `on_request` when the utterance starts with a wake word (or conversation
mode is on, or the speaker said just the wake word a moment ago). `on_barge_in` hears every
onset at once, so the cog can stop the bot's speech.

No audio is written anywhere: it lives in memory until its text is made.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import numpy as np

from bot import metrics
from bot.errors import UserFacingError
from bot.services.hearing.listening import settings as keys
from bot.services.hearing.listening.segmenter import Segmenter, Utterance
from bot.services.hearing.listening.sink import SAMPLE_RATE
from bot.services.hearing.listening.wakewords import match_wake_word
from bot.services.storage import Storage
from bot.services.tenancy.language import ServerLanguages
from bot.services.tenancy.namespaces import guild_namespace
from bot.services.tenancy.settings import ServerSettings, Setting

log = logging.getLogger(__name__)
T = TypeVar("T")

TARGET_RATE = 16_000
TICK_SECONDS = 0.1
ADDRESSED_SECONDS = 8.0  # after a bare wake word, the speaker's next utterance is a request
MAX_CONCURRENT_RECOGNITIONS = 2
# What recognisers write for non-speech: [BLANK_AUDIO], (music), *coughs*, ♪.
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")
_NOISE_WORDS = frozenset({"you"})  # whisper's usual guess for a noise


class Recognizer(Protocol):
    """The part of `Transcriber` listening uses (a fake in tests)."""

    async def recognize(
        self, segment: Any, language: Any = "en-US", *, namespace: str | None = None
    ) -> Any: ...


@dataclass
class Callbacks:
    on_caption: Callable[[int, int, str], Awaitable[None]]  # guild id, user id, text
    on_request: Callable[[int, int, str], Awaitable[None]]  # guild id, user id, request text
    on_barge_in: Callable[[int, int], Awaitable[None]]  # guild id, user id


def downsample(pcm48: bytes) -> bytes:
    """48 kHz mono s16le to 16 kHz: a windowed-sinc low-pass at 7.2 kHz, then every third
    sample. Blocking numpy work (milliseconds for 30 s)."""
    samples = np.frombuffer(pcm48, dtype=np.int16).astype(np.float32)
    if samples.size == 0:
        return b""
    taps = np.arange(-48, 49, dtype=np.float32)
    cutoff = 7_200 / SAMPLE_RATE
    kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(taps.size).astype(np.float32)
    filtered = np.convolve(samples, kernel / kernel.sum(), mode="same")[:: SAMPLE_RATE // 16_000]
    return np.clip(np.round(filtered), -32768, 32767).astype(np.int16).tobytes()


def to_segment(pcm48: bytes) -> Any:
    """The utterance as the 16 kHz mono 16-bit AudioSegment the speech service takes."""
    from bot.services.speech.audio import AudioSegment

    return AudioSegment(data=downsample(pcm48), sample_width=2, frame_rate=TARGET_RATE, channels=1)


def clean_transcript(text: str) -> str:
    """The transcript without noise annotations; "" when no words remain."""
    cleaned = " ".join(_ANNOTATION.sub(" ", text).split())
    if not any(ch.isalnum() for ch in cleaned):
        return ""
    if cleaned.strip(" .!?,").lower() in _NOISE_WORDS:
        return ""
    return cleaned


@dataclass
class _Slot:
    user_id: int
    done: bool = False
    text: str = ""
    ended_at: float = 0.0  # time.monotonic() when the segmenter ended the utterance


@dataclass
class ListeningSession:
    """The AudioSink of one server's voice connection (see the module docstring)."""

    guild_id: int
    service: ListeningService
    callbacks: Callbacks
    loop: asyncio.AbstractEventLoop
    wake_words: tuple[str, ...]
    conversation: bool
    segmenter: Segmenter = field(init=False)
    _humans: frozenset[int] = frozenset()
    _bots: frozenset[int] = frozenset()
    _active: bool = True
    _slots: dict[int, _Slot] = field(default_factory=dict)
    _next_delivery: int = 0
    _outbox: asyncio.Queue[tuple[int, str, float] | None] = field(default_factory=asyncio.Queue)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _addressed: dict[int, float] = field(default_factory=dict)
    _posting: bool = False  # a caption is being posted

    # ----- AudioSink: called on the receiver's thread ---------------------------------------

    def wants(self, user_id: int) -> bool:
        return (
            self._active
            and user_id in self._humans
            and user_id not in self._bots
            and not self.service.is_opted_out(user_id)
        )

    def on_audio(self, user_id: int, pcm: bytes) -> None:
        if self.wants(user_id):  # asked again: consent may have changed since the packet
            self.segmenter.push(user_id, pcm)

    def on_silence(self, user_id: int) -> None:
        self.segmenter.silence(user_id)

    def on_speaker_left(self, user_id: int) -> None:
        self.segmenter.leave(user_id)

    # ----- set by the cog -------------------------------------------------------------------

    def set_members(self, humans: Iterable[int], bots: Iterable[int] = ()) -> None:
        """Who is in the voice channel: only `humans` are heard. Those who left are flushed."""
        bots = frozenset(bots)
        humans = frozenset(humans) - bots
        gone = self._humans - humans
        self._humans, self._bots = humans, bots
        for user_id in gone:
            self.segmenter.leave(user_id)

    def configure(self, wake_words: Iterable[str], conversation: bool) -> None:
        self.wake_words = tuple(wake_words)
        self.conversation = conversation

    # ----- segmenter callbacks (any thread) -------------------------------------------------

    def _onset(self, seq: int, user_id: int) -> None:
        self._call_on_loop(self._started, seq, user_id)

    def _end(self, seq: int, utterance: Utterance | None) -> None:
        self._call_on_loop(self._finished, seq, utterance, time.monotonic())

    def _call_on_loop(self, function: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop has closed: the bot is stopping
            log.debug("listening event after the loop closed")

    # ----- on the event loop ----------------------------------------------------------------

    def _started(self, seq: int, user_id: int) -> None:
        self._slots.setdefault(seq, _Slot(user_id))
        if self._active:
            self._spawn(self.callbacks.on_barge_in(self.guild_id, user_id), "barge-in")

    def _finished(self, seq: int, utterance: Utterance | None, ended_at: float) -> None:
        slot = self._slots.setdefault(seq, _Slot(utterance.user_id if utterance else 0))
        slot.ended_at = ended_at
        if utterance is None or not self._active:  # too short (a cough), or no longer heard
            metrics.UTTERANCES.labels(metrics.DROPPED).inc()
            slot.done = True
            self._deliver_ready()
            return
        self._spawn(self._recognize(slot, utterance), f"recognize-{seq}")

    async def _recognize(self, slot: _Slot, utterance: Utterance) -> None:
        outcome = metrics.DROPPED  # unless recognition ends: an error, a cancellation
        try:
            slot.text = await self.service.transcribe(self.guild_id, utterance.pcm)
            outcome = metrics.EMPTY
        finally:
            if not slot.text:  # with text, `deliver` counts it when its caption is posted
                metrics.UTTERANCES.labels(outcome).inc()
            slot.done = True
            self._deliver_ready()

    def _deliver_ready(self) -> None:
        """Hand finished utterances to the outbox in the order they started."""
        while (slot := self._slots.get(self._next_delivery)) is not None and slot.done:
            del self._slots[self._next_delivery]
            self._next_delivery += 1
            if slot.text:
                self._outbox.put_nowait((slot.user_id, slot.text, slot.ended_at))

    def pending(self) -> int:
        """Utterances begun and not yet posted: still spoken, transcribed or waiting their
        turn (answers to requests not counted)."""
        return len(self._slots) + self._outbox.qsize() + int(self._posting)

    async def deliver(self) -> None:
        """Post captions and requests one at a time (a task per session)."""
        while (item := await self._outbox.get()) is not None:
            user_id, text, ended_at = item
            if self.service.is_opted_out(user_id):  # opted out while we were transcribing
                metrics.UTTERANCES.labels(metrics.DROPPED).inc()
                continue
            self._posting = True
            try:
                await self._caption(user_id, text, ended_at)
                self._posting = False  # the answer to a request is not a pending caption
                request = self._request_in(user_id, text)
                if request:
                    await self.callbacks.on_request(self.guild_id, user_id, request)
            except Exception:  # one failed post must not stop the captions
                log.exception("delivering a caption in guild %s failed", self.guild_id)
            finally:
                self._posting = False

    async def _caption(self, user_id: int, text: str, ended_at: float) -> None:
        """Post one caption; counted captioned (with its delay since the utterance ended)
        or, when posting fails, dropped."""
        try:
            await self.callbacks.on_caption(self.guild_id, user_id, text)
        except Exception:
            metrics.UTTERANCES.labels(metrics.DROPPED).inc()
            raise
        metrics.UTTERANCES.labels(metrics.CAPTIONED).inc()
        metrics.CAPTION_SECONDS.observe(time.monotonic() - ended_at)

    def _request_in(self, user_id: int, text: str) -> str | None:
        """What the bot should answer in this utterance, if anything."""
        now = self.service.clock()
        rest = match_wake_word(text, (*self.wake_words, *self.service.bot_names))
        if rest is not None:
            if rest:
                self._addressed.pop(user_id, None)
                return rest
            self._addressed[user_id] = now + ADDRESSED_SECONDS
            return None
        if self._addressed.pop(user_id, 0.0) >= now or self.conversation:
            return text
        return None

    def _spawn(self, coroutine: Awaitable[None], name: str) -> None:
        task = self.loop.create_task(coroutine, name=f"listen-{self.guild_id}-{name}")  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("listening task failed", exc_info=task.exception())

    async def tick(self) -> None:
        """End the utterances of speakers who stopped sending (a task per session)."""
        while self._active:
            await asyncio.sleep(TICK_SECONDS)
            self.segmenter.tick()

    async def close(self) -> None:
        """Stop hearing; what was already said is still transcribed and posted."""
        self._active = False
        self.segmenter.flush()
        await asyncio.sleep(0)  # let the flushed ends reach the loop
        pending = [t for t in self._tasks if not t.get_name().endswith("barge-in")]
        if pending:
            await asyncio.wait(pending)
        self._outbox.put_nowait(None)


class ListeningService:
    """Consent (who opted out, in memory and in storage) and the sessions of each server."""

    def __init__(
        self,
        speech: Recognizer,
        storage: Storage,
        *,
        settings: ServerSettings | None = None,
        languages: ServerLanguages | None = None,
        segmenter_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.speech = speech
        self.storage = storage
        self.stored = settings or ServerSettings(storage)
        # Captions are made in the server's language, or with `auto` in the one spoken.
        self.languages = languages or ServerLanguages(self.stored)
        self.segmenter_options = segmenter_options or {}
        self.clock = clock
        self.bot_names: tuple[str, ...] = ()  # the bot's own name(s): always wake words
        self._opted_out: set[int] = set()
        self._sessions: dict[int, ListeningSession] = {}
        self._runners: dict[int, list[asyncio.Task[None]]] = {}
        self._recognitions = asyncio.Semaphore(MAX_CONCURRENT_RECOGNITIONS)

    # ----- consent ----------------------------------------------------------------------------

    async def load_consent(self) -> None:
        stored = await self.stored.users_with(keys.OPT_OUT)
        self._opted_out = {user for user, out in stored.items() if out}

    def is_opted_out(self, user_id: int) -> bool:
        return user_id in self._opted_out

    async def opt_out(self, user_id: int) -> None:
        """From now on the user is not heard in any server; what they were saying is dropped."""
        self._opted_out.add(user_id)  # first: the receiver stops decoding them at once
        for session in self._sessions.values():
            session.segmenter.discard(user_id)
        await self.stored.set_user(user_id, keys.OPT_OUT, True)

    async def opt_in(self, user_id: int) -> None:
        await self.stored.set_user(user_id, keys.OPT_OUT, None)
        self._opted_out.discard(user_id)

    async def forget(self, user_id: int) -> bool:
        """`!forgetme`: delete the user's listening choice; True if there was one."""
        had = await self.stored.user(user_id, keys.OPT_OUT) is not None
        await self.stored.set_user(user_id, keys.OPT_OUT, None)
        self._opted_out.discard(user_id)
        return had

    # ----- settings ---------------------------------------------------------------------------

    async def settings(self, guild_id: int) -> keys.ListenSettings:
        return await keys.load_settings(self.stored, guild_id)

    async def set(self, guild_id: int, key: Setting[T], value: T | None) -> None:
        """Store one `listen_*` setting and apply it to a running session."""
        await self.stored.set(guild_id, key, value)
        session = self._sessions.get(guild_id)
        if session is not None and key in (keys.WAKE_WORDS, keys.CONVERSATION):
            current = await self.settings(guild_id)
            session.configure(current.wake_words, current.conversation)

    # ----- sessions ---------------------------------------------------------------------------

    def session(self, guild_id: int) -> ListeningSession | None:
        return self._sessions.get(guild_id)

    def pending(self, guild_id: int) -> int:
        """The server's utterances not yet captioned (0 when not listening)."""
        session = self._sessions.get(guild_id)
        return session.pending() if session is not None else 0

    def start(
        self,
        guild_id: int,
        callbacks: Callbacks,
        *,
        wake_words: Iterable[str] = keys.DEFAULT_WAKE_WORDS,
        conversation: bool = False,
    ) -> ListeningSession:
        """A new session for the server (replacing none: stop the old one first). Call on the
        event loop; the returned session is the AudioSink to give the receiver."""
        if guild_id in self._sessions:
            raise RuntimeError(f"guild {guild_id} is already listening")
        loop = asyncio.get_running_loop()
        session = ListeningSession(guild_id, self, callbacks, loop, tuple(wake_words), conversation)
        session.segmenter = Segmenter(
            session._onset, session._end, clock=self.clock, **self.segmenter_options
        )
        self._sessions[guild_id] = session
        self._runners[guild_id] = [
            loop.create_task(session.tick(), name=f"listen-{guild_id}-tick"),
            loop.create_task(session.deliver(), name=f"listen-{guild_id}-deliver"),
        ]
        return session

    async def stop(self, guild_id: int) -> bool:
        """End the server's session after posting what was already said; False if none."""
        session = self._sessions.pop(guild_id, None)
        if session is None:
            return False
        await session.close()
        ticker, deliverer = self._runners.pop(guild_id)
        ticker.cancel()
        await asyncio.gather(deliverer, ticker, return_exceptions=True)
        return True

    async def close(self) -> None:
        for guild_id in list(self._sessions):
            await self.stop(guild_id)

    # ----- recognition ------------------------------------------------------------------------

    async def transcribe(self, guild_id: int, pcm48: bytes) -> str:
        """The words in one utterance ("" for none), with the server's speech language."""
        hearing = replace(await self.languages.hearing(guild_id), translate=False)
        async with self._recognitions:
            segment = await asyncio.to_thread(to_segment, pcm48)
            try:
                transcript = await self.speech.recognize(
                    segment, hearing, namespace=guild_namespace(guild_id)
                )
            except UserFacingError as exc:  # no speech, or every engine down
                log.info("no caption for an utterance in guild %s: %s", guild_id, exc)
                return ""
        await self.languages.heard(guild_id, getattr(transcript, "language", None))
        return clean_transcript(getattr(transcript, "text", str(transcript)))
