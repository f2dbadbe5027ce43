"""Preflight: the ids a manifest names (``group_id``, ``campaign_id``, ``channel_id``) are
looked up once each before anything is uploaded, so that a typo in one id makes its rows
``invalid`` up front instead of failing thousands of uploads one by one.

A group the user may not see is absent from their group list, so "does not exist" and "not
yours" are the same answer here. The channel list's path is a GUESS (the API notes name the
endpoint but not its path): if the API does not know that path, channel ids are not checked,
and a warning says so once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ..client.resources import RESOURCES, build_filter
from ..client.session import ConvirzaClient
from ..errors import Problem, RequestRejected

log = logging.getLogger("importer.preflight")

#: field in the manifest -> (lookup resource, filter column, what the user should see)
CHECKS: dict[str, tuple[str, str, str]] = {
    "group_id": ("groups", "group_id", "a group id this user can see"),
    "campaign_id": ("campaigns", "campaign_id", "an existing campaign id"),
    "channel_id": ("channels", "channel_id", "an existing channel id"),
}


class Preflight:
    """Checks ids against the API, each distinct id once per run (memory grows with the
    number of distinct ids, not rows)."""

    def __init__(self, client: ConvirzaClient) -> None:
        self._client = client
        self._known: dict[tuple[str, str], bool] = {}
        self._unchecked: set[str] = set()

    async def problems(self, rows: list[Mapping[str, Any] | None]) -> list[list[Problem]]:
        """For each row's normalized fields (None: already invalid), the ids it names that
        the API lacks."""
        wanted = {(f, v) for r in rows if r is not None for f in CHECKS
                  if (v := r.get(f)) is not None} - set(self._known)
        await asyncio.gather(*(self._look_up(f, v) for f, v in sorted(wanted)))
        found: list[list[Problem]] = []
        for fields in rows:
            row: list[Problem] = []
            for field, (_, _, expected) in CHECKS.items():
                value = fields.get(field) if fields is not None else None
                if value is not None and not self._known.get((field, value), True):
                    # The value is named by the Problem; ``expected`` stays the same for
                    # every unknown id, so that a summary counts them as one reason.
                    row.append(Problem(field, value, f"{expected}; not found at the API"))
            found.append(row)
        return found

    async def _look_up(self, field: str, value: str) -> None:
        name, column, _ = CHECKS[field]
        if field in self._unchecked:
            self._known[(field, value)] = True
            return
        try:
            hits = [o async for o in self._client.iterate(
                RESOURCES[name], filter=build_filter({column: value}), limit=1)]
        except RequestRejected as exc:
            if exc.status != 404:
                raise
            self._unchecked.add(field)
            log.warning("preflight: the API has no %s lookup (%s); %s values are not checked",
                        name, RESOURCES[name].path, field)
            self._known[(field, value)] = True
            return
        self._known[(field, value)] = bool(hits)
