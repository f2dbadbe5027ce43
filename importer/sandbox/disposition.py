"""A multipart part's ``Content-Disposition`` read as the wire carries it, so that the sandbox
stores a file name exactly as the client sent it and a test can tell how the client quoted it.

RFC 7578 (section 4.2) sends ``filename`` as an RFC 2616 quoted-string, its bytes UTF-8; RFC
5987 / RFC 6266 add ``filename*=UTF-8''percent-encoded``, which wins when both are present.
A plain ``filename="..."`` is *not* percent-decoded: a client that sends
``filename="Llamada%20Jos%C3%A9.wav"`` has sent a name with a literal ``%20`` in it, and that
is what the sandbox keeps.

aiohttp's ``BodyPartReader.filename`` is not used: it strips leading slashes and backslashes
(a file-saving server's precaution, not what was sent) and gives up on some headers a real
server would read. Inside quotes only ``\\"`` and ``\\\\`` are undone; any other backslash is
kept, because browsers (WHATWG's form encoding) send a backslash in a name unescaped.

aiohttp 3.14's multipart reader hands part headers over decoded as UTF-8 with
``surrogateescape``; other versions or servers decode header bytes as latin-1. ``wire_text``
recovers the bytes from either and reads them as UTF-8, so ``José`` ends as ``José`` both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

_ESCAPABLE = frozenset('"\\')


@dataclass(frozen=True)
class Disposition:
    """The disposition type (``form-data``) and its parameters, names lower-cased."""

    kind: str
    params: dict[str, str]

    @property
    def name(self) -> str | None:
        return self.params.get("name")

    @property
    def filename(self) -> str | None:
        """``filename*`` when it was sent and could be decoded, else ``filename``."""
        return self.params.get("filename*", self.params.get("filename"))


def wire_text(value: str) -> str:
    """A header value as its bytes read as UTF-8, whichever way the reader decoded them.

    Lone surrogates mean UTF-8 with ``surrogateescape`` (aiohttp): the bytes are restored and
    the ones that are not UTF-8 become U+FFFD (SQLite would refuse a surrogate). Text that is
    all below U+0100 and whose latin-1 bytes are UTF-8 with non-ASCII in them was decoded as
    latin-1 (``JosÃ©``), and is read again as UTF-8. Anything else is already right.
    """
    if any("\udc80" <= c <= "\udcff" for c in value):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if not value.isascii() and all(ord(c) < 0x100 for c in value):
        try:
            return value.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            return value  # true latin-1 text decoded as UTF-8 already, e.g. "é"
    return value


def _quoted(header: str, start: int) -> tuple[str, int]:
    """The quoted-string opening at ``header[start]`` (a ``"``), unescaped, and the index
    after its closing quote (or the end, when it is never closed)."""
    out: list[str] = []
    i = start + 1
    while i < len(header):
        c = header[i]
        if c == "\\" and i + 1 < len(header) and header[i + 1] in _ESCAPABLE:
            out.append(header[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return "".join(out), i


def _extended(value: str) -> str | None:
    """An RFC 5987 ``charset'language'percent-encoded`` value, or None when it is not one or
    names a charset Python does not know."""
    charset, sep, rest = value.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not (sep and sep2):
        return None
    try:
        return unquote_to_bytes(encoded).decode(charset or "utf-8", "replace")
    except LookupError:
        return None


def parse_disposition(header: str | None) -> Disposition:
    """``form-data; name="recording_file"; filename="a\\"b.wav"`` as a ``Disposition``.

    Lenient as a server is: a parameter without ``=`` is skipped, the first of two
    same-named parameters wins, an unclosed quote runs to the end of the header.
    """
    text = wire_text(header or "")
    kind, _, _ = text.partition(";")
    params: dict[str, str] = {}
    i = len(kind)
    while i < len(text):
        if text[i] in "; \t":
            i += 1
            continue
        eq, semi = text.find("=", i), text.find(";", i)
        if eq < 0 or (0 <= semi < eq):  # no value: skip to the next parameter
            i = semi if semi >= 0 else len(text)
            continue
        key = text[i:eq].strip().lower()
        i = eq + 1
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == '"':
            value, i = _quoted(text, i)
        else:
            end = text.find(";", i)
            end = end if end >= 0 else len(text)
            value, i = text[i:end].strip(), end
        if key.endswith("*"):
            decoded = _extended(value)
            if decoded is None:
                continue
            value = decoded
        params.setdefault(key, value)
    return Disposition(kind.strip().lower(), params)
