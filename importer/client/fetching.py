"""Recordings behind a vendor's credentials fetched here (``--fetch-urls``), to be checked and
sent as files: for ``recording_url`` rows that Convirza could not fetch itself (basic auth, as
Twilio's recording URLs have; a bearer or key header).

Credentials: the header ``--url-header NAME=VARIABLE`` names (its value read from the
variable), else the login ``~/.netrc`` holds for the URL's host, sent as basic auth. They go
to the URL's own origin (scheme, host, port) only: redirects are followed here, one hop at a
time (at most ``MAX_REDIRECTS``), and a hop to another origin carries no credentials (a
presigned CDN link needs none; a hostile one gets none). A URL is shown without its query or
any user and password, which may hold a token.
"""

from __future__ import annotations

import base64
import netrc
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..errors import AudioError, MachineError

MAX_REDIRECTS = 5
CHUNK = 1 << 16
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class UrlAuth:
    """The credentials fetched URLs are given: a header (name, value), else ``~/.netrc``."""

    header: tuple[str, str] | None = None
    netrc_file: Path | None = None

    def headers_for(self, url: str) -> dict[str, str]:
        """The headers that carry the credentials for ``url``'s host (none known: none)."""
        if self.header is not None:
            return {self.header[0]: self.header[1]}
        host = urlsplit(url).hostname or ""
        login = _netrc_login(self.netrc_file, host)
        if login is None:
            return {}
        pair = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}


def _netrc_login(path: Path | None, host: str) -> tuple[str, str] | None:
    """The login and password ``~/.netrc`` (or ``path``) holds for ``host``, or None (no such
    file, no entry, a file that does not parse: then no credentials are sent)."""
    try:
        found = netrc.netrc(str(path) if path else None).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    if found is None:
        return None
    login, _, password = found
    return login, password or ""


def shown(url: str) -> str:
    """``url`` as it may be printed: no user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def aiohttp_timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    """A fetch's timeouts: to connect, and the longest silence (not the whole download)."""
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


async def fetch_recording(session: aiohttp.ClientSession, url: str, dest: Path, auth: UrlAuth,
                          max_size: int, timeout: aiohttp.ClientTimeout) -> str:
    """The recording ``url`` serves, written to ``dest`` (streamed, at most ``max_size``
    bytes); the URL it came from at last. ``AudioError`` when the answer is the row's
    problem (refused, missing, too big), ``MachineError`` when the server could not be asked."""
    origin, credentials = _origin(url), auth.headers_for(url)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            headers = credentials if _origin(url) == origin else {}
            async with session.get(url, headers=headers, allow_redirects=False,
                                   timeout=timeout) as resp:
                if resp.status in _REDIRECTS and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                _judge(url, resp, max_size, bool(headers))
                await _save(resp, dest, max_size, url)
                return url
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MachineError(shown(url), f"the URL's server could not be asked "
                           f"({type(exc).__name__}); left for a later run") from None
    raise AudioError(shown(url), f"more than {MAX_REDIRECTS} redirects")


def _judge(url: str, resp: aiohttp.ClientResponse, max_size: int, with_credentials: bool) -> None:
    if resp.status in (401, 403):
        given = "were refused" if with_credentials else "are needed (none known for its host)"
        raise AudioError(shown(url), f"HTTP {resp.status}: credentials {given}: give its "
                         "login in ~/.netrc, or --url-header NAME=VARIABLE")
    if resp.status != 200:
        raise AudioError(shown(url), f"the URL's server answered HTTP {resp.status}")
    if resp.content_length is not None and resp.content_length > max_size:
        raise AudioError(shown(url), f"too big: {resp.content_length:,} bytes, over the limit "
                         f"of {max_size:,} (--max-file-size)")


async def _save(resp: aiohttp.ClientResponse, dest: Path, max_size: int, url: str) -> None:
    """The body into ``dest``, never more than ``max_size`` bytes of it."""
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0),
                 0o600)
    with open(fd, "wb") as out:
        async for piece in resp.content.iter_chunked(CHUNK):
            size += len(piece)
            if size > max_size:
                raise AudioError(shown(url), f"too big: over the limit of {max_size:,} bytes "
                                 "(--max-file-size)")
            out.write(piece)
