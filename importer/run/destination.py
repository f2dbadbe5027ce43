"""Convirza asked before a new ledger sends: the ledger is the importer's memory, and a lost,
copied or new one must not send again what Convirza already holds (``--find-existing``).

On a ledger that holds no row yet (``auto``, the default), a sample of the manifest's rows is
looked up first, by the external_id each will carry: its first rows (an earlier import that
stopped part-way went in order) and rows spread across it (a reservoir sample, drawn in the
same pass over the manifest that counts each group's rows). None found: the run sends as usual,
without a lookup per row, which a first migration must not pay. Some found: every row the
ledger has never sent is looked up before it is sent, and one found is recorded as found in
Convirza (succeeded, nothing sent). The decision is kept in the ledger, so that the next run of
the manifest (after a stop, a crash) and ``retry`` go on the same way. ``always`` looks every
such row up on any ledger; ``never`` asks nothing.

How a row is looked up, as ``verify`` does: for a group with ``n`` rows of the manifest, one
request asks for the group's call at offset ``100 * (n - 2) - 1``; none there, and the group's
calls are listed once (fewer than ``n - 2`` pages) into a table of external_ids, each row then
answered from it; otherwise each row is looked up by its external_id. A lookup that fails after
its retries is not "absent": the run stops with one line, the row stays pending, never sent on
a guess.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..client.lookups import LOOKUPS_AT_ONCE, MIN_LISTED, listing_limit
from ..client.resources import RESOURCES, Call, build_filter
from ..client.session import ConvirzaClient
from ..errors import (
    ApiError,
    ApiUnavailable,
    AuthError,
    ManifestError,
    NotTheApi,
    Stopped,
    UsageError,
)
from ..manifest.call_dates import RowContext
from ..manifest.identity import identify, in_shard, shard_key
from ..manifest.normalizers import normalize_id
from ..manifest.opening import Manifest, ManifestRow

log = logging.getLogger("importer.pipeline")

#: The sample: the manifest's first rows, and rows drawn evenly from all of it.
FIRST_ROWS = 10
SPREAD_ROWS = 10
CALLS = RESOURCES["calls"]


@dataclass(frozen=True)
class Survey:
    """What one pass over the manifest learned: the sample's rows (external_id, group_id,
    caller_id), and how many rows name each group."""

    sample: tuple[tuple[str, str, str], ...]
    groups: Counter[str]


def survey(manifest: Manifest, ctx: RowContext, auto_external_id: bool,
           shard: tuple[int, int] | None, seed: int = 0) -> Survey:
    """One pass over ``manifest`` (blocking: call it in a thread): identities only, no
    normalizing but the group's id. Memory: the sample and one count per group. A manifest
    that breaks part-way is surveyed up to the break: the run reads it as far, and stops
    there as it would have."""
    first: list[tuple[str, str, str]] = []
    spread: list[tuple[str, str, str]] = []
    groups: Counter[str] = Counter()
    draw = random.Random(seed)
    seen = 0
    for row in _rows(_until_broken(manifest.chunks())):
        identity = identify(row.values, ctx.base_dir, auto_external_id, ctx.paths)
        if not identity.external_id or (shard is not None and not in_shard(
                shard_key(identity, ctx.base_dir), shard)):
            continue
        group = _group(row.values.get("group_id", ""))
        groups[group] += 1
        one = (identity.external_id, group, row.values.get("caller_id", "").strip())
        if len(first) < FIRST_ROWS:
            first.append(one)
            continue
        seen += 1  # a reservoir over the rest: each row as likely as any other to be drawn
        if len(spread) < SPREAD_ROWS:
            spread.append(one)
        elif (pick := draw.randrange(seen)) < SPREAD_ROWS:
            spread[pick] = one
    return Survey(tuple(first + spread), groups)


def _rows(chunks: Iterator[list[ManifestRow]]) -> Iterable[ManifestRow]:
    return itertools.chain.from_iterable(chunks)


def _until_broken(chunks: Iterator[list[ManifestRow]]) -> Iterator[list[ManifestRow]]:
    try:
        yield from chunks
    except ManifestError:
        return


def _group(text: str) -> str:
    try:
        return normalize_id(text.strip())
    except ValueError:
        return text.strip()


@dataclass
class _Group:
    """One group's way of being asked: listed once (``listed``), or one lookup per row."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    listed: bool = False


