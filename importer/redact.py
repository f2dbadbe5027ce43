"""What may be shown: secrets blanked in every form they come back in, and text made safe for a
terminal.

A server that echoes a request's headers or body into its error message hands our secrets
back: the token as sent, in ``Authorization: Bearer ...`` and in that header's base64, the
password and client secret URL-encoded as the login form carried them. An error message travels
far (the ledger, the summary, ``--summary-json``, every report format, the logs), so the client
blanks secrets where answers come in, and the command line again in everything it writes, as a
last defence.

Manifest cells and headers are the user's data, and a terminal takes some of their characters as
commands (``ESC [2J`` clears the screen, ``ESC ]0;...`` retitles the window): ``printable`` shows
such characters escaped, never emits them.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "***"
#: A secret shorter than this is not looked for: blanking every "abc" would garble messages,
#: and no real credential is that short.
MIN_SECRET = 4
#: The shortest run of a secret's base64 that is blanked where it is found.
MIN_BASE64 = 8


def _forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` we blank: as it is, URL-encoded (as a path and as a form,
    upper- and lower-case escapes), JSON-escaped, and its base64 at each of the three byte
    alignments it can have inside a longer encoded text (``Bearer <token>`` encoded whole),
    standard and URL-safe."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in list(forms)}
    raw = secret.encode()
    for skip in range(3):
        part = raw[skip:]
        part = part[: len(part) // 3 * 3]
        if len(part) >= 3:
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                encoded = encode(part).decode()
                if len(encoded) >= MIN_BASE64:
                    forms.add(encoded)
    return {f for f in forms if len(f) >= MIN_SECRET}


class Redactor:
    """``redactor(text)``: ``text`` with every form of every secret replaced by ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET:
                forms |= _forms(secret)
        # Longest first, so that a form containing another is blanked whole.
        self._pattern = re.compile("|".join(re.escape(f) for f in sorted(
            forms, key=len, reverse=True))) if forms else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def __bool__(self) -> bool:
        return self._pattern is not None


#: Characters a terminal may act on: C0 controls but tab and newline, DEL, C1 controls; the
#: bidirectional controls that make text read other than it is (embeddings and overrides,
#: isolates, the left-to-right, right-to-left and Arabic letter marks: ``abc<U+202E>gnp.exe.wav``
#: shows as ``abcvaw.exe.png``); and the line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                     "\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on shown as an escape (``\\x1b``,
    ``\\u202e``): what a terminal shows, and every report format for people (the table, the
    HTML page, CSV for a spreadsheet) shows alike."""
    return _UNSAFE.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def html_text(text: str) -> str:
    """``text`` for an HTML page (or its SVG): controls shown as escapes (``printable``), then
    HTML's own characters escaped (``<script>`` in a manifest cell stays text)."""
    return html.escape(printable(text))
