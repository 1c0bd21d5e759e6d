"""The google engine against a local server that plays Google's v2 `recognize` endpoint.

The stand-in checks what SpeechRecognition sends (FLAC body, `rate=` in the Content-Type, the
`lang` and `key` query parameters) and answers in the endpoint's format: newline-separated
JSON objects, the first one an empty `{"result":[]}`, then the result with its alternatives.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.errors import EngineUnavailableError
from bot.services.speech import audio, recognizers
from bot.services.speech.recognizers import GoogleEngine
from bot.services.speech.service import SpeechService
from tests.fixtures import speech as samples

EMPTY = '{"result":[]}\n'


def recognized(*alternatives: tuple[str, float | None]) -> str:
    options = [
        {"transcript": text} | ({"confidence": conf} if conf is not None else {})
        for text, conf in alternatives
    ]
    best = {"result": [{"alternative": options, "final": True}], "result_index": 0}
    return EMPTY + json.dumps(best, separators=(",", ":")) + "\n"


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: bytes


@dataclass
class FakeGoogle:
    url: str
    requests: list[Request] = field(default_factory=list)
    status: int = 200
    answer: str = EMPTY
    problems: list[str] = field(default_factory=list)


def flac_stream_info(body: bytes) -> tuple[int, int]:
    """(sample rate, channels) from a FLAC file's STREAMINFO block."""
    info = body[8:]
    rate = (info[10] << 12) | (info[11] << 4) | (info[12] >> 4)
    return rate, ((info[12] >> 1) & 0x7) + 1


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    state = FakeGoogle(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = Request(
                parts.path, parse_qs(parts.query), self.headers.get("Content-Type", ""), body
            )
            state.requests.append(request)
            problems = check(request)
            state.problems.extend(problems)
            status, answer = (400, "bad request\n") if problems else (state.status, state.answer)
            payload = answer.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/speech-api/v2/recognize"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def check(request: Request) -> list[str]:
    problems = []
    if request.path != "/speech-api/v2/recognize":
        problems.append(f"path {request.path}")
    if not request.body.startswith(b"fLaC"):
        problems.append("body is not FLAC")
    if request.content_type != "audio/x-flac; rate=16000":
        problems.append(f"content type {request.content_type!r}")
    for name in ("lang", "key", "client"):
        if not request.query.get(name, [""])[0]:
            problems.append(f"no {name} parameter")
    return problems


def test_recognized_speech_returns_the_best_transcript(google, hello_wav) -> None:
    google.answer = recognized(
        ("hello world this is a test", 0.92), ("hello world this is the test", None)
    )
    engine = GoogleEngine(api_key="user-key-123", endpoint=google.url)

    assert engine.transcribe(hello_wav, "en-US") == "hello world this is a test"

    assert google.problems == []
    (request,) = google.requests
    assert request.query["lang"] == ["en-US"]
    assert request.query["key"] == ["user-key-123"]
    assert flac_stream_info(request.body) == (16000, 1)
    sent = audio.decode(request.body, "sent.flac")
    assert sent.duration_seconds == pytest.approx(
        audio.from_wav(hello_wav).duration_seconds, abs=0.01
    )


def test_language_is_passed_through(google, hello_wav) -> None:
    google.answer = recognized(("bonjour le monde", 0.8))
    assert GoogleEngine(endpoint=google.url).transcribe(hello_wav, "fr-FR") == "bonjour le monde"
    assert google.requests[0].query["lang"] == ["fr-FR"]


def test_without_a_user_key_the_library_key_is_sent(google, hello_wav) -> None:
    google.answer = recognized(("hello", None))
    assert GoogleEngine(api_key=None, endpoint=google.url).transcribe(hello_wav, "en-US") == "hello"
    assert google.problems == []


@pytest.mark.parametrize(
    "answer",
    [EMPTY, EMPTY + EMPTY, '{"result":[{"alternative":[],"final":true}]}\n', ""],
    ids=["empty-result", "two-empty-results", "no-alternatives", "no-body"],
)
def test_empty_result_means_not_understood(google, hello_wav, answer: str) -> None:
    google.answer = answer
    assert GoogleEngine(endpoint=google.url).transcribe(hello_wav, "en-US") == ""
    assert google.problems == []


@pytest.mark.parametrize(
    ("status", "answer"),
    [(403, "forbidden\n"), (500, "oops\n"), (200, "<html>not json</html>\n")],
    ids=["key-refused", "server-error", "not-json"],
)
def test_service_errors_make_the_engine_unavailable(google, hello_wav, status, answer) -> None:
    google.status, google.answer = status, answer
    with pytest.raises(EngineUnavailableError):
        GoogleEngine(endpoint=google.url).transcribe(hello_wav, "en-US")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_server_down_is_unavailable(hello_wav) -> None:
    engine = GoogleEngine(endpoint=f"http://127.0.0.1:{free_port()}/speech-api/v2/recognize")
    with pytest.raises(EngineUnavailableError, match="unreachable"):
        engine.transcribe(hello_wav, "en-US")


def test_unreachable_host_gives_up_after_the_connect_timeout(hello_wav, monkeypatch) -> None:
    asked: list[float] = []

    def no_answer(address: tuple[str, int], timeout: float) -> socket.socket:
        asked.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(recognizers.socket, "create_connection", no_answer)
    with pytest.raises(EngineUnavailableError, match="unreachable"):
        GoogleEngine(endpoint="http://192.0.2.1/speech-api/v2/recognize").transcribe(
            hello_wav, "en-US"
        )
    assert asked == [3.0]


def test_server_that_never_answers_times_out(hello_wav) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/speech-api/v2/recognize"
        engine = GoogleEngine(endpoint=url, read_timeout=0.5)
        with pytest.raises(EngineUnavailableError):
            engine.transcribe(hello_wav, "en-US")


async def test_service_sends_each_chunk_as_its_own_request(google) -> None:
    google.answer = recognized(("hello world", 0.9))
    service = SpeechService(["google"], google_endpoint=google.url, google_api_key="k")
    long = audio.to_wav(samples.sentences_for(110)[0])

    transcript = await service.transcribe(long, "long.wav", "en-US")

    assert google.problems == []
    assert transcript.chunks == len(google.requests) >= 3
    assert transcript.text == " ".join(["hello world"] * transcript.chunks)
    assert (transcript.engine, transcript.first_choice) == ("google", True)
    for request in google.requests:
        assert audio.decode(request.body, "chunk.flac").duration_seconds <= 50.0


class Backup:
    name = "whisper"
    holds_gil = False

    def transcribe(self, wav: bytes, language: str) -> str:
        return "from the backup"


async def test_service_falls_back_when_google_fails_and_rests_it(google, hello_wav) -> None:
    google.status, google.answer = 503, "unavailable\n"
    service = SpeechService([GoogleEngine(endpoint=google.url), Backup()])
    for _ in range(2):
        transcript = await service.transcribe(hello_wav, "hello.wav", "en-US")
        assert (transcript.text, transcript.engine, transcript.first_choice) == (
            "from the backup",
            "whisper",
            False,
        )
    assert len(google.requests) == 1
