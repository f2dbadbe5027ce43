"""Summaries of runs and ledgers for people: the end-of-run account (what was done, what is
left and how to finish it), and a ledger's counts and commonest reasons (``report``), as text
or as data for JSON.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..events import PaceFound, RunSummary
from ..ledger.figures import Figures
from ..ledger.states import Status
from ..ledger.stats import collect
from ..ledger.store import Ledger
from ..settings.units import duration_text


def summary_text(summary: RunSummary, *, reasons: int = 5) -> str:
    """The end-of-run account, a few lines for the terminal or the cron mail, with the
    ``reasons`` most common problems (``validate`` asks for more: it is there to list them)."""
    c = summary.counts
    seconds = summary.elapsed
    done = c["succeeded"]
    lines = []
    if summary.rows and summary.rows == c["skipped"]:
        lines.append(f"Nothing to upload: all {summary.rows} rows were already done "
                     f"(ledger {summary.ledger}).")
    elif summary.invalid_left is not None and not summary.rows:
        lines.append(f"Nothing to retry in {summary.ledger}" + (
            "." if summary.exit_code == 0 else ", but it is not done:"))
    else:
        parts = [f"{n} {name}" for name, n in sorted(c.items())
                 if n and name not in ("retries", "other shards")]
        lines.append(f"{summary.rows} rows in {seconds:.1f}s: {', '.join(parts) or 'none'}.")
        if c["other shards"]:
            lines[-1] += f" {c['other shards']} rows of other shards passed over."
    if done and seconds > 0:
        lines.append(f"Uploaded {done} recording{'s' if done != 1 else ''}, "
                     f"{summary.bytes_sent / 1e6:.1f} MB, "
                     f"{done / seconds:.1f} files/s.")
    if c["retries"]:
        lines.append(f"{c['retries']} retr{'ies' if c['retries'] != 1 else 'y'} (failed "
                     "attempts tried again).")
    lines.extend(_identity_text(summary))
    lines.extend(pace_text(summary.pace, summary.counts["succeeded"]))
    if summary.errors:
        lines.append("Top errors:" if reasons <= 5 else
                     "Problems by reason (a row may have several):")
        lines.extend(f"  {n:>6}  {reason}" for reason, n in summary.errors.most_common(reasons))
        if len(summary.errors) > reasons:
            lines.append(f"  ... and {len(summary.errors) - reasons} other reasons")
    if summary.invalid_left:
        lines.append(_invalid_left_text(summary.invalid_left, summary.ledger or "LEDGER"))
    lines.extend(_left_text(summary))
    if summary.left and summary.invalid_left is None:
        lines.append(f"Left to do: {summary.left} row{'s' if summary.left != 1 else ''} "
                     "(pending, of unknown outcome, or never read).")
    if summary.stopped:
        then = "Fix the manifest, then run" if summary.exit_code == 2 else "Run"
        lines.append(f"Stopped early: {summary.stopped}. {then} the same command again to go on.")
    if summary.ledger:
        lines.append(f"Ledger: {summary.ledger}")
    return "\n".join(lines)


def _identity_text(summary: RunSummary) -> list[str]:
    """What the run found already there, or left for later: rows of calls imported before,
    rows of one call, rows sharing audio with other calls, the check before sending, rows too
    new for ``--min-age``."""
    c = summary.counts
    lines = []
    if c["already imported"]:
        lines.append(f"{c['already imported']} row{'s' if c['already imported'] != 1 else ''} "
                     "named a recording already imported under another key (the same file "
                     "unchanged, or the same call: audio, date, caller and group): not sent "
                     "again (`report --status succeeded` shows each with same_as).")
    if summary.same_audio:
        n = summary.same_audio
        lines.append(f"{n} row{'s are' if n != 1 else ' is'} the same call as another row "
                     "(the same audio, date, caller and group): " +
                     ("run sends one of them." if summary.ledger is None else
                      "sent anyway (--send-same-audio)."))
    if summary.find_existing:
        lines.append(summary.find_existing)
    if c["too new"]:
        n = c["too new"]
        age = duration_text(summary.min_age) if summary.min_age else "AGE"
        lines.append(f"{n} recording{'s' if n != 1 else ''} modified within --min-age {age} "
                     f"{'were' if n != 1 else 'was'} left for the next run.")
    if summary.shared_audio:
        n = summary.shared_audio
        lines.append(f"{n} row{'s hold' if n != 1 else ' holds'} the same audio as another "
                     "call (their date, caller, group or external_id differ): imported as "
                     "calls of their own.")
    return lines


def _left_text(summary: RunSummary) -> list[str]:
    """What a retry left for a later retry or run, each with the command that sends it."""
    ledger = summary.ledger or "LEDGER"
    lines = []
    if summary.pending_left and summary.stop_reason is None:
        n = summary.pending_left
        lines.append(f"{n} row{'s are' if n != 1 else ' is'} still pending (not picked by "
                     f"--status, or not sendable yet): `convirza-import retry {ledger}` sends "
                     f"{'them' if n != 1 else 'it'}.")
    for manifest, about, why in summary.unread:
        many = f"about {about} rows" if about is not None else "rows"
        lines.append(f"{many} of {manifest} were never read (its last run {why}): "
                     f"`convirza-import run {manifest} --ledger {ledger}` sends them.")
    return lines


def _invalid_left_text(n: int, ledger: str) -> str:
    """What to do with the invalid rows a retry cannot send."""
    rows, it, they = ("row is", "it", "it") if n == 1 else ("rows are", "them", "they")
    return (f"{n} {rows} invalid: retry does not send {it}, since {they} never passed the "
            f"checks; fix {it} in the manifest and run it again with `convirza-import run "
            f"MANIFEST --ledger {ledger}` (`convirza-import report {ledger} --status invalid` "
            f"lists {it}, with what is wrong).")


def ledger_summary(ledgers: list[Ledger]) -> dict[str, Any]:
    """Counts by state, error reasons and runs of each ledger, and their total: the morning-
    after answer to "did everything arrive, and if not, why"."""
    parts = []
    total: Counter[str] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()
    for ledger in ledgers:
        counts = {s.value: n for s, n in ledger.counts().items()}
        total.update(counts)
        found = ledger.reasons()
        reasons.update({(s.value, r): n for s, r, n in found})
        parts.append({
            "ledger": str(ledger.path), "counts": counts,
            "figures": collect([ledger.path], reasons=0, problems=0).figures().as_dict(),
            "reasons": [{"status": s.value, "reason": r, "rows": n} for s, r, n in found],
            "runs": [{"run": r.id, "command": r.command, "manifest": r.manifest,
                      "started_at": r.started_at, "finished_at": r.finished_at,
                      "exit_code": r.exit_code, "counts": r.summary.get("counts", {}),
                      "reasons": r.summary.get("top_errors", {}),
                      "stopped": r.summary.get("stopped"),
                      "pace": r.summary.get("pace")} for r in ledger.runs()],
        })
    return {
        "total": {"counts": {s.value: total[s.value] for s in Status},
                  "rows": sum(total.values()),
                  "figures": _total_figures(ledgers, parts),
                  "reasons": [{"status": s, "reason": r, "rows": n}
                              for (s, r), n in reasons.most_common(10)]},
        "ledgers": parts,
    }


def _total_figures(ledgers: list[Ledger], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The ledgers' figures added up (their rates from their minutes together)."""
    if len(ledgers) == 1:
        return dict(parts[0]["figures"])
    figures: Figures = collect([ledger.path for ledger in ledgers], reasons=0,
                               problems=0).figures()
    return figures.as_dict()


