"""One of a run's workers: a row from the queue, its earlier request reconciled if its outcome
is unknown, its recording checked (``vetting``), sent (``sending``), its outcome recorded.
"""

from __future__ import annotations

import asyncio

from ..events import Outcome, RowEvent
from .context import Job, RunContext
from .guard import WAIT
from .sending import Sender
from .vetting import Claim, Vetting


async def work(ctx: RunContext, queue: asyncio.Queue[Job | None], vetting: Vetting,
               sender: Sender) -> None:
    """Take rows until the end-marker (None); after a stop, drain the queue (the rows stay
    pending for the next run)."""
    while (job := await queue.get()) is not None:
        if ctx.stopping.is_set():
            continue
        if job.reconcile and ctx.sends and await sender.reconcile(job):
            continue  # a lookup, not an upload: no budget spent
        if job.look_first and ctx.sends and await sender.found_before(job):
            continue  # in Convirza already (or it cannot be asked: the run stops)
        if ctx.sends and not await _reserve(ctx):
            continue
        claim = Claim(job.key)
        try:
            await _one(ctx, job, claim, vetting, sender)
        finally:
            vetting.release(claim)
            if ctx.sends and not claim.sent:  # not sent after all: the budget is free
                ctx.guard.unreserve()
                ctx.budget_freed()


async def _reserve(ctx: RunContext) -> bool:
    """One upload of the budgets reserved for the row before it is checked (so that workers
    checking rows at once never start more than ``--max-uploads``), waiting while the rows
    that hold the rest may yet not be sent; False when a budget is spent (the run stops) or
    the run is stopping."""
    while not ctx.stopping.is_set():
        verdict = ctx.guard.before_upload()
        if verdict is None:
            return True
        if verdict is not WAIT:
            ctx.halt(verdict)
            return False
        await ctx.budget_changes()
    return False


async def _one(ctx: RunContext, job: Job, claim: Claim, vetting: Vetting,
               sender: Sender) -> None:
    fit, info = await vetting.vet(job, claim)
    if not fit:
        return
    if not ctx.sends:
        ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.VALID,
                                   size=info.size if info else 0))
        return
    if ctx.stopping.is_set() and not claim.claimed:
        return  # stopped while it was checked, or waited on its twin: it stays pending
    ctx.guard.upload_started()
    claim.sent = True
    if job.reconcile:  # looked up and not found (or --on-unknown=resend)
        ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.RESENDING))
    if not claim.claimed:  # a URL row: nothing probed, nothing stored yet
        await ctx.ledger.uploading(job.key, job.record.external_id)
    if await sender.send(job, info):
        claim.imported = job.key