@dataclass
class Decision:
    """What the check decided and found, for the summary; ``fresh``: on a new ledger."""

    look_first: bool
    why: str
    sampled: int = 0
    found_in_sample: int = 0
    fresh: bool = False

    def line(self, found: int, requests: int) -> str:
        """The summary's line: which way was taken, and why."""
        if not self.look_first:
            return (f"Convirza was asked first (a new ledger): {self.why}, so rows were sent "
                    "without a lookup each (--find-existing always looks each one up).")
        where = "a new ledger" if self.fresh else self.why
        return (f"Convirza was asked first ({where}): every row new to the ledger was looked "
                f"up before it was sent; {found} found in Convirza, not sent ({requests} "
                "requests).")


class Destination:
    """Rows looked up in Convirza before they are sent, for one run; ``requests`` counts what
    that cost."""

    def __init__(self, client: ConvirzaClient, groups: Counter[str] | None = None) -> None:
        self.client = client
        self.requests = 0
        self._counts = groups or Counter()
        self._groups: dict[str, _Group] = {}
        #: External ids of listed groups' calls: a temporary database (a file SQLite removes
        #: when it closes), not memory, since a group may hold millions of calls.
        self._listed = sqlite3.connect("", check_same_thread=False)
        self._listed.execute("CREATE TABLE calls (group_id TEXT, external_id TEXT)")
        self._listed.execute("CREATE INDEX calls_id ON calls (external_id, group_id)")

    def close(self) -> None:
        self._listed.close()

    async def sample(self, rows: Iterable[tuple[str, str, str]], concurrency: int) -> int:
        """How many of the sample's rows Convirza holds (``ApiError`` when it cannot say)."""
        slots = asyncio.Semaphore(concurrency)

        async def one(external_id: str, group: str, caller: str) -> bool:
            async with slots:
                return await self._look_up(external_id, group, caller)

        async with asyncio.TaskGroup() as tasks:
            found = [tasks.create_task(one(*row)) for row in rows]
        return sum(task.result() for task in found)

    async def holds(self, external_id: str, group: str, caller: str) -> bool:
        """Whether Convirza holds a call with this external_id (``ApiError`` when it cannot
        say): from the group's listing when listing it pays, else by one lookup."""
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = _Group()
            try:
                state.listed = await self._list(group)
            finally:
                state.ready.set()
        else:
            await state.ready.wait()
        if state.listed:
            return self._listed.execute(
                "SELECT 1 FROM calls WHERE external_id = ? AND group_id = ?",
                (external_id, group)).fetchone() is not None
        return await self._look_up(external_id, group, caller)

    async def _list(self, group: str) -> bool:
        """List the group's calls once when that costs fewer requests than a lookup per row
        (see the module docstring); False when it does not, or the API refuses to."""
        n = self._counts[group]
        if n < MIN_LISTED or not group.isdigit():
            return False
        self.requests += 1
        try:
            if not await self.client.group_smaller_than(group, listing_limit(n)):
                return False
        except (AuthError, NotTheApi):
            raise
        except ApiError as exc:
            log.debug("group %s: cannot size it (%s); looking its rows up one by one", group, exc)
            return False
        seen = 0
        batch: list[tuple[str, str]] = []
        async for call in self.client.iterate(CALLS, filter=build_filter({"group_id": group})):
            seen += 1
            if isinstance(call, Call) and call.external_id:
                batch.append((group, call.external_id))
            if len(batch) >= 1000:
                self._listed.executemany("INSERT INTO calls VALUES (?, ?)", batch)
                batch = []
        self._listed.executemany("INSERT INTO calls VALUES (?, ?)", batch)
        self.requests += seen // 100 + 1
        return True

    async def _look_up(self, external_id: str, group: str, caller: str) -> bool:
        self.requests += 1
        narrow = {k: v for k, v in (("group_id", group), ("caller_id", caller)) if v}
        try:
            return bool(await self.client.find_calls(external_id, narrow))
        except UsageError:  # a comma, and nothing to narrow by: cannot be asked
            return False


async def decide(destination: Destination, found: Survey, concurrency: int) -> Decision:
    """On a new ledger: the sample looked up, and whether every row is to be looked up."""
    try:
        hits = await destination.sample(found.sample, max(concurrency, LOOKUPS_AT_ONCE))
    except* (AuthError, NotTheApi):
        raise
    except* Stopped:  # a stop request ended the lookups' waits: said as itself, not a group
        raise Stopped() from None
    except* ApiError as group:
        exc = group.exceptions[0]
        raise ApiUnavailable(
            f"cannot ask Convirza whether this manifest is already imported ({exc}): nothing "
            "was sent; run again once it answers, or pass --find-existing never to send "
            "without asking", status=getattr(exc, "status", None)) from None
    n = len(found.sample)
    if hits:
        return Decision(True, f"{hits} of {n} sample rows are in Convirza already", n, hits)
    return Decision(False, f"none of {n} sample rows is in Convirza yet", n, 0)