#: A run that met this many pauses, or this share of 429s, is told the rate to ask for.
PAUSES_WORTH_A_WORD = 3
SHARE_WORTH_A_WORD = 0.02


def pace_text(pace: PaceFound | None, sent: int = 0) -> list[str]:
    """What the run learned of the API's pace, in words: where it started, what the API
    allowed, and, when the rate asked was refused often, the rate to ask for instead."""
    if pace is None:
        return []
    lines = []
    if pace.started_from is not None:
        lines.append(f"Started at the pace the API allowed on the last run of this ledger, "
                     f"about {pace.started_from:.1f} requests a second (--rate {pace.asked:g} "
                     "asked).")
    if pace.refused and pace.allowed is not None:
        n = pace.refused
        lines.append(f"The API allowed about {pace.allowed:.1f} requests a second; {n} "
                     f"answer{'s were' if n != 1 else ' was'} 429 (Too Many Requests), in "
                     f"{pace.pauses} pause{'s' if pace.pauses != 1 else ''}.")
        often = pace.pauses >= PAUSES_WORTH_A_WORD or \
            pace.refused >= SHARE_WORTH_A_WORD * (sent + pace.refused)
        if often and pace.allowed < pace.asked:
            lines.append(f"--rate {max(1, int(pace.allowed * 0.95))} would avoid them (the "
                         "ledger remembers the pace: its next run starts there).")
    return lines


