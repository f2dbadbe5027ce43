"""The sandbox fetches a ``recording_url`` as Convirza would (``--fetch-urls``): loopback URLs
only (a test server must not reach out), what is not mp3 or wav refused as the API refuses a
file, and the bytes it got recorded (size, sha256), so that presigned and fetched URLs are
tested end to end. Written from the API notes, like the rest of the sandbox: it imports
nothing of the importer."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from .rules import audio_kind

_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class Fetched:
    """What the sandbox got from a recording URL: the file's name, size and sha256."""

    name: str
    size: int
    sha256: str


def _loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def fetch_recording_url(url: str, max_size: int) -> Fetched | str:
    """The recording at ``url``, or the problem the API reports for it."""
    if not _loopback(url):
        return "Invalid parameter (recording_url): the sandbox fetches loopback URLs only"
    digest, size, head = hashlib.sha256(), 0, b""
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url) as resp:
            if resp.status != 200:
                return f"Failed to fetch recording_url: HTTP {resp.status}"
            async for piece in resp.content.iter_chunked(1 << 16):
                if len(head) < 12:
                    head += piece[:12 - len(head)]
                size += len(piece)
                if size > max_size:
                    return f"recording_url is over {max_size} bytes"
                digest.update(piece)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"Failed to fetch recording_url: {type(exc).__name__}"
    if size == 0 or audio_kind(head) is None:
        return "Invalid audio format."
    name = urlsplit(url).path.rpartition("/")[2] or "recording"
    return Fetched(name, size, digest.hexdigest())
