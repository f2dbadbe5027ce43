"""Names to ids: a legacy export names its groups, campaigns and channels ("Acme Plumbing",
"Spring Promo") where the upload wants their ids. A column mapped onto one of the pseudo-fields
below is resolved, case-insensitively and with spaces collapsed, through a table the run reads
from the API once before its first row (``run/names.py``); this module is the pure half: the
table and what a cell that does not resolve says (the closest names, or the ids of a name that
several share).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NoReturn

#: pseudo-field -> (the upload field it fills, the lookup that lists the names, its name
#: column, what one is called). ``campaign_ext_id``: a campaign known by the account's own id
#: for it; ``group_ext_id`` is an upload field already, so the API resolves that one itself.
NAME_FIELDS: dict[str, tuple[str, str, str, str]] = {
    "group_name": ("group_id", "groups", "group_name", "group"),
    "campaign_name": ("campaign_id", "campaigns", "campaign_name", "campaign"),
    "campaign_ext_id": ("campaign_id", "campaigns", "campaign_ext_id", "campaign"),
    "channel_name": ("channel_id", "channels", "channel_name", "channel"),
}
#: How many close names an unknown one is shown with.
SUGGESTIONS = 3
_SPACES = re.compile(r"\s+")


def name_key(text: str) -> str:
    """``"  ACME  plumbing "`` -> ``acme plumbing``: how names are compared."""
    return _SPACES.sub(" ", text).strip().casefold()


@dataclass(frozen=True)
class NameTable:
    """Every name of the pseudo-fields a manifest uses, as the API listed them: for each
    pseudo-field, a name's key -> the ids that carry it (two groups may share a name).
    Plain dicts, so that the reader's second process gets it pickled."""

    ids: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    #: The names as the API spells them, per pseudo-field, for suggestions.
    spelled: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, listed: Mapping[str, Iterable[tuple[str, str]]]) -> NameTable:
        """From ``{pseudo-field: [(name, id), ...]}`` as the lookups returned them."""
        ids: dict[str, dict[str, tuple[str, ...]]] = {}
        spelled: dict[str, tuple[str, ...]] = {}
        for pseudo, pairs in listed.items():
            table: dict[str, tuple[str, ...]] = {}
            names: dict[str, None] = {}
            for name, object_id in pairs:
                key = name_key(name)
                if key and object_id not in table.get(key, ()):
                    table[key] = (*table.get(key, ()), object_id)
                    names[_SPACES.sub(" ", name).strip()] = None
            ids[pseudo] = table
            spelled[pseudo] = tuple(names)
        return cls(ids, spelled)

    def resolve(self, pseudo: str, text: str) -> str:
        """The one id that ``text`` names, or ``ValueError`` saying why not and what is near."""
        _, _, _, kind = NAME_FIELDS[pseudo]
        found = self.ids.get(pseudo, {}).get(name_key(text), ())
        if len(found) == 1:
            return found[0]
        if found:
            _ambiguous(kind, pseudo, found)
        close = difflib.get_close_matches(
            name_key(text), [name_key(n) for n in self.spelled.get(pseudo, ())],
            n=SUGGESTIONS, cutoff=0.5)
        by_key = {name_key(n): n for n in self.spelled.get(pseudo, ())}
        hint = f" (closest: {', '.join(repr(by_key[k]) for k in close)})" if close else \
            f" (none is near it among the {len(by_key)} the API lists)"
        raise ValueError(f"the {pseudo.replace('_', ' ')} of a {kind} the API lists{hint}")


def _ambiguous(kind: str, pseudo: str, ids: tuple[str, ...]) -> NoReturn:
    target = NAME_FIELDS[pseudo][0]
    shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
    raise ValueError(f"a {pseudo.replace('_', ' ')} only one {kind} has ({len(ids)} have it: "
                     f"ids {shown}; give {target} for these rows, or rename one in Convirza)")


#: The stand-in id of a name when no API could be asked (``validate`` without credentials):
#: the rest of the row is checked, and nothing is sent by validate.
NOT_LOOKED_UP = "0"
