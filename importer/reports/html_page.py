"""``report --format html``: one self-contained page that shows a migration at a glance.

Everything the page needs is in the file (styles, SVG charts; no script, font or image is
fetched), so that it opens from disk or as an e-mail attachment with no network, and prints
to PDF as it shows. Every chart has a title and a description that screen readers announce,
and a data table under it (folded away on screen, left out in print, where the chart says
it). Text from the ledger (errors, keys, file names) is escaped: a manifest cell can hold
anything, ``<script>`` included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..ledger.figures import Figures
from ..ledger.states import Status
from ..ledger.stats import Example, LedgerStats, RunFacts, Timeline, timeline, when
from ..redact import html_text
from .charts import Series, bar_chart, time_chart

#: Runs shown in the chart of outcomes per run (the latest); the table lists them all.
RUNS_CHARTED = 25
#: Rows in a chart's data table: the same series in coarser buckets.
TABLE_POINTS = 48
#: What a run's summary counts, in the order the page stacks them.
RUN_OUTCOMES = ("succeeded", "reconciled", "already imported", "found in Convirza", "skipped",
                "failed", "invalid", "unresolved")
#: Their colours: blues and greens for done, grey for passed over, warm ones for problems.
RUN_COLORS = ("#0072B2", "#56B4E9", "#009E73", "#00B8A0", "#999999", "#D55E00", "#CC79A7",
              "#E69F00")

STYLE = """
:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1a1a1a;background:#fff;line-height:1.4}
body{max-width:1100px;margin:0 auto;padding:1.5rem}
h1{font-size:1.6rem;margin:0 0 .25rem}h2{font-size:1.25rem;margin:2rem 0 .75rem;
border-bottom:2px solid #0072B2;padding-bottom:.2rem}
.meta{color:#555;margin:0}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:.6rem;
margin:0}
.figures div{border:1px solid #d0d0d0;border-radius:6px;padding:.5rem .75rem}
dt{font-size:.8rem;color:#555}dd{margin:0;font-size:1.35rem;font-weight:600}
dd small{display:block;font-size:.75rem;font-weight:400;color:#555}
figure{margin:1.25rem 0;break-inside:avoid}figcaption{font-weight:600;margin-bottom:.25rem}
svg.chart{display:block;width:100%;height:auto;font-size:12px;font-family:inherit}
svg.chart text{fill:#333}
details{margin:.25rem 0 0}summary{cursor:pointer;color:#0058a0}
table{border-collapse:collapse;width:100%;font-size:.85rem;margin:.5rem 0}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border-bottom:1px solid #e3e3e3;padding:.25rem .45rem;text-align:left;
vertical-align:top}th{background:#f4f6f8}.n{text-align:right;font-variant-numeric:tabular-nums}
td.text{word-break:break-word}code{font-size:.85em}
.note{color:#555;font-size:.85rem}
@media print{body{max-width:none;padding:0;font-size:10pt}details{display:none}
h2{break-after:avoid}figure,tr{break-inside:avoid}
*{print-color-adjust:exact;-webkit-print-color-adjust:exact}@page{size:A4;margin:14mm}}
"""


def render(stats: LedgerStats, *, generated: datetime | None = None) -> str:
    """The whole page for ``stats`` (one ledger or several added up)."""
    generated = generated or datetime.now(UTC)
    names = ", ".join(stats.ledgers)
    line = timeline(stats)
    figures = stats.figures()
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Import report: {_text(names)}</title><style>{STYLE}</style></head><body>",
        "<header><h1>Import report</h1>",
        f'<p class="meta">{"Ledgers" if len(stats.ledgers) > 1 else "Ledger"} '
        f"{_text(names)}; made {generated.strftime('%Y-%m-%d %H:%M')} UTC by "
        "<code>convirza-import report --format html</code>.</p></header><main>",
        _headline(stats, figures, line),
        _progress(stats, figures, line),
        _errors(stats),
        _runs(stats),
        _problems(stats),
        "</main></body></html>\n",
    ]
    return "\n".join(parts)


def _text(value: object) -> str:
    """Ledger text made safe for the page: HTML escaped, control and bidi characters shown as
    escapes, as the terminal's table shows them (``redact.printable``)."""
    return html_text("" if value is None else str(value))


def _n(value: int | float) -> str:
    return f"{value:,.0f}"


def size_text(n: float) -> str:
    """Bytes in decimal units, as disks and the API's limit count them."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} bytes"


def duration_text(minutes: float) -> str:
    minutes = round(minutes)
    if minutes >= 1440:
        return f"{minutes // 1440}d {minutes % 1440 // 60}h"
    if minutes >= 60:
        return f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{minutes} min"


def _figure(name: str, label: str, value: str, note: str = "", *,
            raw: object = None) -> str:
    """One figure; ``data-value`` holds it as ``report --format json`` gives it (under
    ``figures``, by the same name), for programs and the tests that compare them."""
    small = f"<small>{note}</small>" if note else ""
    data = f' data-value="{_text(raw)}"' if raw is not None else ""
    return (f'<div><dt>{label}</dt><dd><span data-figure="{name}"{data}>{value}</span>{small}'
            "</dd></div>")


def _headline(stats: LedgerStats, f: Figures, line: Timeline | None) -> str:
    c = f.counts
    figures = [_figure("rows", "Rows in the ledgers" if len(stats.ledgers) > 1 else
                       "Rows in the ledger", _n(f.rows), raw=f.rows)]
    figures += [_figure(s.value, f"{s.value.capitalize()}", _n(c[s.value]),
                        "outcome unknown, looked up on the next run" if s is Status.UPLOADING
                        else "", raw=c[s.value]) for s in Status]
    figures.append(_figure("imported", "Recordings imported", _n(f.imported),
                           f"{size_text(f.bytes_imported)} uploaded", raw=f.imported))
    figures.append(_figure("duplicates-avoided", "Duplicates avoided",
                           _n(stats.already_imported + stats.duplicates),
                           f"{_n(stats.already_imported)} already imported or found in "
                           "Convirza, "
                           f"{_n(stats.duplicates)} repeated rows"))
    figures.append(_figure("reconciled", "Reconciled", _n(stats.reconciled),
                           "unknown outcomes found at Convirza"))
    figures.append(_figure("retries", "Retries", _n(f.retries),
                           "failed attempts tried again in the same run", raw=f.retries))
    r = f.rates
    if line is not None:
        first, last = min(stats.minutes), max(stats.minutes)
        span = (when(last) - when(first)).total_seconds() / 60 + 1
        figures.append(_figure("span", "Time span", duration_text(span),
                               f"{first.replace('T', ' ')} to {last[11:]} UTC; "
                               f"{duration_text(r.active_minutes)} uploading"))
        figures.append(_figure("average_per_minute", "Average rate", f"{r.average:,.1f}/min",
                               f"uploads a minute over the {_n(r.active_minutes)} minutes "
                               "with attempts", raw=round(r.average, 1)))
        figures.append(_figure("recent_per_minute", "Recent rate", f"{r.recent:,.1f}/min",
                               f"the same, over the {_n(r.recent_minutes)} of them in the "
                               "last hour of activity", raw=round(r.recent, 1)))
    left_note = [f"{_n(c[Status.PENDING])} pending"]
    if c[Status.UPLOADING]:
        left_note.append(f"{_n(c[Status.UPLOADING])} of unknown outcome")
    if f.unread:
        left_note.append(f"{_n(f.unread)} not read yet")
    if f.eta_minutes is not None and f.left:
        left_note.append(f"about {duration_text(f.eta_minutes)} at the recent rate")
    figures.append(_figure("left", "Left to do", _n(f.left), "; ".join(left_note), raw=f.left))
    figures.append(_figure("rows_known", "Rows known", _n(f.rows_known),
                           "in the ledger, and never read by a run that stopped early",
                           raw=f.rows_known))
    parts = ['<section aria-labelledby="h-glance"><h2 id="h-glance">At a glance</h2>',
             f'<dl class="figures">{"".join(figures)}</dl>']
    if len(stats.ledgers) > 1:
        head = "".join(f'<th class="n">{s.value}</th>' for s in Status)
        rows = "".join(
            f"<tr><td>{_text(name)}</td>"
            + "".join(f'<td class="n">{_n(counts[s.value])}</td>' for s in Status)
            + f'<td class="n">{_n(sum(counts.values()))}</td></tr>'
            for name, counts in zip(stats.ledgers, stats.per_ledger, strict=True))
        parts.append(f"<table><caption>Rows by state in each ledger</caption><thead><tr>"
                     f'<th>ledger</th>{head}<th class="n">total</th></tr></thead>'
                     f"<tbody>{rows}</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)


def _progress(stats: LedgerStats, f: Figures, line: Timeline | None) -> str:
    head = '<section aria-labelledby="h-progress"><h2 id="h-progress">Progress over time</h2>'
    if line is None:
        return head + "<p>Nothing was sent yet: the ledger records no attempt.</p></section>"
    coarse = timeline(stats, TABLE_POINTS)
    assert coarse is not None
    times = line.times
    width = f"{line.width} minute{'s' if line.width > 1 else ''}"
    per = "a minute" + (f" (averaged over {width})" if line.width > 1 else "")
    total = f.rows_known
    charts = []

    def chart(chart_id: str, caption: str, description: str, series: list[Series],
              table: Callable[[int], Sequence[float | None]], fmt: str,
              **options: Any) -> None:
        svg = time_chart(chart_id, caption, description, times, series,
                         step=timedelta(minutes=line.width), **options)
        columns = [s.name for s in series]
        rows = [[_at(t), *("" if v is None else format(v, fmt) for v in table(i))]
                for i, t in enumerate(coarse.times)]
        charts.append(_chart(chart_id, caption, description, svg, columns, rows))

    chart("uploads", "Uploads a minute",
          f"Upload attempts {per}, succeeded and failed (an attempt tried again counts each "
          f"time), from {_at(times[0])} to {_at(times[-1])}; at most "
          f"{max(line.succeeded):,.1f} succeeded a minute.",
          [Series("succeeded", line.succeeded), Series("failed attempts", line.failed)],
          lambda i: (coarse.succeeded[i], coarse.failed[i]), ",.1f", unit="per min")
    chart("progress", "Progress against the total",
          f"Rows that succeeded, and rows that failed or were invalid, added up over time, "
          f"against the {_n(total)} rows known: {_n(line.done[-1])} succeeded and "
          f"{_n(line.ended_badly[-1])} failed or invalid by the end.",
          [Series("succeeded", [float(v) for v in line.done]),
           Series("failed or invalid", [float(v) for v in line.ended_badly])],
          lambda i: (coarse.done[i], coarse.ended_badly[i]), ",.0f", unit="rows",
          reference=(f"total {_n(total)}", float(total)))
    chart("latency", "Request latency",
          "The 50th, 90th and 99th percentiles of the time an upload request took, to its "
          f"answer, in seconds on a logarithmic scale, per {width}.",
          [Series("p50", line.p50), Series("p90", line.p90), Series("p99", line.p99)],
          lambda i: (coarse.p50[i], coarse.p90[i], coarse.p99[i]), ".3g", unit="seconds",
          log=True)
    chart("throttling", "429s and retries",
          f"Answers 429 (Too Many Requests) and retried attempts per {width}: "
          f"{_n(sum(line.throttled))} 429s and {_n(f.retries)} retries in all.",
          [Series("429 answers", [float(v) for v in line.throttled]),
           Series("retries", [float(v) for v in line.retries])],
          lambda i: (coarse.throttled[i], coarse.retries[i]), ",.0f", unit=f"per {width}")
    return head + "\n".join(charts) + "</section>"


def _at(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _chart(chart_id: str, caption: str, description: str, svg: str,
           columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A chart in a figure: its caption, the SVG, what it shows in words, and its data as a
    table (folded on screen; the coarser buckets of the same series)."""
    head = "".join(f'<th class="n">{html_text(c)}</th>' for c in columns)
    body = "".join("<tr>" + f"<td>{html_text(r[0])}</td>"
                   + "".join(f'<td class="n">{html_text(v)}</td>' for v in r[1:]) + "</tr>"
                   for r in rows)
    return (f'<figure aria-labelledby="{chart_id}-c"><figcaption id="{chart_id}-c">'
            f"{html_text(caption)}</figcaption>{svg}<p class=\"note\">{html_text(description)}</p>"
            f"<details><summary>Data table: {html_text(caption.lower())}</summary><table>"
            f"<thead><tr><th>from</th>{head}</tr></thead><tbody>{body}</tbody></table>"
            "</details></figure>")


def _errors(stats: LedgerStats) -> str:
    head = '<section aria-labelledby="h-errors"><h2 id="h-errors">Why rows failed</h2>'
    if not stats.reasons:
        return head + "<p>No row failed or was invalid.</p></section>"
    labels = [f"{r.status}: {r.reason}" for r in stats.reasons]
    counts = [float(r.rows) for r in stats.reasons]
    top = stats.reasons[0]
    description = (f"The {len(stats.reasons)} commonest reasons rows failed or were invalid; "
                   f"the first, {top.reason}, for {_n(top.rows)} rows.")
    svg = bar_chart("reasons", "Top error reasons", description, labels,
                    [Series("rows", counts)])
    rows = []
    for r in stats.reasons:
        examples = "".join(
            f"<li>{_row_text(e)}</li>" for e in r.examples)
        rows.append(f'<tr><td>{_text(r.status)}</td><td class="text">{_text(r.reason)}</td>'
                    f'<td class="n">{_n(r.rows)}</td><td class="text"><ul>{examples}</ul>'
                    "</td></tr>")
    table = ("<table><caption>Top error reasons, with a few of their rows</caption><thead><tr>"
             '<th>state</th><th>reason</th><th class="n">rows</th><th>examples (row, key, file: '
             f"message)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return (head + f'<figure aria-labelledby="reasons-c"><figcaption id="reasons-c">Top error '
            f'reasons</figcaption>{svg}<p class="note">{html_text(description)}</p></figure>'
            + table + "</section>")


def _row_text(e: Example) -> str:
    row = f"row {e.row}" if e.row is not None else "row ?"
    return (f"{row}, <code>{_text(e.key)}</code>, {_text(e.source)}: "
            f"{_text(e.error) or '(no message)'}")


def _run_label(run: RunFacts, several: bool) -> str:
    where = f"{run.ledger} " if several else ""
    return f"{where}#{run.id} {run.command} {run.started_at[:16].replace('T', ' ')}"


def _pace(run: RunFacts) -> str:
    """The pace the API allowed the run, if it refused any of its requests."""
    pace = run.pace
    if pace is None or not pace.refused or pace.allowed is None:
        return ""
    return f"about {pace.allowed:.1f}/s allowed ({pace.refused} answers 429, --rate {pace.asked:g})"


def _runs(stats: LedgerStats) -> str:
    head = '<section aria-labelledby="h-runs"><h2 id="h-runs">Runs</h2>'
    if not stats.runs:
        return head + "<p>No run recorded.</p></section>"
    several = len(stats.ledgers) > 1
    shown = stats.runs[-RUNS_CHARTED:]
    description = (f"Rows of each of the last {len(shown)} runs by outcome, oldest first: "
                   + "; ".join(f"{_run_label(r, several)}: "
                               + (", ".join(f"{r.counts[k]} {k}" for k in RUN_OUTCOMES
                                            if r.counts.get(k)) or "no rows")
                               for r in shown[-3:]) + ".")
    svg = bar_chart("runs", "Outcomes per run", description,
                    [_run_label(r, several) for r in shown],
                    [Series(k, [float(r.counts.get(k, 0)) for r in shown])
                     for k in RUN_OUTCOMES], colors=RUN_COLORS)
    rows = []
    for r in stats.runs:
        ended = ("running, or killed" if r.finished_at is None
                 else r.finished_at[:19].replace("T", " "))
        counts = ", ".join(f"{_n(n)} {k}" for k, n in r.counts.items() if n)
        rows.append("<tr>" + (f"<td>{_text(r.ledger)}</td>" if several else "")
                    + f'<td class="n">{r.id}</td><td>{_text(r.command)}</td>'
                    f"<td>{_text(r.started_at[:19].replace('T', ' '))}</td><td>{_text(ended)}</td>"
                    f'<td class="n">{"" if r.exit_code is None else r.exit_code}</td>'
                    f'<td class="text">{_text(counts) or "no rows"}</td>'
                    f'<td class="text">{_text(_pace(r))}</td>'
                    f'<td class="text">{_text(r.stopped or "")}</td></tr>')
    table = ("<table><caption>Every run (times in UTC)</caption><thead><tr>"
             + ("<th>ledger</th>" if several else "")
             + '<th class="n">run</th><th>command</th><th>started</th><th>ended</th>'
             '<th class="n">exit</th><th>rows</th><th>API pace</th><th>stopped early</th>'
             '</tr></thead>'
             f"<tbody>{''.join(rows)}</tbody></table>")
    return (head + f'<figure aria-labelledby="runs-c"><figcaption id="runs-c">Outcomes per run'
            f'</figcaption>{svg}<p class="note">{html_text(description)}</p></figure>'
            + table + "</section>")


def _problems(stats: LedgerStats) -> str:
    head = ('<section aria-labelledby="h-problems"><h2 id="h-problems">Failed and invalid rows'
            "</h2>")
    if not stats.problems:
        return head + "<p>None.</p></section>"
    several = len(stats.ledgers) > 1
    rows = "".join(
        "<tr>" + (f"<td>{_text(e.ledger)}</td>" if several else "")
        + f'<td class="n">{"" if e.row is None else e.row}</td><td>{_text(e.status)}</td>'
        f'<td class="text"><code>{_text(e.key)}</code></td><td class="text">{_text(e.source)}'
        f'</td><td class="text">{_text(e.error)}</td></tr>' for e in stats.problems)
    rest = stats.problems_total - len(stats.problems)
    more = (f'<p class="note">… and {_n(rest)} more: <code>convirza-import report LEDGER '
            "--status failed --status invalid --format csv</code> lists every one.</p>"
            if rest > 0 else "")
    return (head + f"<table><caption>The first {_n(len(stats.problems))} of "
            f"{_n(stats.problems_total)}, in manifest order</caption><thead><tr>"
            + ("<th>ledger</th>" if several else "")
            + '<th class="n">row</th><th>state</th><th>key</th><th>file or URL</th>'
            f"<th>error</th></tr></thead><tbody>{rows}</tbody></table>{more}</section>")
