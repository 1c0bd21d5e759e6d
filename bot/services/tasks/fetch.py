"""Downloading a task's audio by URL (an attachment's), with a size limit."""

from __future__ import annotations

import aiohttp

from bot.errors import InvalidInputError, TooLargeError

TIMEOUT_SECONDS = 60.0


async def fetch_url(url: str, max_bytes: int) -> bytes:
    """The bytes at an http(s) URL; one clear error when it can't be had or is too large."""
    if not url.startswith(("http://", "https://")):
        raise InvalidInputError("The audio's address is not an http(s) URL.")
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url) as response:
                if response.status != 200:
                    raise InvalidInputError(
                        f"The audio could not be downloaded (HTTP {response.status})."
                    )
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > max_bytes:
                        raise TooLargeError("That file is too large to transcribe.")
                return bytes(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = type(exc).__name__
        raise InvalidInputError(f"The audio could not be downloaded ({reason}).") from exc
