"""A recording's call facts read from its file name, by a template (``scan``): user templates
such as ``{caller_id}-{ring_to}-{call_date:%Y%m%d-%H%M%S}-{external_id}.wav``, and presets for
the layouts PBXs and recording services write (``PRESETS``). Pure: names in, fields out.

A template is literal text with fields in braces: ``{field}`` (an upload field), ``{field:FMT}``
(a date in ``strftime`` directives, ``%s`` for epoch seconds), ``{direction}`` (``in``/``out``
and their PBX cousins, which decide ``is_outbound``) and ``{_}`` (a part of the name that is
not sent); ``*`` matches any run of characters within a folder. A template without ``/``
matches a file's name; with ``/``, its path below the scanned folder or prefix. Matching
ignores case. A name that does not fit is not guessed at: ``match`` returns None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .records import UPLOAD_FIELDS

#: Fields whose value is digits: matched as digits, so that neighbours split where they must.
_DIGITS = frozenset({"caller_id", "ring_to", "tracking_number", "group_id", "campaign_id",
                     "channel_id", "zip_code"})
_NOT_FROM_NAMES = frozenset({"recording_file", "recording_url"})
#: What a PBX's direction prefix means for ``is_outbound`` (FreePBX's MixMonitor prefixes).
DIRECTIONS = {"out": "true", "in": "false", "external": "false", "exten": "false",
              "q": "false", "rg": "false", "internal": "false"}
_DIRECTIVES = {"Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}",
               "I": r"\d{2}", "M": r"\d{2}", "S": r"\d{2}", "j": r"\d{3}", "f": r"\d{1,6}",
               "p": r"(?:AM|PM)", "b": r"[A-Za-z]{3}", "z": r"(?:[+-]\d{4}|Z)",
               "s": r"\d{9,11}", "%": "%"}
_FIELD = re.compile(r"\{([a-z_0-9]*)(?::([^}]*))?\}|\*")


@dataclass(frozen=True)
class Template:
    """A compiled template: its text, its pattern, its fields in order, and the zone a date
    without one is in (None: written without a zone, read in the run's --timezone)."""

    text: str
    pattern: re.Pattern[str]
    fields: tuple[str, ...]
    formats: dict[str, str] = field(default_factory=dict)
    zone: str | None = None

    @property
    def whole_path(self) -> bool:
        return "/" in self.text

    def match(self, relative: str) -> dict[str, str] | None:
        """The upload fields ``relative`` (a path below the scanned root, ``/`` separated)
        names, or None when it does not fit."""
        subject = relative if self.whole_path else relative.rpartition("/")[2]
        found = self.pattern.fullmatch(subject)
        if found is None:
            return None
        out: dict[str, str] = {}
        for name in self.fields:
            value = found.group(name)
            if name == "direction":
                if value.lower() not in DIRECTIONS:
                    return None
                out["is_outbound"] = DIRECTIONS[value.lower()]
            elif name in self.formats:
                when = _date(value, self.formats[name], self.zone)
                if when is None:
                    return None
                out[name] = when
            else:
                out[name] = value
        return out


def compile_template(text: str, zone: str | None = None) -> Template:
    """``text`` (or a preset's name) compiled; ``ValueError`` naming what is wrong."""
    if text in PRESETS:
        return compile_template(*PRESETS[text])
    parts: list[str] = []
    fields: list[str] = []
    formats: dict[str, str] = {}
    at = 0
    for token in _FIELD.finditer(text):
        _literal(text, text[at:token.start()])
        parts.append(re.escape(text[at:token.start()]))
        at = token.end()
        if token.group(0) == "*":
            parts.append(r"[^/]*")
            continue
        name, fmt = token.group(1), token.group(2)
        if name == "_":
            parts.append(r"[^/]+")
            continue
        _check_field(name, fmt, fields)
        fields.append(name)
        if fmt:
            formats[name] = fmt
        parts.append(f"(?P<{name}>{_regex(name, fmt)})")
    _literal(text, text[at:])
    parts.append(re.escape(text[at:]))
    if not fields:
        raise ValueError(f"template {text!r} names no field, e.g. {{external_id}}")
    return Template(text, re.compile("".join(parts), re.IGNORECASE), tuple(fields),
                    formats, zone)


def _literal(text: str, part: str) -> None:
    if "{" in part or "}" in part:
        raise ValueError(f"template {text!r}: an unclosed or stray brace")


def _check_field(name: str, fmt: str | None, seen: list[str]) -> None:
    from_names = {"direction", *UPLOAD_FIELDS} - _NOT_FROM_NAMES
    if name not in from_names:
        raise ValueError(f"{{{name}}} is not a field a file name can give (expected one of "
                         "external_id, call_date, caller_id, ring_to, ..., direction or _)")
    if name in seen:
        raise ValueError(f"{{{name}}} appears twice")
    if fmt and name != "call_date":
        raise ValueError(f"{{{name}:{fmt}}}: only call_date takes a date format")


def _regex(name: str, fmt: str | None) -> str:
    if fmt:
        out, i = [], 0
        while i < len(fmt):
            if fmt[i] == "%" and i + 1 < len(fmt):
                directive = fmt[i + 1]
                if directive not in _DIRECTIVES:
                    raise ValueError(f"%{directive} is not a date directive templates take "
                                     f"(%{', %'.join(sorted(_DIRECTIVES))})")
                out.append(_DIRECTIVES[directive])
                i += 2
            else:
                out.append(re.escape(fmt[i]))
                i += 1
        return "".join(out)
    if name == "direction":
        return "[A-Za-z]+"
    return r"\d+" if name in _DIGITS else r"[^/]+"


def _date(text: str, fmt: str, zone: str | None) -> str | None:
    """The date as ISO 8601 (with its zone when the name or the template gives one), or
    None when it is no date (month 13)."""
    try:
        if fmt == "%s":
            return datetime.fromtimestamp(int(text), UTC).isoformat()
        when = datetime.strptime(text, fmt)
    except ValueError:
        return None
    if when.tzinfo is None and zone == "UTC":
        when = when.replace(tzinfo=UTC)
    return when.isoformat()


#: Named layouts: (template, zone of its dates).
PRESETS: dict[str, tuple[str, str | None]] = {
    # Asterisk MixMonitor as FreePBX names it: in-<outside number>-<extension>-<date>-<time>-
    # <uniqueid>.wav (out-<number dialed>-<extension>-... for outbound calls). The outside
    # party is the caller_id either way; the extension is not sent (ring_to is a 10-digit
    # number: give it with --set when it is one line).
    "asterisk": ("{direction}-{caller_id}-{_}-{call_date:%Y%m%d-%H%M%S}-{external_id}.*", None),
    # Amazon Connect: CallRecordings/YYYY/MM/DD/<contactId>_<YYYYMMDDThh:mm>_UTC.wav; the
    # contact id is the call's external_id; the caller is not in the name.
    "connect": ("{external_id}_{call_date:%Y%m%dT%H:%M}_UTC.wav", "UTC"),
}
