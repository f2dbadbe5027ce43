"""A recording URL judged before it is sent: its form (``check_url_form``), and, with
``--check-urls``, what its server answered (``judge_url_answer``; the HTTP is the client's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from ..errors import AudioError

#: Extensions a URL's path may end with that name a format the API does not take.
_URL_NOT_MP3_WAV = frozenset({".ogg", ".oga", ".opus", ".flac", ".m4a", ".mp4", ".aac", ".amr",
                              ".wma", ".aif", ".aiff", ".webm", ".gsm", ".3gp"})
_NOT_AUDIO_TYPES = frozenset({"text", "image", "video", "font", "model", "multipart", "message"})
_NOT_AUDIO_APPLICATION = frozenset({"json", "xml", "xhtml+xml", "pdf", "zip", "gzip", "x-gzip",
                                    "javascript", "x-tar", "msword", "problem+json"})
_OTHER_AUDIO = frozenset({"audio/ogg", "audio/flac", "audio/x-flac", "audio/mp4", "audio/aac",
                          "audio/x-m4a", "audio/webm", "audio/opus", "audio/amr",
                          "audio/x-ms-wma", "audio/aiff", "audio/x-aiff", "audio/3gpp"})


@dataclass(frozen=True)
class UrlAnswer:
    """What the server of a ``recording_url`` said to a HEAD (or a one-byte ranged GET).

    ``content_type`` is lower case without parameters, None when the server sent none;
    ``size`` is the whole file's length when the answer tells it.
    """

    method: str
    status: int
    content_type: str | None
    size: int | None


def check_url_form(url: str) -> None:
    """Refuse a ``recording_url`` whose form alone shows the API could not fetch it."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise AudioError(url, "URL contains spaces or control characters (encode them as %20)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AudioError(url, "not an http:// or https:// URL with a host name")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise AudioError(url, "URL has an invalid port number") from None
    suffix = PurePosixPath(parts.path).suffix.lower()
    if suffix in _URL_NOT_MP3_WAV:
        raise AudioError(url, f"URL names a {suffix} file; the API takes mp3 or wav")


def judge_url_answer(url: str, answer: UrlAnswer, max_size: int) -> None:
    """Refuse a URL the server will not serve as mp3/wav audio: a non-2xx answer, a content
    type that is clearly something else, an empty or oversized file. An unknown or generic
    type (``application/octet-stream``, none at all) passes: many stores serve audio so."""
    said = f"{answer.method} answered"
    if not 200 <= answer.status < 300:
        raise AudioError(url, f"URL is not available: {said} HTTP {answer.status}")
    ctype = answer.content_type
    if ctype:
        main, _, sub = ctype.partition("/")
        if main in _NOT_AUDIO_TYPES or (main == "application" and sub in _NOT_AUDIO_APPLICATION):
            raise AudioError(url, f"URL serves {ctype}, not audio")
        if ctype in _OTHER_AUDIO:
            raise AudioError(url, f"URL serves {ctype}; the API takes mp3 or wav")
    if answer.size == 0:
        raise AudioError(url, "URL serves an empty file (0 bytes)")
    if answer.size is not None and answer.size > max_size:
        raise AudioError(url, f"URL serves {answer.size:,} bytes, over the limit of "
                              f"{max_size:,} (--max-file-size)")
