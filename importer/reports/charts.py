"""Charts as inline SVG, written by hand: lines over time, and horizontal bars.

Why not matplotlib, or a charting library in the page: the report must open from an e-mail
with no network, print well, and stay small. A chart here is a few kilobytes of SVG that the
browser draws as vector (sharp on paper) with no script, with a ``<title>`` and ``<desc>``
that screen readers announce. Measured on the 246-point "uploads a minute" chart of the
1,000,000-row bench ledger: 7.0 kB here; matplotlib's SVG of the same two lines 39.8 kB
(22.6 kB with text kept as text), after 1 s to import it; a charting library would put its
script in every page before the first point (Chart.js 4.6 210 kB, uPlot 1.6 51 kB, minified),
and a page that draws only once a script ran prints and previews less reliably.

Colours are the Okabe-Ito palette, which people with the common colour-vision deficiencies
tell apart, and every series also has its own dash pattern, so that a grey print still does.
Nothing here knows about ledgers: the caller passes titles, labels and numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..redact import html_text

WIDTH, HEIGHT = 800, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 36, 40
#: Okabe-Ito: blue, vermillion, bluish green, orange, sky blue, reddish purple, black.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#56B4E9", "#CC79A7", "#000000")
DASHES = ("", "6 3", "2 2", "8 3 2 3", "1 3", "10 4")
#: Steps a time axis may tick at, in minutes.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def _n(value: float) -> str:
    """A coordinate with one decimal at most: enough for a screen or a page, and short."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def nice_step(span: float, ticks: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw))


def number(value: float) -> str:
    """``1200`` -> ``1.2k``: axis labels that fit."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _frame(chart_id: str, title: str, description: str, body: list[str]) -> str:
    return (f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{chart_id}-t">{html_text(title)}</title>'
            f'<desc id="{chart_id}-d">{html_text(description)}</desc>' + "".join(body) + "</svg>")


def _legend(names: Sequence[str], colors: Sequence[str], *, dashed: bool = True,
            x: int = LEFT) -> list[str]:
    out = []
    for i, name in enumerate(names):
        color, dash = colors[i % len(colors)], DASHES[i % len(DASHES)] if dashed else ""
        pattern = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{x}" y1="16" x2="{x + 22}" y2="16" stroke="{color}" '
                   f'stroke-width="3"{pattern}/><text x="{x + 28}" y="20">{html_text(name)}</text>')
        x += 40 + 7 * len(name)
    return out


def time_chart(chart_id: str, title: str, description: str, times: Sequence[datetime],
               series: Sequence[Series], *, unit: str = "", log: bool = False,
               reference: tuple[str, float] | None = None,
               step: timedelta = timedelta(minutes=1)) -> str:
    """Lines over time, one per series (a gap where a value is None); ``log`` scales the y
    axis by powers of ten; ``reference`` draws a dashed horizontal line (a total) with its
    label. Each value stands for the ``step`` from its time, and is drawn in its middle: the
    axis spans the data's buckets and no more, and one bucket alone still shows."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for s in series for v in s.values if v is not None]
    top = max([*values, reference[1] if reference else 0.0, 0.0])
    ticks, y = _y_scale(values, top, log, plot_h)

    first, last = times[0], times[-1] + step
    span = (last - first).total_seconds()

    def x(t: datetime) -> float:
        return LEFT + plot_w * (t - first).total_seconds() / span

    body = ['<g class="grid" stroke="#ddd">']
    for v in ticks:
        body.append(f'<line x1="{LEFT}" y1="{_n(y(v))}" x2="{WIDTH - RIGHT}" y2="{_n(y(v))}"/>')
    body.append("</g>")
    body.extend(f'<text x="{LEFT - 6}" y="{_n(y(v) + 4)}" text-anchor="end">'
                f'{html_text(number(v))}</text>' for v in ticks)
    if unit:  # above the axis, and the legend after it
        body.append(f'<text x="4" y="20">{html_text(unit)}</text>')
    body.extend(_time_ticks(first, last, x))
    for i, s in enumerate(series):
        color, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        path = _path([(x(t + step / 2), y(v)) if v is not None else None
                      for t, v in zip(times, s.values, strict=True)])
        pattern = f' stroke-dasharray="{dash}"' if dash else ""
        if path:
            body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"'
                        f'{pattern} stroke-linejoin="round"><title>{html_text(s.name)}</title>'
                        "</path>")
    if reference is not None:
        label, level = reference
        body.append(f'<line x1="{LEFT}" y1="{_n(y(level))}" x2="{WIDTH - RIGHT}" '
                    f'y2="{_n(y(level))}" stroke="#555" stroke-dasharray="4 4"/>'
                    f'<text x="{WIDTH - RIGHT}" y="{_n(y(level) - 5)}" text-anchor="end">'
                    f'{html_text(label)}</text>')
    body.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" '
                f'y2="{TOP + plot_h}" stroke="#888"/>')
    body.extend(_legend([s.name for s in series], PALETTE, x=max(LEFT, 20 + 7 * len(unit))))
    return _frame(chart_id, title, description, body)


