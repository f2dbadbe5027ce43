"""Logging set-up for the command line: text or JSON lines on stderr, with a last-line defence
that blanks any secret (in any form ``redact`` knows) and escapes anything a terminal would act
on, and the same two defences for what the command line prints or writes (``shown``,
``scrubbed``)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from ..redact import Redactor, printable

#: The secrets of this command, once known (``configure``, ``remember_secrets``).
_redactor = Redactor(())


class SecretFilter(logging.Filter):
    """Replaces every known secret in a record's final message with ``***`` and escapes the
    characters a terminal would act on (a manifest's cells and headers are the user's data)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = printable(self._redact(record.getMessage()))
        record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


def remember_secrets(secrets: Iterable[str]) -> None:
    """The secrets that ``shown`` and ``scrubbed`` blank, as far as they are known (before the
    settings are: those in the environment)."""
    global _redactor
    _redactor = Redactor(secrets)


def shown(text: str) -> str:
    """``text`` as it may be printed to a terminal: secrets blanked, controls escaped."""
    return printable(_redactor(text))


def scrubbed(text: str) -> str:
    """``text`` as it may be written to a file: secrets blanked."""
    return _redactor(text)


def configure(fmt: str, level: int, secrets: Iterable[str]) -> None:
    """Route the importer's logs to stderr in ``fmt`` (text or json) at ``level``."""
    secrets = list(secrets)
    remember_secrets(secrets)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger("importer")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
