"""gTTS against a local server that speaks the translate service's batchexecute format.

The server checks what gTTS sends (a form POST whose `f.req` field carries the text chunk and
the language) and answers like the real service: an anti-JSON prefix, then length-prefixed
JSON lines, one of which holds the MP3 as base64 under the `jQ1olc` RPC id.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import imageio_ffmpeg
import pytest

from bot.errors import EngineUnavailableError
from bot.services.voice.synthesis import GttsEngine, SynthesisService, audio_duration

BATCHEXECUTE = "/_/TranslateWebserverUi/data/batchexecute"


@dataclass
class Request:
    path: str
    content_type: str
    text: str
    lang: str
    rpc_id: str


@dataclass
class FakeTranslate:
    """Answers batchexecute POSTs with `mp3`; `mode` makes it fail in the ways gTTS meets."""

    mp3: bytes
    mode: str = "ok"  # "ok", "no-audio", "error"
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def answer(self, path: str, content_type: str, body: str) -> tuple[int, str]:
        form = parse_qs(body)
        rpc = json.loads(form["f.req"][0])
        rpc_id, parameter = rpc[0][0][0], rpc[0][0][1]
        text, lang = json.loads(parameter)[:2]
        self.requests.append(Request(path, content_type, text, lang, rpc_id))
        if self.mode == "error":
            return 500, "internal error"
        payload = [base64.b64encode(self.mp3).decode("ascii")] if self.mode == "ok" else []
        envelope = [
            ["wrb.fr", rpc_id, json.dumps(payload), None, None, None, "generic"],
            ["di", 46],
            ["af.httprm", 45, "-1234567890", 2],
        ]
        lines = [json.dumps(envelope, separators=(",", ":")), '[["e",4,null,null,140]]']
        return 200, ")]}'\n\n" + "".join(f"{len(line) + 1}\n{line}\n" for line in lines)


def make_handler(fake: FakeTranslate) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            status, reply = fake.answer(self.path, self.headers.get("Content-Type", ""), body)
            data = reply.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return  # keep test output quiet

    return Handler


@pytest.fixture(scope="module")
def mp3() -> bytes:
    """0.4 s of tone as bare MP3 frames (no ID3 or Xing header), so clips can be joined."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi"]
    command += ["-i", "sine=frequency=440:duration=0.4", "-ac", "1", "-ar", "24000"]
    command += ["-c:a", "libmp3lame", "-b:a", "32k", "-write_xing", "0", "-id3v2_version", "0"]
    command += ["-f", "mp3", "pipe:1"]
    return subprocess.run(command, capture_output=True, check=True).stdout


@pytest.fixture
def fake(mp3: bytes) -> Iterator[FakeTranslate]:
    fake = FakeTranslate(mp3=mp3)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def test_request_carries_text_and_language(fake: FakeTranslate, tmp_path: Path) -> None:
    path = GttsEngine(endpoint=fake.url).synthesize("Hello world", "en-US", None, tmp_path)

    assert path.read_bytes() == fake.mp3
    assert path.parent == tmp_path and path.suffix == ".mp3"
    [request] = fake.requests
    assert request.path == BATCHEXECUTE
    assert request.content_type.startswith("application/x-www-form-urlencoded")
    assert request.rpc_id == "jQ1olc"
    assert request.text == "Hello world"
    assert request.lang == "en"


@pytest.mark.parametrize(
    ("language", "sent"), [("fr-FR", "fr"), ("zh-TW", "zh-TW"), ("pt_BR", "pt"), ("xx-YY", "en")]
)
def test_language_tags_are_mapped(
    fake: FakeTranslate, tmp_path: Path, language: str, sent: str
) -> None:
    GttsEngine(endpoint=fake.url).synthesize("Bonjour", language, None, tmp_path)
    assert fake.requests[0].lang == sent


def test_long_text_is_sent_in_chunks(fake: FakeTranslate, tmp_path: Path) -> None:
    words = [f"word{i}" for i in range(60)]
    text = " ".join(words) + "."  # ~ 400 characters with no punctuation to split at

    path = GttsEngine(endpoint=fake.url).synthesize(text, "en-US", None, tmp_path)

    chunks = [r.text for r in fake.requests]
    assert len(chunks) >= 4
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert " ".join(chunks).split() == text.split()
    assert {r.lang for r in fake.requests} == {"en"}
    # One MP3 per chunk, joined: the file plays all of them.
    assert path.read_bytes() == fake.mp3 * len(chunks)
    single = audio_duration(_write(tmp_path / "one.mp3", fake.mp3))
    assert audio_duration(path) == pytest.approx(single * len(chunks), rel=0.05)


def test_endpoint_with_a_path_prefix(fake: FakeTranslate, tmp_path: Path) -> None:
    GttsEngine(endpoint=fake.url + "/proxy/").synthesize("Hi there", "en", None, tmp_path)
    assert fake.requests[0].path == "/proxy" + BATCHEXECUTE


@pytest.mark.parametrize("mode", ["no-audio", "error"])
def test_bad_answers_make_the_engine_unavailable(
    fake: FakeTranslate, tmp_path: Path, mode: str
) -> None:
    fake.mode = mode
    with pytest.raises(EngineUnavailableError):
        GttsEngine(endpoint=fake.url).synthesize("Hello", "en", None, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind


async def test_service_speaks_through_gtts(fake: FakeTranslate, tmp_path: Path) -> None:
    service = SynthesisService(["gtts", "espeak"], gtts_endpoint=fake.url, tmp_dir=tmp_path)
    spoken = await service.synthesize("Hello world", "en-US")
    assert spoken.engine == "gtts"
    assert spoken.path.read_bytes() == fake.mp3
    assert spoken.duration_seconds == pytest.approx(0.4, abs=0.1)
    await service.close()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
