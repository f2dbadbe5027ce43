"""Logging set-up for the command line: text or JSON lines on stderr, and a last-line defence
that blanks any secret that would reach the output anyway."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

REDACTED = "***"


class SecretFilter(logging.Filter):
    """Replaces every known secret in a record's final message with ``***``."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            for secret in self._secrets:
                message = message.replace(secret, REDACTED)
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


def configure(fmt: str, level: int, secrets: list[str]) -> None:
    """Route the importer's logs to stderr in ``fmt`` (text or json) at ``level``."""
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
