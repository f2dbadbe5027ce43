"""When a run asks Convirza before it sends: the decision for this run's manifest (kept in the
ledger, or made now from a sample by ``destination.decide``) and the run's summary line of it.
Apart from ``destination`` because it reads and sets the run's context, which holds the
destination: one import each way would be a cycle."""

from __future__ import annotations

import asyncio

from ..errors import Stopped
from ..events import Outcome
from ..manifest.call_dates import RowContext
from ..manifest.opening import Manifest
from .context import RunContext
from .destination import Decision, Destination, decide, survey


def summary_line(ctx: RunContext) -> str | None:
    """The run's summary line of what the check decided and found, if Convirza was asked."""
    if ctx.decision is None:
        return None
    requests = ctx.destination.requests if ctx.destination is not None else 0
    return ctx.decision.line(ctx.outcomes.summary.counts[Outcome.FOUND_IN_CONVIRZA.value],
                             requests)


async def ask_first(ctx: RunContext, manifest: Manifest | None, rows: RowContext) -> None:
    """Set the run's ``destination`` when its rows are to be looked up before they are sent
    (see the module docstring), and its ``decision`` when Convirza was asked. Call it before
    the run's first row is admitted (it tells a new ledger by its having no row)."""
    ctx.decision = await _decide(ctx, manifest, rows)


async def _decide(ctx: RunContext, manifest: Manifest | None,
                  rows: RowContext) -> Decision | None:
    s, client = ctx.settings, ctx.client
    if s.find_existing == "never" or client is None or not ctx.mode.sends:
        return None
    fresh = not any((await ctx.ledger.counts()).values())
    kept = await ctx.ledger.find_existing()
    if manifest is None:  # retry: rows of manifests whose check said to look first
        ctx.look_first = {m for m, (look, _) in kept.items() if look}
        if s.find_existing == "always" or ctx.look_first:
            ctx.destination = Destination(client)
            return Decision(True, "as the first run of their manifest decided")
        return None
    if s.find_existing == "always":
        decision: Decision | None = Decision(True, "--find-existing always")
    elif ctx.origin in kept:
        decision = Decision(*kept[ctx.origin])
        if not decision.look_first:
            return None  # said when it was decided
    elif not fresh:
        return None  # a ledger in use: what it holds is what was sent
    else:
        decision = None
    shard = s.shard_of if s.shard is not None else None
    found = await asyncio.to_thread(survey, manifest, rows, s.auto_external_id, shard)
    destination = Destination(client, found.groups)
    if decision is None:
        try:
            decision = await decide(destination, found, s.concurrency)
        except Stopped:  # the run is stopping before its first row: nothing decided
            destination.close()
            return None
        except BaseException:
            destination.close()
            raise
        await ctx.ledger.decide_find_existing(ctx.origin, decision.look_first, decision.why)
    if decision.look_first:
        ctx.destination = destination
    else:
        destination.close()
    decision.fresh = fresh
    return decision
