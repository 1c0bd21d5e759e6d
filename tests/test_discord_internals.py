"""The discord.py internals bot/core/voice_client.py relies on (discord.py has no receive API).

Each test names the internal it checks, so an upgrade that breaks receiving fails here first,
with a message saying what moved. pyproject.toml pins the range these were read from.
"""

from __future__ import annotations

import inspect

import discord
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import VoiceConnectionState


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_connection_state_takes_a_websocket_hook() -> None:
    params = inspect.signature(VoiceConnectionState.__init__).parameters
    assert "hook" in params, "VoiceConnectionState(voice_client, hook=...) is gone"
    assert _params(VoiceConnectionState.__init__)[1] == "voice_client", (
        "VoiceConnectionState's first argument is no longer the voice client"
    )


def test_voice_client_builds_its_state_through_create_connection_state() -> None:
    assert hasattr(discord.VoiceClient, "create_connection_state"), (
        "VoiceClient.create_connection_state is gone (ListeningVoiceClient overrides it)"
    )
    source = inspect.getsource(discord.VoiceClient.__init__)
    assert "self.create_connection_state()" in source, (
        "VoiceClient.__init__ no longer calls create_connection_state()"
    )


def test_socket_listeners() -> None:
    for name in ("add_socket_listener", "remove_socket_listener"):
        assert _params(getattr(VoiceConnectionState, name, None) or (lambda: None))[1:] == [
            "callback"
        ], f"VoiceConnectionState.{name}(callback) changed or is gone"


def test_the_hook_is_awaited_with_the_websocket_and_the_message() -> None:
    source = inspect.getsource(DiscordVoiceWebSocket.received_message)
    assert "await self._hook(self, msg)" in source, (
        "DiscordVoiceWebSocket.received_message no longer awaits hook(ws, msg)"
    )
    assert "hook" in inspect.signature(DiscordVoiceWebSocket.__init__).parameters


def test_voice_op_codes() -> None:
    expected = {
        "READY": 2,
        "SESSION_DESCRIPTION": 4,
        "SPEAKING": 5,
        "CLIENTS_CONNECT": 11,
        "CLIENT_CONNECT": 12,
        "CLIENT_DISCONNECT": 13,
    }
    for name, op in expected.items():
        assert getattr(DiscordVoiceWebSocket, name, None) == op, (
            f"DiscordVoiceWebSocket.{name} is no longer op {op}"
        )


def test_connection_state_attributes() -> None:
    source = inspect.getsource(VoiceConnectionState.__init__)
    for name in ("secret_key", "mode", "dave_session", "dave_protocol_version", "ssrc"):
        assert f"self.{name}" in source, f"VoiceConnectionState.{name} is gone"
    for name in ("secret_key", "mode"):
        assert isinstance(getattr(discord.VoiceClient, name, None), property), (
            f"VoiceClient.{name} is no longer a property"
        )


def test_sending_a_raw_opus_frame() -> None:
    params = inspect.signature(discord.VoiceClient.send_audio_packet).parameters
    assert "encode" in params, "VoiceClient.send_audio_packet(data, encode=False) is gone"
