"""Value maps: a legacy export's words for what the API spells its own way ("Outbound" for
``is_outbound=true``, "Missed" for ``NO ANSWER``). A source value is looked up
case-insensitively, spaces collapsed, in the user's map for its field (``[values.FIELD]`` in
the columns file, ``--value``), then in the spellings built in here, and what it maps to goes
through the field's normalizer as if the cell had said it.

Built in only where the meaning is not in doubt. "Voicemail" is not: a call that reached a
voicemail box was not answered by a person, yet the line was answered; the account decides,
with ``[values.disposition] Voicemail = "NO ANSWER"`` (or ``ANSWERED``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from ..errors import UsageError

_SPACES = re.compile(r"[\s_]+")

#: field -> source spelling (a ``value_key``) -> the value the field's normalizer takes.
BUILT_IN: dict[str, dict[str, str]] = {
    "is_outbound": {
        "outbound": "true", "outgoing": "true", "out": "true", "dialed": "true",
        "inbound": "false", "incoming": "false", "in": "false", "received": "false",
    },
    "disposition": {
        "answered": "ANSWERED", "connected": "ANSWERED", "completed": "ANSWERED",
        "no answer": "NO ANSWER", "not answered": "NO ANSWER", "unanswered": "NO ANSWER",
        "missed": "NO ANSWER", "noanswer": "NO ANSWER",
        "busy": "BUSY", "line busy": "BUSY", "user busy": "BUSY",
    },
}
#: Fields whose values come from a short list: their errors say how to map other words.
MAPPABLE: frozenset[str] = frozenset({"disposition", "is_outbound", "swap_channels",
                                      "transcribe", "line_type"})


@lru_cache(maxsize=4096)
def value_key(text: str) -> str:
    """``" No_Answer "`` -> ``no answer``: how source values are compared."""
    return _SPACES.sub(" ", text).strip().casefold()


def value_maps(user: Mapping[str, Mapping[str, str]],
               known: Iterable[str] = ()) -> dict[str, dict[str, str]]:
    """The maps a run applies, field by field: the user's entries over the built-in ones,
    keys made comparable once. A field not in ``known`` (when given) is refused, with the
    nearest one: a map for ``dispositon`` would otherwise never apply, without a word."""
    fields = list(known)
    for name in user:
        if fields and name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            raise UsageError(f"value map for {name!r}: no such upload field"
                             + (f" (did you mean {close[0]}?)" if close else ""))
    maps = {name: dict(entries) for name, entries in BUILT_IN.items()}
    for name, entries in user.items():
        maps.setdefault(name, {}).update({value_key(k): str(v) for k, v in entries.items()})
    return maps


def mapping_hint(field: str) -> str:
    """What an error about a value of ``field`` adds: where other words are mapped."""
    return (f" (map other words under [values.{field}] in the columns file, or with --value "
            f"'{field}:WORD=VALUE')")
