"""The upload field rules as the API notes record them (Convirza's own QA suite), with their
messages. Written from ../shared/api/NOTES.md, not from the importer's validators: the sandbox
must be able to disagree with the importer, or our tests would only agree with themselves.
"""

from __future__ import annotations

import re
from datetime import datetime

KNOWN_FIELDS = frozenset({
    "recording_file", "recording_url", "call_date", "group_id", "group_ext_id", "external_id",
    "channel_id", "campaign_id", "caller_id", "tracking_number", "disposition", "line_type",
    "ring_to", "assign_to", "custom_source_type_1", "custom_source_type_2",
    "custom_source_type_3", "custom_source_type_4", "custom_source_type_5", "company_name",
    "city", "zip_code", "caller_name", "address", "state", "swap_channels", "is_outbound",
    "tag_name", "transcribe",
})
#: The older API named the file part ``file``; both are taken.
FILE_FIELDS = frozenset({"recording_file", "file"})
REQUIRED = ("call_date", "group_id", "caller_id")
INTEGER_FIELDS = ("group_id", "campaign_id", "channel_id", "caller_id")
BOOLEAN_FIELDS = ("swap_channels", "is_outbound", "transcribe")
TEXT_FIELDS = ("line_type", "caller_name", "company_name", "state", "city", "assign_to",
               "tag_name")
DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY")
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$")


def check_fields(fields: dict[str, str], has_file: bool) -> list[str]:
    """Every problem with an upload's text fields, as the API words them; empty when valid."""
    problems: list[str] = []
    for name in sorted(set(fields) - KNOWN_FIELDS):
        problems.append(f"Invalid parameter ({name}): property is not allowed")
    for name in REQUIRED:
        if name not in fields:
            problems.append(f"Invalid parameter ({name}): Value is required but was not provided")
    for name in INTEGER_FIELDS:
        value = fields.get(name)
        if value is not None and not (value.isascii() and value.isdigit()):
            problems.append(f"Invalid parameter ({name}): Expected type integer but found type "
                            "string")
    for name in BOOLEAN_FIELDS:
        value = fields.get(name)
        if value is not None and value not in ("true", "false"):
            problems.append(f"Invalid parameter ({name}): Expected type boolean but found type "
                            "string")
    for name in TEXT_FIELDS:
        value = fields.get(name)
        if value is not None and not value.strip():
            problems.append(f"{name}: Value required but was not provided")
    date = fields.get("call_date")
    if date is not None and not _valid_date_time(date):
        problems.append("Failed to upload File. Please enter valid date and time.")
    _digits(fields, "ring_to", 10, 10, "Failed to upload File . Please enter valid ring to.",
            problems)
    _digits(fields, "tracking_number", 10, 15,
            "Failed to upload File . Please enter valid tracking number.", problems)
    _digits(fields, "zip_code", 5, 5, "Please enter valid zip code.", problems)
    if "disposition" in fields and fields["disposition"] not in DISPOSITIONS:
        problems.append("Invalid disposition.")
    url = fields.get("recording_url")
    if has_file and url is not None:
        problems.append("Send either recording_file or recording_url, not both.")
    elif not has_file and url is None:
        problems.append("Failed to upload File . Please enter call recording file.")
    elif url is not None and not re.match(r"^https?://[^\s/]+", url):
        problems.append("Invalid parameter (recording_url): must be an http(s) URL")
    return problems


def _valid_date_time(text: str) -> bool:
    if not _DATE_TIME.match(text):
        return False
    try:
        datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def _digits(fields: dict[str, str], name: str, low: int, high: int, message: str,
            problems: list[str]) -> None:
    value = fields.get(name)
    if value is None:
        return
    if not (value.isascii() and value.isdigit() and low <= len(value) <= high):
        problems.append(message)


def audio_kind(head: bytes) -> str | None:
    """``mp3`` or ``wav`` from a file's first bytes, else None ("Invalid audio format.")."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None