def summary_report_text(summary: dict[str, Any]) -> str:
    lines: list[str] = []
    parts = summary["ledgers"]
    for part in parts:
        lines.append(f"Ledger {part['ledger']}")
        lines.extend("  " + line for line in _counts_lines(part["counts"]))
        lines.extend("  " + line for line in figures_lines(part["figures"]))
        if part["reasons"]:
            lines.append("  Reasons:")
            lines.extend(f"  {r['rows']:>8}  {r['status']:<8} {r['reason']}"
                         for r in part["reasons"][:10])
        if part["runs"]:
            lines.append("  Runs:")
            for run in part["runs"][-10:]:
                counts = ", ".join(f"{n} {k}" for k, n in sorted(run["counts"].items()) if n)
                ended = "running or killed" if run["finished_at"] is None else \
                    f"exit {run['exit_code']}"
                lines.append(f"    #{run['run']:<4} {run['command']:<8} "
                             f"{run['started_at'][:19].replace('T', ' ')}  {ended:<17} "
                             f"{counts or 'no rows'}")
                pace = PaceFound.from_dict(run.get("pace"))
                if pace is not None and pace.refused and pace.allowed is not None:
                    lines.append(f"{'':>11}the API allowed about {pace.allowed:.1f} requests "
                                 f"a second ({pace.refused} answers 429, --rate "
                                 f"{pace.asked:g} asked)")
                lines.extend(f"{'':>11}{n:>6}  {reason}"
                             for reason, n in list(run["reasons"].items())[:3])
    if len(parts) > 1:
        lines.append(f"Total over {len(parts)} ledgers")
        lines.extend("  " + line for line in _counts_lines(summary["total"]["counts"]))
        lines.extend("  " + line for line in figures_lines(summary["total"]["figures"]))
        if summary["total"]["reasons"]:
            lines.append("  Reasons:")
            lines.extend(f"  {r['rows']:>8}  {r['status']:<8} {r['reason']}"
                         for r in summary["total"]["reasons"])
    return "\n".join(lines)


def _counts_lines(counts: dict[str, int]) -> list[str]:
    width = max(len(s.value) for s in Status)
    lines = [f"{s.value:<{width}}  {counts.get(s.value, 0):>8}" for s in Status]
    lines.append(f"{'total':<{width}}  {sum(counts.values()):>8}")
    return lines


def figures_lines(f: dict[str, Any]) -> list[str]:
    """The figures under the counts, as the HTML page and the JSON give them."""
    left = [f"{f['pending']} pending"] + [f"{f['uploading']} of unknown outcome"] * bool(
        f["uploading"]) + [f"{f['unread']} never read"] * bool(f["unread"])
    return [f"left to do {f['left']} ({', '.join(left)}) of {f['rows_known']} rows known",
            f"retries {f['retries']}; uploads a minute {f['average_per_minute']:.1f} on "
            f"average, {f['recent_per_minute']:.1f} recently"]


def counts_text(ledger: Ledger) -> str:
    return "\n".join(_counts_lines({s.value: n for s, n in ledger.counts().items()}))
