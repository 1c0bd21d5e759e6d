"""RTP packets as a voice server sends them, and their transport decryption.

Only ``aead_xchacha20_poly1305_rtpsize`` is supported (the mode discord.py 2.7 picks first and
the only one the sandbox offers). In that mode the associated data is the RTP header through
the 4-byte extension header (CSRCs included); the extension *values* are encrypted with the
payload and must be stripped from the plaintext, then the RTP padding when the P bit is set.
The nonce is the packet's last 4 bytes followed by 20 zero bytes.

Everything here returns None for a packet it cannot use (short, garbage, RTCP, forged) and
never raises: it runs on the socket-reader thread for every datagram.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret

log = logging.getLogger(__name__)

MODE = "aead_xchacha20_poly1305_rtpsize"
HEADER_LENGTH = 12
EXTENSION_HEADER_LENGTH = 4
NONCE_SUFFIX_LENGTH = 4
TAG_LENGTH = 16
RTCP_PAYLOAD_TYPES = range(200, 205)  # the second byte of RTCP sender/receiver reports


@dataclass(frozen=True)
class RtpHeader:
    """The fixed RTP header, its CSRCs and where the (still encrypted) body starts."""

    version: int
    padding: bool
    extension: bool
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrcs: tuple[int, ...]
    length: int  # bytes of the header through the extension header: the associated data


@dataclass(frozen=True)
class RtpPacket:
    """A decrypted RTP packet: its header and the media payload (Opus, or DAVE-encrypted Opus)."""

    header: RtpHeader
    payload: bytes

    @property
    def ssrc(self) -> int:
        return self.header.ssrc

    @property
    def sequence(self) -> int:
        return self.header.sequence

    @property
    def timestamp(self) -> int:
        return self.header.timestamp


def is_rtcp(packet: bytes) -> bool:
    """Whether a datagram is RTCP (it shares the socket with RTP)."""
    return len(packet) >= 2 and packet[1] in RTCP_PAYLOAD_TYPES


def parse_header(packet: bytes) -> RtpHeader | None:
    """Parse the RTP header of a datagram; None when it is not RTP version 2 or too short."""
    if len(packet) < HEADER_LENGTH or is_rtcp(packet):
        return None
    first, second, sequence, timestamp, ssrc = struct.unpack_from(">BBHII", packet)
    if first >> 6 != 2:
        return None
    csrc_count = first & 0x0F
    length = HEADER_LENGTH + 4 * csrc_count
    extension = bool(first & 0x10)
    if extension:
        length += EXTENSION_HEADER_LENGTH
    if len(packet) < length:
        return None
    csrcs = struct.unpack_from(f">{csrc_count}I", packet, HEADER_LENGTH)
    return RtpHeader(
        version=2,
        padding=bool(first & 0x20),
        extension=extension,
        marker=bool(second & 0x80),
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrcs=tuple(csrcs),
        length=length,
    )


def nonce_of(packet: bytes) -> bytes:
    """The 24-byte nonce: the packet's 4-byte counter suffix padded with zeros."""
    suffix = packet[-NONCE_SUFFIX_LENGTH:]
    return suffix + bytes(nacl.secret.Aead.NONCE_SIZE - NONCE_SUFFIX_LENGTH)


class TransportDecryptor:
    """Opens ``aead_xchacha20_poly1305_rtpsize`` packets with one session's secret key."""

    def __init__(self, secret_key: bytes | list[int], mode: str = MODE) -> None:
        if mode != MODE:
            raise ValueError(f"Unsupported voice encryption mode {mode!r}")
        self.key = bytes(secret_key)
        self._box = nacl.secret.Aead(self.key)

    def decrypt(self, packet: bytes) -> RtpPacket | None:
        """The packet's header and media payload, or None when it is not usable."""
        header = parse_header(packet)
        if header is None:
            return None
        if len(packet) < header.length + TAG_LENGTH + NONCE_SUFFIX_LENGTH:
            return None
        try:
            plain = self._box.decrypt(
                packet[header.length : -NONCE_SUFFIX_LENGTH],
                packet[: header.length],
                nonce_of(packet),
            )
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return None
        payload = _strip(header, packet, plain)
        if payload is None:
            return None
        return RtpPacket(header, payload)


def _strip(header: RtpHeader, packet: bytes, plain: bytes) -> bytes | None:
    """Remove the extension values, then the RTP padding, from a decrypted body."""
    if header.extension:
        (words,) = struct.unpack_from(">H", packet, header.length - 2)
        if 4 * words > len(plain):
            return None
        plain = plain[4 * words :]
    if header.padding:
        if not plain or plain[-1] == 0 or plain[-1] > len(plain):
            return None
        plain = plain[: -plain[-1]]
    return plain
