"""``validate --explain-mapping``: which column feeds which upload field and why (its header
named it, a map chose it, a default fills it, it is ignored), with the first values of each,
before anything else is checked: a wrong guess is seen in the first lines of output, not in a
thousand invalid rows.
"""

from __future__ import annotations

from collections.abc import Mapping

from .names import NAME_FIELDS
from .opening import Manifest
from .values import BUILT_IN

_HOW = {"auto": "its header", "mapped": "mapped", "ignored": "ignored",
        "unknown": "unknown: not sent"}


def explain(manifest: Manifest, user_values: Mapping[str, Mapping[str, str]],
            samples: list[list[str]]) -> str:
    """The mapping of ``manifest`` as a table, with ``samples`` (``Manifest.samples``) and
    the value maps that apply to its fields."""
    plan = manifest.plan
    lines = [(column or "(blank)", field or "-", _HOW.get(how, how),
              ", ".join(_short(s) for s in shown) or "(empty)")
             for column, field, how, shown in zip(plan.headers, plan.fields, plan.how, samples,
                                                  strict=False)]
    columns = set(f for f in plan.fields if f)
    lines += [("(no column)", field, "--set / [defaults]", _short(value))
              for field, value in plan.defaults.items() if field not in columns]
    head = ("column", "field", "chosen by", "first values")
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(3)]
    text = [f"How {manifest.path.name} is read (header in row {manifest.header_row}):"]
    text += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
             + "  " + row[3] for row in [head, *lines]]
    text += _notes(plan.fields, plan.defaults, user_values)
    return "\n".join(text)


def _notes(fields: tuple[str | None, ...], defaults: Mapping[str, str],
           user_values: Mapping[str, Mapping[str, str]]) -> list[str]:
    used = {f for f in fields if f} | set(defaults)
    notes = []
    for pseudo in sorted(used & set(NAME_FIELDS)):
        target, resource, _, _ = NAME_FIELDS[pseudo]
        notes.append(f"{pseudo}: each name becomes its {target}, from the API's list of "
                     f"{resource} (read once, before the first row)")
    for field in sorted(used & (set(BUILT_IN) | set(user_values))):
        mine = user_values.get(field, {})
        words = [f"{k!r} -> {v}" for k, v in mine.items()]
        built = ", ".join(sorted(BUILT_IN.get(field, {})))
        notes.append(f"{field} values: " + "; ".join(
            part for part in ("yours: " + ", ".join(words) if words else "",
                              f"built in: {built}" if built else "") if part))
    return notes


def _short(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
