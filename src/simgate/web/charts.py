"""Charts drawn on the server as inline SVG: no script and no style attribute, so they show
under the pages' strict Content-Security-Policy; colours come from classes in style.css.

Each chart is an `<svg role="img">` with a text alternative, a `<title>` on every mark (the
browser shows it on hover) and `data-` attributes that say what it counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from simgate.services.overview import Series

WIDTH, HEIGHT = 640, 180
LEFT, BOTTOM, TOP = 34, 22, 8
COLOURS = 8  # classes c0..c7


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _nice(top: int) -> int:
    """A round, even axis maximum at or above `top` (its half is a whole number too)."""
    for power in range(12):
        for base in (2, 4, 10):
            if top <= base * 10 ** power:
                return base * 10 ** power
    return top + top % 2


def columns(name: str, labels: Sequence[str], series: Sequence[Series],
            every: int = 1) -> Markup:
    """Stacked columns, one a label, one colour a series; `every` labels the axis at
    every n-th column."""
    totals = [sum(s.counts[i] for s in series) for i in range(len(labels))]
    top = _nice(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(labels), 1)
    total = sum(totals)
    parts = [f'<svg class="chart" id="{_attr(name)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" aria-label="{_attr(_summary(series, total))}" '
             f'data-total="{total}">']
    for tick in (0, top // 2, top):
        y = TOP + plot_h - plot_h * tick / top
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/><text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{tick}</text>')
    for i, label in enumerate(labels):
        x, base = LEFT + i * step, TOP + plot_h
        for colour, s in enumerate(series):
            count = s.counts[i]
            if not count:
                continue
            h = plot_h * count / top
            base -= h
            parts.append(f'<rect class="c{colour % COLOURS}" x="{x + step * .12:.1f}" '
                         f'y="{base:.1f}" width="{step * .76:.1f}" height="{h:.1f}" '
                         f'data-series="{_attr(s.label)}" data-count="{count}">'
                         f'<title>{escape(s.label)}, {escape(label)}: {count}</title></rect>')
        if i % every == 0:
            parts.append(f'<text class="axis" x="{x + step / 2:.1f}" y="{HEIGHT - 6}" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts)) + legend(f"{name}-legend", series)


def _summary(series: Sequence[Series], total: int) -> str:
    if not total:
        return "no sends in this period"
    return f"{total} sends: " + ", ".join(f"{s.label} {s.total}" for s in series)


def legend(name: str, series: Sequence[Series]) -> Markup:
    """Each series' colour, name and total, as text a reader (and a test) can find."""
    items = "".join(
        f'<li data-series="{_attr(s.label)}" data-total="{s.total}">'
        f'<svg class="swatch" viewBox="0 0 10 10" aria-hidden="true"><rect class="c'
        f'{i % COLOURS}" width="10" height="10"/></svg>{escape(s.label)}: {s.total}</li>'
        for i, s in enumerate(series))
    return Markup(f'<ul class="legend" id="{_attr(name)}">{items}</ul>') if items else Markup("")


def hbars(name: str, items: Sequence[tuple[str, int]], css: str = "bad") -> Markup:
    """Horizontal bars, one an item, longest first, each with its count."""
    if not items:
        return Markup("")
    top = max(count for _, count in items)
    row = 22
    height = row * len(items) + 4
    parts = [f'<svg class="chart bars" id="{_attr(name)}" viewBox="0 0 {WIDTH} {height}" '
             f'role="img" aria-label="{_attr(", ".join(f"{t}: {c}" for t, c in items))}">']
    for i, (label, count) in enumerate(items):
        y = 2 + i * row
        w = (WIDTH * .45 - 40) * count / top
        parts.append(f'<text class="label" x="{WIDTH * .55 - 6:.1f}" y="{y + 15}" '
                     f'text-anchor="end">{escape(_short(label))}</text>'
                     f'<rect class="{css}" x="{WIDTH * .55:.1f}" y="{y + 2}" '
                     f'width="{max(w, 1):.1f}" height="{row - 6}" data-count="{count}">'
                     f'<title>{escape(label)}: {count}</title></rect>'
                     f'<text class="axis" x="{WIDTH * .55 + w + 6:.1f}" y="{y + 15}">'
                     f'{count}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(text: str, size: int = 48) -> str:
    return text if len(text) <= size else text[:size - 1] + "\u2026"


def gauge(name: str, value: int, limit: int | None, label: str = "") -> Markup:
    """One bar against its limit (or alone, when there is none): usage, a queue."""
    width, height = 240, 14
    share = min(value / limit, 1.0) if limit else (1.0 if value else 0.0)
    level = "bad" if limit and value >= limit else "warn" if limit and share >= .8 else "ok"
    text = f"{value}/{limit}" if limit else str(value)
    return Markup(
        f'<svg class="gauge" id="{_attr(name)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_attr(label + " " + text)}" data-value="{value}" '
        f'data-limit="{limit if limit else ""}"><rect class="track" width="{width}" '
        f'height="{height}" rx="3"/><rect class="{level}" width="{width * share:.1f}" '
        f'height="{height}" rx="3"><title>{escape(label)} {escape(text)}</title></rect>'
        f'</svg>')


def stack(name: str, parts: Sequence[tuple[str, int, str]]) -> Markup:
    """One bar split in parts (label, count, colour class), e.g. Delivered, Sent, Failed."""
    total = sum(count for _, count, _ in parts)
    width, height = WIDTH, 22
    out = [f'<svg class="chart stack" id="{_attr(name)}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{_attr(", ".join(f"{t} {c}" for t, c, _ in parts))}" '
           f'data-total="{total}"><rect class="track" width="{width}" height="{height}"/>']
    x = 0.0
    for label, count, css in parts:
        if not count:
            continue
        w = width * count / total
        out.append(f'<rect class="{css}" x="{x:.1f}" width="{w:.1f}" height="{height}" '
                   f'data-part="{_attr(label)}" data-count="{count}">'
                   f'<title>{escape(label)}: {count}</title></rect>')
        x += w
    out.append("</svg>")
    return Markup("".join(out))
