"""The DAVE (end-to-end encryption) step of receiving: one user's Opus frame out of its E2EE layer.

discord.py keeps the `davey.DaveSession` of a voice connection (it joins the MLS group and
handles the transitions); this wrapper only asks that session to decrypt what a user sent:

- no session, or DAVE declined (protocol version 0, as the sandbox does): frames are plain
  Opus and pass through;
- the Opus silence frame ``F8 FF FE`` is never encrypted and passes through;
- a session that is not ready yet, or has no decryptor for this user yet (the first ~100 ms
  after someone joins), makes frames undecryptable: they are dropped and counted, not raised.

Only the pass-through paths and the not-ready behaviour are tested here (against davey's real
`DaveSession`). Full DAVE receive needs the voice server's side of the MLS group, which no
Python library plays, so it is verified only on real Discord.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import davey

log = logging.getLogger(__name__)

OPUS_SILENCE = b"\xf8\xff\xfe"


class DaveDecryptor:
    """Decrypts users' frames with whatever DAVE session the connection has now."""

    def __init__(self, session: Any = None, protocol_version: int = 0) -> None:
        self.session = session
        self.protocol_version = protocol_version
        self.dropped: Counter[str] = Counter()

    def update(self, session: Any, protocol_version: int) -> None:
        """Follow the connection's current session (it is created and reset during a call)."""
        self.session = session
        self.protocol_version = protocol_version

    def decrypt(self, user_id: int, frame: bytes) -> bytes | None:
        """The Opus frame inside `frame`, or None when it cannot be decrypted (yet)."""
        session = self.session
        if session is None or self.protocol_version == 0 or frame == OPUS_SILENCE:
            return frame
        if not session.ready:
            self._drop("not_ready", user_id, "the DAVE session is not ready")
            return None
        try:
            return session.decrypt(user_id, davey.MediaType.audio, frame)
        except ValueError as exc:  # davey reports every failure as ValueError
            self._drop("failed", user_id, str(exc))
            return None

    def _drop(self, reason: str, user_id: int, detail: str) -> None:
        self.dropped[reason] += 1
        if self.dropped[reason] == 1 or self.dropped[reason] % 500 == 0:
            log.debug(
                "Dropped a DAVE frame of user %s (%s; %d so far)",
                user_id,
                detail,
                self.dropped[reason],
            )