def _y_scale(values: Sequence[float], top: float, log: bool,
             plot_h: float) -> tuple[list[float], Callable[[float], float]]:
    """The y axis's ticks and where a value goes on it: powers of ten (``log``), or round
    steps from zero to at least ``top``."""
    if log:
        positive = [v for v in values if v > 0] or [1.0]
        low = 10 ** math.floor(math.log10(min(positive)))
        high = 10 ** math.ceil(math.log10(max(positive)))
        high = high * 10 if high <= low else high

        def on_log(v: float) -> float:
            share = (math.log10(max(v, low)) - math.log10(low)) / math.log10(high / low)
            return TOP + plot_h * (1 - share)

        return [low * 10 ** i for i in range(round(math.log10(high / low)) + 1)], on_log
    step = nice_step(top or 1.0)
    ceiling = step * math.ceil((top or 1.0) / step)

    def on_line(v: float) -> float:
        return TOP + plot_h * (1 - v / ceiling)

    return [step * i for i in range(round(ceiling / step) + 1)], on_line


def _path(points: Sequence[tuple[float, float] | None]) -> str:
    """An SVG path through the points, lifted over None (no data: no line)."""
    parts: list[str] = []
    for i, point in enumerate(points):
        if point is None:
            continue
        pen_down = i > 0 and points[i - 1] is not None
        alone = not pen_down and (i + 1 == len(points) or points[i + 1] is None)
        if alone:  # a point with no neighbour: a short dash, so that it shows
            parts.append(f"M{_n(point[0] - 4)} {_n(point[1])}h8")
        else:
            parts.append(("L" if pen_down else "M") + f"{_n(point[0])} {_n(point[1])}")
    return "".join(parts)


def _time_ticks(first: datetime, last: datetime,
                x: Callable[[datetime], float]) -> list[str]:
    """Labels under the time axis at a round step (every 15 minutes, 2 hours, a day ...)."""
    minutes = (last - first).total_seconds() / 60
    step = next((s for s in TIME_STEPS if minutes / s <= 7), TIME_STEPS[-1])
    epoch = int(first.timestamp() // 60)
    tick = first + timedelta(minutes=(-epoch) % step)
    fmt = "%H:%M" if minutes <= 1440 else "%d %b %H:%M" if step < 1440 else "%d %b"
    out = []
    while tick <= last:
        out.append(f'<text x="{_n(x(tick))}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">'
                   f'{tick.strftime(fmt)}</text>')
        tick += timedelta(minutes=step)
    out.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end">UTC</text>')
    return out


def bar_chart(chart_id: str, title: str, description: str, labels: Sequence[str],
              stacks: Sequence[Series], *, label_width: int = 280,
              colors: Sequence[str] = PALETTE) -> str:
    """Horizontal bars, one per label; several series stack left to right, in ``colors`` (a
    legend names them when there is more than one). Labels longer than the space are cut with
    an ellipsis (the table under the chart has them whole)."""
    rows = len(labels)
    bar_h = 22
    height = TOP + rows * (bar_h + 8) + 12
    plot_w = WIDTH - label_width - RIGHT - 60
    totals = [sum(s.values[i] or 0.0 for s in stacks) for i in range(rows)]
    top = max(totals, default=0.0) or 1.0
    chars = label_width // 7
    body = []
    for i, label in enumerate(labels):
        y0 = TOP + i * (bar_h + 8)
        shown = label if len(label) <= chars else label[:chars - 1] + "…"
        body.append(f'<text x="{label_width - 8}" y="{y0 + 15}" text-anchor="end">'
                    f'<title>{html_text(label)}</title>{html_text(shown)}</text>')
        x0 = float(label_width)
        for j, s in enumerate(stacks):
            v = s.values[i] or 0.0
            w = plot_w * v / top
            if w > 0:
                body.append(f'<rect x="{_n(x0)}" y="{y0}" width="{_n(max(w, 1.0))}" '
                            f'height="{bar_h}" fill="{colors[j % len(colors)]}">'
                            f'<title>{html_text(s.name)}: {v:,.0f}</title></rect>')
            x0 += w
        body.append(f'<text x="{_n(x0 + 6)}" y="{y0 + 15}">{totals[i]:,.0f}</text>')
    if len(stacks) > 1:
        body.extend(_legend([s.name for s in stacks], colors, dashed=False))
    svg = _frame(chart_id, title, description, body)
    return svg.replace(f'viewBox="0 0 {WIDTH} {HEIGHT}"', f'viewBox="0 0 {WIDTH} {height}"', 1)
